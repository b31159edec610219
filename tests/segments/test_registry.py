"""A DNA field is declared once, and everything that reads fields finds it there.

One windowed field, ``page_views_7d``, is declared in this file only, in a registry built on the
built-in one (as a rule set's own fields will be): the type checker and compiler accept it, the
view computes it, incremental evaluation re-evaluates its readers on ``page_view``, the timeline
wakes the customer when a page view leaves its 7-day window, and it appears in the JSON Schema of
the DNA and in both generated docs.
"""

from __future__ import annotations

import pytest

from microseg.schemas.export import DNA_SCHEMA, json_schemas
from microseg.segments import windows as w
from microseg.segments.builtin_fields import BUILTINS, FIELDS, windowed
from microseg.segments.dna import fold, touched
from microseg.segments.event_types import EVENTS
from microseg.segments.fields import NUMBER, Registry, Windowed
from microseg.segments.language.checker import check
from microseg.segments.language.compiler import compile_expression
from microseg.segments.language.errors import RuleError
from microseg.segments.language.parser import parse
from microseg.segments.language.reference import render_dna, render_reference
from microseg.segments.ruleset import Origin, RuleSet, Segment
from microseg.segments.testing import event, parse_ts
from microseg.segments.timeline import next_wake, time_dependence
from microseg.segments.view import DnaView

PAGE_VIEWS_7D = windowed("page_views_7d", w.PAGE_VIEWS, 7, "activity", "`page_view` events in the 7d window.", ["page_view"])
REGISTRY = BUILTINS.extended(fields=[PAGE_VIEWS_7D])
ORIGIN = Origin("test.yaml", 1, 1)
WHEN = "page_views_7d >= 2"


def _ruleset(registry: Registry) -> RuleSet:
    expr = compile_expression(WHEN, origin=ORIGIN, registry=registry)
    return RuleSet("v", segments=(Segment("browsing", "", expr, ORIGIN),))


def test_the_checker_and_compiler_know_the_field_from_its_registry_only() -> None:
    assert check(parse(WHEN), expect_bool=True, registry=REGISTRY).issues == []
    assert [i.message for i in check(parse(WHEN), expect_bool=True).issues] == [
        "unknown field 'page_views_7d'; did you mean 'page_views_30d'?"
    ]
    with pytest.raises(RuleError):
        compile_expression(WHEN, origin=ORIGIN)
    assert _ruleset(REGISTRY).segments[0].when.fields == {"page_views_7d"}


def test_the_view_computes_it_and_incremental_evaluation_sees_it_change() -> None:
    first = fold(None, event("c", "page_view", "2026-03-02T10:00:00Z", page="/a"))
    second_event = event("c", "page_view", "2026-03-03T10:00:00Z", event_id="e2", page="/b")
    dna = fold(first, second_event)
    view = DnaView(dna, parse_ts("2026-03-03T11:00:00Z"), compute=REGISTRY.compute)
    assert view["page_views_7d"] == 2 and view["page_views_30d"] == 2
    assert _ruleset(REGISTRY).segments[0].when.fn(view) is True
    later = DnaView(dna, parse_ts("2026-03-09T00:00:00Z"), compute=REGISTRY.compute)
    assert later["page_views_7d"] == 1
    assert "page_views_7d" in touched(first, second_event, first.last_seen, REGISTRY)
    assert "page_views_7d" not in touched(first, second_event, first.last_seen)


def test_the_timeline_wakes_when_a_day_leaves_its_window() -> None:
    dep = time_dependence(_ruleset(REGISTRY), REGISTRY)
    assert dep.spans == (7,) and "page_views_7d" in dep.window_names
    assert "page_views_7d" in REGISTRY.time_dependent and "page_views_7d" not in BUILTINS.time_dependent
    dna = fold(None, event("c", "page_view", "2026-03-02T10:00:00Z", page="/a"))
    # the 2 March counts leave a 7-day window at midnight UTC, 9 March
    assert next_wake(dep, dna, dna.last_seen, has_model=False) == parse_ts("2026-03-09T00:00:00Z")


def test_the_json_schema_and_the_docs_carry_it() -> None:
    schema = json_schemas(dna=REGISTRY.json_schema())[DNA_SCHEMA]
    assert schema["properties"]["page_views_7d"] == {"description": "`page_view` events in the 7d window.", "type": "number"}
    assert "page_views_7d" in schema["required"]
    row = "| `page_views_7d` | number | `page_view` events in the 7d window. *time* |"
    assert row in render_dna(REGISTRY)["fields activity"]
    assert row not in render_dna()["fields activity"]
    assert "| `page_views_7d` | number | `page_view` events in the 7d window. *time* |" in render_reference(REGISTRY)


def test_a_name_is_declared_once() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        BUILTINS.extended(fields=[FIELDS["sessions_7d"]])
    with pytest.raises(ValueError, match="not kept"):
        Registry([windowed("page_views_14d", w.PAGE_VIEWS, 14, "activity", "x", ["page_view"])])


def test_builtin_declarations_are_complete() -> None:
    """Every field says how it is computed and what changes it; every event type touches a name
    (but erasure and identify, which re-evaluate everything) and has a fold (but those two: they
    delete or merge the DNA instead)."""
    for spec in BUILTINS.fields.values():
        assert spec.touched_by, spec.name
        assert spec.name in BUILTINS.compute
        assert all(not isinstance(c, Windowed) or c.days in w.SPANS for c in spec.time)
    for name, declared in EVENTS.items():
        assert (name in BUILTINS.touches) == (name not in ("erasure_requested", "identify")), name
        assert (declared.apply is None) == (name in ("erasure_requested", "identify")), name
    assert FIELDS["sessions_7d"].type is NUMBER
