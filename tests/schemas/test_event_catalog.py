"""Custom event types (CONTRACT §7) are validated at the edge like built-in ones: typed props, a
reason that names the prop, the same answer from the fast and the worded path, JSON Schema."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from microseg.schemas import event_catalog
from microseg.schemas.event_catalog import DEFAULT_CATALOG, EventCatalog, EventDeclaration, PropDeclaration, decode_event
from microseg.schemas.events import EVENT_TYPES, Event, InvalidEvent, PropsModel, PurchaseProps
from microseg.schemas.export import json_schemas

P = PropDeclaration
TRIAL = EventDeclaration(
    "trial_started",
    "A free trial began",
    {"plan": P("string"), "seats": P("number", True), "tags": P("list[string]", True), "paid": P("bool", True)},
)
CATALOG = EventCatalog.build(
    [
        TRIAL,
        EventDeclaration("purchase", "", {"coupon": P("string", True)}),
        EventDeclaration("campaign_converted", "", {"cell": P("string", True)}),
        EventDeclaration("loan_step", "", {"step": P("number"), "approved": P("bool")}),
    ]
)
ITEMS = [{"product_id": "p", "category": "shoes", "quantity": 1, "price": 20.0}]


def _raw(kind: str = "trial_started", props: Any = None, **envelope: Any) -> bytes:
    record = {"event_id": "e-1", "customer_id": "c-1", "type": kind, "ts": "2026-03-01T10:00:00Z", **envelope}
    if props is not None:
        record["props"] = props
    return orjson.dumps(record)


def _refused(raw: bytes, catalog: EventCatalog = CATALOG) -> str:
    with pytest.raises(InvalidEvent) as info:
        catalog.decode(raw)
    return str(info.value)


def _slowly(raw: bytes, catalog: EventCatalog = CATALOG) -> Event:
    return catalog._decode_slowly(raw, reference_t=None, key=None)


def test_a_custom_event_decodes_with_typed_props() -> None:
    event = CATALOG.decode(_raw(props={"plan": "pro", "seats": 3, "tags": ["a", "b"], "paid": True, "utm": "x"}), key=b"c-1")
    assert (event.type, event.customer_id) == ("trial_started", "c-1")
    assert (event.props.plan, event.props.seats, event.props.tags, event.props.paid) == ("pro", 3.0, ["a", "b"], True)
    assert type(event.props.seats) is float
    assert isinstance(event.props, PropsModel) and not hasattr(event.props, "utm")  # undeclared props are ignored
    assert CATALOG.types[: len(EVENT_TYPES)] == EVENT_TYPES and CATALOG.types[len(EVENT_TYPES) :] == ("trial_started", "loan_step")
    assert CATALOG.custom[0] == TRIAL


def test_an_absent_or_null_optional_prop_reads_none() -> None:
    event = CATALOG.decode(_raw(props={"plan": "pro", "seats": None}))
    assert (event.props.seats, event.props.tags, event.props.paid) == (None, None, None)


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"plan": "pro", "seats": "3"}, "props.seats: Input should be a valid number"),
        ({"plan": "pro", "seats": True}, "props.seats: Input should be a valid number"),
        ({"plan": 7}, "props.plan: Input should be a valid string"),
        ({"plan": "x" * 513}, "props.plan: String should have at most 512 characters"),
        ({"seats": 2}, "props.plan: Field required"),
        ({"plan": "pro", "tags": ["a", 2]}, "props.tags.1: Input should be a valid string"),
        ({"plan": "pro", "tags": "a"}, "props.tags: Input should be a valid list"),
        ({"plan": "pro", "tags": ["a"] * 65}, "props.tags: List should have at most 64 items"),
        ({"plan": "pro", "paid": "yes"}, "props.paid: Input should be a valid boolean"),
        ({"plan": "pro", "paid": 1}, "props.paid: Input should be a valid boolean"),
        ([1], "props: Input should be a valid dictionary"),
    ],
)
def test_a_custom_event_failing_its_props_is_refused_naming_the_prop(props: Any, reason: str) -> None:
    assert reason in _refused(_raw(props=props))


def test_a_missing_props_object_is_missing_its_required_props() -> None:
    assert _refused(_raw()) == "props.plan: Field required"
    assert CATALOG.decode(_raw("loan_step", {"step": 2, "approved": False})).props.step == 2.0


@pytest.mark.parametrize("value", [2**64, 2**63, -(2**63) - 1, 10**40, 1e16, -1e300])
def test_a_number_beyond_the_bound_is_refused_naming_the_prop(value: float) -> None:
    raw = _raw(props={"plan": "pro", "seats": 0}).replace(b'"seats":0', f'"seats":{value}'.encode())
    assert "props.seats: Input should be" in _refused(raw)


@pytest.mark.parametrize("value", [10**15, -(10**15), 2**49 + 1, 1e15, 0.1])
def test_numbers_within_the_bound_are_exact(value: float) -> None:
    assert CATALOG.decode(_raw(props={"plan": "pro", "seats": value})).props.seats == value


def test_inf_and_nan_are_refused() -> None:
    raw = _raw(props={"plan": "pro", "seats": 0}).replace(b'"seats":0', b'"seats":1e400')
    assert "number is infinity" in _refused(raw)
    assert "not valid JSON" in _refused(raw.replace(b"1e400", b"NaN"))


def test_extra_props_on_a_built_in_type_are_typed_and_its_own_props_kept() -> None:
    event = CATALOG.decode(_raw("purchase", {"order_id": "o", "amount": 20, "items": ITEMS, "coupon": "SPRING"}))
    assert isinstance(event.props, PurchaseProps)
    assert (event.props.coupon, event.props.amount, event.props.items[0].category) == ("SPRING", 20.0, "shoes")
    assert CATALOG.decode(_raw("purchase", {"order_id": "o", "amount": 20})).props.coupon is None
    assert "props.coupon: Input should be a valid string" in _refused(_raw("purchase", {"order_id": "o", "amount": 20, "coupon": 5}))
    assert "props.amount" in _refused(_raw("purchase", {"order_id": "o", "amount": -1, "coupon": "x"}))
    assert CATALOG.decode(_raw("campaign_converted", {"message_id": "m", "cell": "b"})).props.cell == "b"
    assert not hasattr(CATALOG.decode(_raw("campaign_opened", {"message_id": "m", "cell": "b"})).props, "cell")
    # ``variant`` is a built-in prop of campaign_converted (the bandit's arm), on the default catalog too
    assert decode_event(_raw("campaign_converted", {"message_id": "m", "variant": "b"})).props.variant == "b"
    assert decode_event(_raw("campaign_converted", {"message_id": "m"})).props.variant is None
    assert not hasattr(decode_event(_raw("campaign_opened", {"message_id": "m", "variant": "b"})).props, "variant")
    assert not hasattr(decode_event(_raw("purchase", {"order_id": "o", "amount": 20, "coupon": "x"})).props, "coupon")
    assert DEFAULT_CATALOG.props_model("purchase") is PurchaseProps and CATALOG.props_model("purchase") is not PurchaseProps


def test_the_fast_path_reads_a_good_extended_event_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys below props (items) are counted for an extension of a built-in model too, so a good
    record is not parsed a second time to look for repeated keys; a repeated key is still refused."""
    raw = _raw("purchase", {"order_id": "o", "amount": 20, "items": ITEMS, "coupon": "SPRING"})
    with monkeypatch.context() as patched:
        patched.setattr(event_catalog, "_refuse_duplicate_keys", lambda raw: pytest.fail("parsed twice"))
        assert CATALOG.decode(raw).props.coupon == "SPRING"
        assert CATALOG.decode(_raw(props={"plan": "pro", "tags": ["a"]})).props.plan == "pro"
    doubled = raw.replace(b'"quantity":1', b'"quantity":1,"quantity":2')
    assert "duplicate key 'quantity'" in _refused(doubled)
    assert "duplicate key 'plan'" in _refused(_raw(props={"plan": "a"}).replace(b'"plan":"a"', b'"plan":"a","plan":"b"'))


def test_an_unknown_type_lists_the_catalog_types() -> None:
    reason = _refused(_raw("trial_ended", {"plan": "pro"}))
    assert reason.startswith("unknown event type 'trial_ended'; expected one of: account_created,")
    assert reason.endswith("erasure_requested, trial_started, loan_step")
    assert "unknown event type 'trial_started'" in _refused(_raw(props={"plan": "pro"}), DEFAULT_CATALOG)
    assert "type: Input should be 'account_created'" in _refused(_raw(7))
    with pytest.raises(KeyError, match="trial_ended"):
        CATALOG.props_model("trial_ended")


def test_envelope_time_and_key_are_checked_as_for_built_in_types() -> None:
    good = _raw(props={"plan": "pro"})
    assert "extra: Extra inputs are not permitted" in _refused(_raw(props={"plan": "pro"}, extra=1))
    assert "ts: '2026-03-01T10:61:00Z' minute 61 is not 00..59" in _refused(_raw(props={"plan": "pro"}, ts="2026-03-01T10:61:00Z"))
    with pytest.raises(InvalidEvent, match="more than 1 day in the future"):
        CATALOG.decode(good, reference_t=0.0 + 1_700_000_000)
    with pytest.raises(InvalidEvent, match="does not match customer_id"):
        CATALOG.decode(good, key=b"c-2")


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ([EventDeclaration("purchase", "", {"amount": P("number")})], "purchase already has a prop 'amount' (number); declare only extra props"),
        ([EventDeclaration("purchase", "", {"currency": P("string", True)})], "purchase already has a prop 'currency' (string?)"),
        ([EventDeclaration("purchase", "", {"items": P("list[string]")})], "purchase already has a prop 'items' (list[object]?)"),
        ([EventDeclaration("survey_answered", "", {"kind": P("string")})], "survey_answered already has a prop 'kind' (one of 'nps', 'csat', 'ces')"),
        ([EventDeclaration("purchase", "", {})], "'purchase' is a built-in event type; list it under events only to declare extra props"),
        ([TRIAL, TRIAL], "event type 'trial_started' is declared twice"),
        ([EventDeclaration("Trial", "", {})], "event type 'Trial' is not a valid name"),
        ([EventDeclaration("2fa", "", {})], "event type '2fa' is not a valid name"),
        ([EventDeclaration("t" * 65, "", {})], "is 65 characters long; the limit is 64"),
        ([EventDeclaration("t", "", {"__class__": P("string")})], "prop of 't': '__class__' is not a valid name"),
        ([EventDeclaration("t", "", {"Plan": P("string")})], "'Plan' is not a valid name"),
        ([EventDeclaration("t", "", {"p" * 65: P("string")})], "the limit is 64"),
        ([EventDeclaration("t", "", {"json": P("string")})], "prop 'json' of 't' is a reserved name"),
        ([EventDeclaration("t", "", {"model_fields": P("string")})], "prop 'model_fields' of 't' is a reserved name"),
        ([EventDeclaration("t", "", {"n": P("int")})], "prop 'n' of 't' has type 'int'; expected one of: string, number, bool, list[string]"),  # type: ignore[arg-type]
        ([EventDeclaration("t", "", {"n": "number"})], "prop 'n' of 't' has type 'number'; expected one of"),  # type: ignore[dict-item]
        ([EventDeclaration("t", "", ["plan"])], "props must map names to types"),  # type: ignore[arg-type]
        ([EventDeclaration("t", "", {f"p{i}": P("bool") for i in range(65)})], "declares 65 props; the limit is 64"),
        ([EventDeclaration(f"t{i}", "", {}) for i in range(257)], "257 event types are declared; the limit is 256"),
        (["trial_started"], "expected an EventDeclaration, got str"),
    ],
)
def test_a_declaration_that_cannot_be_used_is_refused_with_a_message(declared: list[Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        EventCatalog.build(declared)
    assert message in str(info.value)


def test_no_declarations_is_the_default_catalog() -> None:
    assert EventCatalog.build([]) is DEFAULT_CATALOG
    assert DEFAULT_CATALOG.types == EVENT_TYPES and DEFAULT_CATALOG.custom == ()
    assert decode_event is DEFAULT_CATALOG.decode


def test_a_custom_type_with_only_optional_props_needs_no_props_object() -> None:
    catalog = EventCatalog.build([EventDeclaration("booking_viewed", "", {"hotel": P("string", True)})])
    assert catalog.decode(_raw("booking_viewed")).props.hotel is None
    assert catalog.decode(_raw("booking_viewed")) == _slowly(_raw("booking_viewed"), catalog)


@pytest.mark.parametrize(
    "raw",
    [
        _raw(props={"plan": "pro", "seats": 3, "tags": ["a"], "paid": False}),
        _raw(props={"plan": "", "seats": -2.5, "tags": [], "paid": None, "other": {"x": 1}}),
        _raw(props={"plan": "pro"}, channel="app", device="mobile"),
        _raw("purchase", {"order_id": "o", "amount": 20, "items": ITEMS, "coupon": "SPRING"}),
        _raw("loan_step", {"step": 1e15, "approved": True}),
        _raw("page_view", {"page": "/"}),
    ],
)
def test_the_fast_path_gives_what_the_worded_path_gives(raw: bytes) -> None:
    assert CATALOG.decode(raw) == _slowly(raw)


def test_json_schema_describes_the_custom_types_with_their_props() -> None:
    whole = CATALOG.json_schema()
    assert set(whole["discriminator"]["mapping"]) == set(CATALOG.types)
    trial = whole["$defs"]["TrialStartedProps"]
    assert trial["required"] == ["plan"] and trial["description"] == "A free trial began"
    assert trial["properties"]["seats"]["anyOf"][0] == {"type": "number", "minimum": -1e15, "maximum": 1e15}
    files = json_schemas(catalog=CATALOG)
    assert "trial_started" in files["customer-event.schema.json"]["properties"]["type"]["enum"]
    props = files["props/trial_started.schema.json"]
    assert props["title"] == "trial_started props" and set(props["properties"]) == {"plan", "seats", "tags", "paid"}
    assert props["properties"]["tags"]["anyOf"][0] == {"type": "array", "items": {"type": "string", "maxLength": 256}, "maxItems": 64}
    assert {"coupon", "amount", "items"} <= set(files["props/purchase.schema.json"]["properties"])
    assert files.keys() - json_schemas().keys() == {"props/trial_started.schema.json", "props/loan_step.schema.json"}
    assert json_schemas(catalog=DEFAULT_CATALOG) == json_schemas()


def test_schema_names_stay_apart_for_look_alike_types() -> None:
    catalog = EventCatalog.build([EventDeclaration(kind, "", {"a": P("bool")}) for kind in ("x_1", "x1", "campaign", "a__b", "a_b")])
    assert not [name for name in catalog.json_schema()["$defs"] if "__" in name]
    assert catalog.props_model("campaign").__name__ == "CampaignCustomProps"


# -- property: any declared props that validate come back as they were sent ------------------

PROPS = {f"{kind.replace('[', '_').rstrip(']')}_{'opt' if optional else 'req'}": P(kind, optional) for kind in event_catalog.PROP_KINDS for optional in (False, True)}  # type: ignore[arg-type]
PROPERTY_CATALOG = EventCatalog.build([EventDeclaration("everything", "", PROPS)])
VALUES = {
    "string": st.text(max_size=512),
    "number": st.one_of(st.integers(-(10**15), 10**15), st.floats(-1e15, 1e15, allow_nan=False, allow_infinity=False)),
    "bool": st.booleans(),
    "list[string]": st.lists(st.text(max_size=256), max_size=64),
}


@st.composite
def _props(draw: st.DrawFn) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for name, decl in PROPS.items():
        if decl.optional:
            choice = draw(st.sampled_from(["absent", "null", "value"]))
            if choice == "absent":
                continue
            if choice == "null":
                props[name] = None
                continue
        props[name] = draw(VALUES[decl.kind])
    return props


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_props())
def test_declared_props_that_validate_round_trip_to_the_same_values(props: dict[str, Any]) -> None:
    raw = _raw("everything", props)
    event = PROPERTY_CATALOG.decode(raw)
    for name in PROPS:
        value = getattr(event.props, name)
        assert value == props.get(name), name
        if isinstance(props.get(name), (int, float)) and not isinstance(props.get(name), bool):
            assert type(value) is float
    assert event == _slowly(raw, PROPERTY_CATALOG)
