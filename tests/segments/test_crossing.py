"""Model scores wake a customer only at their threshold crossings (``segments.crossing``), and the
records are those of a wake-up every 24 h (``Core(crossings=False)``)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from microseg.engine.tools.importer import import_purchases
from microseg.engine.tools.replay import replay
from microseg.engine.tools.sinks import ListSink
from microseg.segments.builtin_fields import BUILTINS
from microseg.segments.crossing import HORIZON_DAYS, Crossings, Watched, day_step
from microseg.segments.dna_record import FIRST_PURCHASE, LAST_PURCHASE, Dna
from microseg.segments.fields import NUMBER_OR_NULL, FieldSpec, Registry, Rescored
from microseg.segments.language.compiler import compile_expression
from microseg.segments.pipeline import Pipeline
from microseg.segments.predictive import BgNbdParams, GammaGammaParams, PredictiveModel, score
from microseg.segments.ruleset import Origin, RuleSet, Segment
from microseg.segments.step import Core
from microseg.segments.testing import Journey, load_rules_text, parse_ts
from microseg.segments.timeline import due, next_wake
from microseg.segments.view import DnaView

DAY = 86_400
SAMPLE = Path(__file__).parents[1] / "data" / "CDNOW_sample.txt"
CDNOW = PredictiveModel(BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426), GammaGammaParams(p=6.25, q=3.74, v=15.44))
"""The BG/NBD and Gamma-Gamma fits of Fader, Hardie & Lee (2005) on the CDNOW sample, in weeks."""


def _history(first: float, x: int, t_x_days: float, spend_cents: int = 10_000, first_day_cents: int = 2_000) -> Dna:
    dna = Dna(first_seen=first, last_seen=first + t_x_days * DAY)
    dna.first_purchase, dna.last_purchase = first, first + t_x_days * DAY
    dna.purchase_days, dna.purchases_total = x + 1, x + 1
    dna.gross_cents, dna.first_day_cents = spend_cents + first_day_cents, first_day_cents
    return dna


def _start(dna: Dna) -> int:
    assert dna.first_purchase is not None and dna.last_purchase is not None
    return int((dna.last_purchase - dna.first_purchase) // DAY)


def _steps(watched: tuple[Watched, ...], dna: Dna, model: PredictiveModel = CDNOW, memo: Crossings | None = None) -> tuple[int, ...] | None:
    assert dna.first_purchase is not None
    return (memo or Crossings()).steps(watched, "_history", dna, dna.first_purchase, _start(dna), model, BUILTINS.compute)


def _brute(watched: tuple[Watched, ...], dna: Dna, days: int, model: PredictiveModel = CDNOW, registry: Registry = BUILTINS) -> list[int]:
    """Every age (whole days) at which one watched score moves to another side of one of its numbers."""
    assert dna.first_purchase is not None

    def sides(k: int) -> tuple[Any, ...]:
        view = DnaView(dna, day_step(dna.first_purchase, k), model, registry.compute)
        return tuple(None if view[w.name] is None else (view[w.name] > c) - (view[w.name] < c) for w in watched for c in w.thresholds)

    start = _start(dna)
    before = sides(start)
    found = []
    for k in range(start + 1, start + days):
        now = sides(k)
        if now != before:
            found.append(k)
        before = now
    return found


def test_p_alive_crosses_its_threshold_on_the_first_day_below_it() -> None:
    dna = _history(parse_ts("1997-01-10T12:00:00Z"), x=3, t_x_days=70)
    watched = (Watched("p_alive", -1, (0.3,)),)
    steps = _steps(watched, dna)
    assert steps is not None and steps[-1] == HORIZON_DAYS
    (day,) = steps[:-1]
    assert _brute(watched, dna, 2000) == [day]
    view = lambda k: DnaView(dna, dna.first_purchase + k * DAY, CDNOW)["p_alive"]  # noqa: E731
    assert view(day - 1) >= 0.3 > view(day)


def test_one_purchase_day_never_moves_p_alive() -> None:
    """x = 0: BG/NBD customers only drop out after a repeat purchase, so P(alive) stays 1."""
    dna = _history(parse_ts("1997-02-01T12:00:00Z"), x=0, t_x_days=0.1, spend_cents=0)
    assert _steps((Watched("p_alive", -1, (0.3, 0.999)),), dna) == (HORIZON_DAYS,)
    assert _steps((Watched("p_alive", -1, (1.0,)),), dna) == (HORIZON_DAYS,)  # equal to 1 at every age
    clv = (Watched("clv_12m", -1, (5.0,)),)  # but its CLV falls with age
    steps = _steps(clv, dna)
    assert steps is not None and list(steps[:-1]) == _brute(clv, dna, 3000) != []


def test_churn_risk_rises_through_its_thresholds() -> None:
    dna = _history(parse_ts("1997-03-05T08:30:00Z"), x=5, t_x_days=120.4)
    watched = (Watched("churn_risk", 1, (0.5, 0.7)),)
    steps = _steps(watched, dna)
    assert steps is not None and len(steps) == 3
    assert list(steps[:-1]) == _brute(watched, dna, 3000)


def test_every_score_and_several_numbers_match_the_daily_schedule() -> None:
    watched = (
        Watched("p_alive", -1, (0.1, 0.3, 0.5, 0.9)),
        Watched("churn_risk", 1, (0.5, 0.7)),
        Watched("expected_purchases_90d", -1, (0.05, 0.5, 1.0)),
        Watched("clv_12m", -1, (10.0, 50.0, 200.0)),
    )
    for first, x, t_x in [(8.5e8, 1, 3.0), (8.6e8 + 0.25, 7, 300.5), (1.7e9 + 0.125, 2, 40.0), (8.5e8, 0, 0.0)]:
        dna = _history(first, x, t_x)
        steps = _steps(watched, dna)
        assert steps is not None
        assert [s for s in steps if s < _start(dna) + 1500] == _brute(watched, dna, 1500), (first, x, t_x)


def test_a_score_against_its_trend_is_left_to_the_daily_schedule() -> None:
    """A score declared falling that rises (or is null) is not trusted: every 24 h, and counted."""

    def wobble(view: DnaView) -> Any:
        age = (view.now - view.dna.first_purchase) // DAY
        return 1.0 + math.sin(age / 10.0)

    def gap(view: DnaView) -> Any:
        age = (view.now - view.dna.first_purchase) // DAY
        return None if age >= 60 else 100.0 / (1.0 + age)

    declared = (Rescored(FIRST_PURCHASE, -1, "_history", LAST_PURCHASE),)
    registry = BUILTINS.extended(
        fields=[
            FieldSpec("wobble", NUMBER_OR_NULL, "not monotone", "test", wobble, declared, frozenset({"purchase"})),
            FieldSpec("gappy", NUMBER_OR_NULL, "null for a while", "test", gap, declared, frozenset({"purchase"})),
        ]
    )
    dna = _history(parse_ts("1997-01-10T12:00:00Z"), x=2, t_x_days=5)
    memo = Crossings()
    for name in ("wobble", "gappy"):
        steps = memo.steps((Watched(name, -1, (0.5,)),), "_history", dna, dna.first_purchase, _start(dna), CDNOW, registry.compute)
        assert steps is None
    assert memo.stats()["daily"] == 2
    assert memo.stats()["daily_reasons"] == {"wobble: against its trend": 1, "gappy: null": 1}

    origin = Origin("t.yaml", 1, 1)
    when = compile_expression("wobble < 0.5", origin=origin, registry=registry)
    core = Core(RuleSet("t", (Segment("low", "", when, origin),), registry=registry), CDNOW)
    assert core.dependence.scores  # watched, but the solver gives up: every 24 h after the first purchase
    now = dna.last_purchase
    assert next_wake(core.dependence, dna, now, has_model=True, model=CDNOW) == dna.first_purchase + (_start(dna) + 1) * DAY


def test_a_score_read_any_other_way_wakes_every_day() -> None:
    opaque = load_rules_text("version: 1\nsegments:\n  - {id: s, when: p_alive * 2 < 0.6}\n")
    compared = load_rules_text("version: 1\nsegments:\n  - {id: s, when: p_alive < 0.3}\n")
    dep = Core(opaque, CDNOW).dependence
    assert dep.rescored == (FIRST_PURCHASE,) and dep.scores == ()
    dep = Core(compared, CDNOW).dependence
    assert dep.rescored == () and [w.name for _, _, _, group in dep.scores for w in group] == ["p_alive"]
    assert Core(compared, CDNOW, crossings=False).dependence.rescored == (FIRST_PURCHASE,)


def test_cuts_over_a_score_are_its_thresholds() -> None:
    rules = load_rules_text(
        "version: 1\nmicrosegments:\n  dimensions:\n"
        "    - {name: value, of: clv_12m, cuts: [20, 80], labels: [low, mid, high]}\n"
    )
    dep = Core(rules, CDNOW).dependence
    assert [(w.name, w.thresholds) for _, _, _, group in dep.scores for w in group] == [("clv_12m", (20.0, 80.0))]
    journeys = []
    for crossings in (True, False):
        j = Journey(rules, CDNOW)
        j.pipeline = Pipeline(Core(rules, CDNOW, crossings=crossings), source="journey", kafka=False)
        for day, amount in enumerate([60.0, 45.0, 80.0, 30.0]):
            j.send("c1", "purchase", f"1997-01-{1 + 9 * day:02d}T10:00:00Z", event_id=f"e{day}", order_id=f"o{day}", amount=amount)
        j.until("1999-01-01T00:00:00Z")
        journeys.append(j)
    crossed, daily = journeys
    assert crossed.changes == daily.changes
    assert [c["to"] for c in crossed.changes if c["cause"] == "tick"] == ["mid", "low"]


def test_a_crossing_wake_up_names_the_scores_as_due() -> None:
    rules = load_rules_text("version: 1\nsegments:\n  - {id: fading, when: p_alive < 0.3}\n")
    j = Journey(rules, CDNOW)
    for day in (0, 10, 20):
        j.send("c1", "purchase", f"1997-01-{1 + day:02d}T10:00:00Z", order_id=f"o{day}", amount=20.0)
    state = j.states["c1"]
    dep = j.core.dependence
    assert state.wake is not None and state.wake == state.dna.first_purchase + round((state.wake - state.dna.first_purchase) / DAY) * DAY
    assert due(dep, state.dna, state.evaluated_at, state.wake, has_model=True, model=CDNOW) >= {"p_alive", "churn_risk"}
    view = lambda t: j.core.view(state.dna, t)["p_alive"]  # noqa: E731
    assert view(state.wake - DAY) >= 0.3 > view(state.wake)
    j.until("2000-01-01T00:00:00Z")
    assert j.moves("c1", "fading") == [("entered", j.changes[-1]["at"], "tick")]
    assert parse_ts(j.changes[-1]["at"]) == state.wake


def test_the_answer_does_not_depend_on_what_is_remembered() -> None:
    """Solved again from nothing (a restarted worker), from a full memo or for another record with
    the same history: the same ages."""
    watched = (Watched("p_alive", -1, (0.3,)), Watched("clv_12m", -1, (50.0,)))
    memo = Crossings()
    dna = _history(parse_ts("1997-01-10T12:00:00Z"), x=3, t_x_days=70)
    first = _steps(watched, dna, memo=memo)
    twin = _history(parse_ts("1997-01-10T12:00:00Z"), x=3, t_x_days=70)
    assert _steps(watched, twin, memo=memo) == first == _steps(watched, dna)
    assert memo.stats()["solved"] == 1 and memo.stats()["reused"] == 1
    other = PredictiveModel(BgNbdParams(r=0.5, alpha=3.0, a=0.5, b=2.0), CDNOW.gamma_gamma)
    assert _steps(watched, dna, model=other, memo=memo) == _steps(watched, dna, model=other)


_SCORES = ("p_alive", "churn_risk", "expected_purchases_90d", "clv_12m")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(first=985009024.265237, x=1, t_x_days=399.0, spend=0, unit="weeks", discount=0.0, picks=[("p_alive", "<", 0.5)])
@given(
    first=st.floats(min_value=8.0e8, max_value=2.0e9),
    x=st.integers(min_value=0, max_value=25),
    t_x_days=st.floats(min_value=0.0, max_value=400.0),
    spend=st.integers(min_value=0, max_value=200_000),
    unit=st.sampled_from(["weeks", "days"]),
    discount=st.sampled_from([0.0, 0.01]),
    picks=st.lists(st.tuples(st.sampled_from(_SCORES), st.sampled_from(["<", "<=", ">", ">=", "=="]), st.floats(0.0, 1.0)), min_size=1, max_size=3),
)
def test_crossings_are_the_days_a_rule_would_flip(
    first: float, x: int, t_x_days: float, spend: int, unit: str, discount: float, picks: list[tuple[str, str, float]]
) -> None:
    """For random histories and rules, the wake-ups are exactly the days some comparison changes
    side (brute force over every day), so every flip of a rule is one of them; with one comparison,
    the first wake-up is the first day the rule flips."""
    scale = {"p_alive": 1.0, "churn_risk": 1.0, "expected_purchases_90d": 3.0, "clv_12m": 300.0}
    comparisons = [(name, op, round(scale[name] * u, 3)) for name, op, u in picks]
    alpha = CDNOW.bgnbd.alpha * (7.0 if unit == "days" else 1.0)
    model = PredictiveModel(BgNbdParams(CDNOW.bgnbd.r, alpha, CDNOW.bgnbd.a, CDNOW.bgnbd.b), CDNOW.gamma_gamma, unit, discount)
    when = " and ".join(f"{name} {op} {c}" for name, op, c in comparisons)
    rules = load_rules_text(f"version: 1\nsegments:\n  - {{id: s, when: '{when}'}}\n")
    core = Core(rules, model)
    dna = _history(first, x, t_x_days, spend_cents=spend if x else 0)
    days = 900
    start = _start(dna)
    watched = tuple(w for _, _, _, group in core.dependence.scores for w in group)
    crossings = _brute(watched, dna, days, model)
    limit = dna.first_purchase + (start + days) * DAY
    wakes, now = [], dna.last_purchase
    while True:
        at = next_wake(core.dependence, dna, now, has_model=True, model=model)
        if at is None or at >= limit:
            break
        day = round((at - dna.first_purchase) / DAY)
        assert at == day_step(dna.first_purchase, day)  # the instant of a daily step, to the bit
        wakes.append(day)
        now = at
    assert wakes == crossings
    segment = rules.segments[0].when

    def inside(k: int) -> Any:
        return segment.fn(DnaView(dna, day_step(dna.first_purchase, k), model)) is True

    flips = [k for k in range(start + 1, start + days) if inside(k) != inside(k - 1)]
    assert set(flips) <= set(wakes)
    if len(comparisons) == 1 and flips and comparisons[0][1] != "==":
        assert flips[0] == wakes[0]  # the first side change of a strict or loose inequality flips it


def _sample_lines(every: int) -> list[bytes]:
    """The CDNOW sample as purchase events (``microseg import``), one customer in ``every``."""
    imported = import_purchases(SAMPLE)
    keep = sorted({key for key in imported.keys})[::every]
    kept = set(keep)
    return [line for line, key in zip(imported.lines, imported.keys) if key in kept]


def _run(lines: list[bytes], rules: RuleSet, *, crossings: bool) -> tuple[ListSink, dict[str, Any], dict[str, Any]]:
    core = Core(rules, CDNOW, crossings=crossings)
    sink = ListSink()
    stats, states = replay(lines, core, sink, until=parse_ts("1998-07-01T00:00:00Z"), now=parse_ts("2030-01-01T00:00:00Z"))
    return sink, {c: (s.segments, s.code) for c, s in states.items()}, stats.as_dict()["crossings"]


@pytest.mark.parametrize(
    "extra",
    [
        "",
        "  - {id: churny, when: churn_risk >= 0.6}\n  - {id: buying, when: 'expected_purchases_90d > 0.4 or clv_12m > 120'}\n"
        "microsegments:\n  dimensions:\n    - {name: value, of: clv_12m, cuts: [10, 40, 150], labels: [a, b, c, d]}\n"
        "    - {name: alive, of: p_alive, cuts: [0.2, 0.5, 0.8], labels: [gone, fading, maybe, alive]}\n",
    ],
)
@pytest.mark.slow
def test_cdnow_sample_gives_the_records_of_the_daily_schedule(extra: str) -> None:
    """A real-shaped sample (one CDNOW customer in four, to mid-1998): the same change records
    (ids, instants, causes) and final memberships whether the scores wake daily or at crossings."""
    rules = load_rules_text(
        "version: 1\nsegments:\n"
        "  - {id: likely_churner_valuable, when: p_alive < 0.3 and clv_12m > 50}\n"
        "  - {id: recent, when: days_since_last_purchase <= 30}\n" + extra
    )
    lines = _sample_lines(4)
    crossed, crossed_states, solved = _run(lines, rules, crossings=True)
    daily, daily_states, none = _run(lines, rules, crossings=False)
    assert crossed.change_records == daily.change_records
    assert crossed_states == daily_states
    assert len(crossed.change_records) > 500
    assert solved["solved"] > 100 and solved["daily"] == 0 and none["solved"] == 0
    assert any(c["cause"] == "tick" and c.get("segment") == "likely_churner_valuable" for c in crossed.change_records)


@settings(max_examples=200, deadline=None)
@given(
    first=st.floats(min_value=8.0e8, max_value=2.0e9),
    x=st.integers(min_value=0, max_value=60),
    t_x_days=st.floats(min_value=0.0, max_value=2000.0),
    age=st.integers(min_value=0, max_value=4000),
    spend=st.integers(min_value=0, max_value=10**9),
    discount=st.sampled_from([0.0, 0.02]),
)
def test_the_fields_are_the_scores_of_the_model(first: float, x: int, t_x_days: float, age: int, spend: int, discount: float) -> None:
    """The DNA fields (P(alive), the 90-day purchases and the CLV, each computed apart) are exactly
    ``predictive.score`` of the history (x, t_x, T, m_x) at that instant."""
    model = PredictiveModel(CDNOW.bgnbd, CDNOW.gamma_gamma, discount_rate_monthly=discount)
    dna = _history(first, x, t_x_days, spend_cents=spend if x else 0)
    view = DnaView(dna, dna.last_purchase + age * DAY, model)
    stats = view["_statistics"]
    assert stats is not None and stats[:2] == view["_history"][:2]
    expected = score(model, *stats)
    assert (view["p_alive"], view["expected_purchases_90d"], view["clv_12m"]) == (expected.p_alive, expected.expected_purchases_90d, expected.clv_12m)
    assert view["churn_risk"] == 1.0 - expected.p_alive


@st.composite
def _histories(draw: Any) -> list[bytes]:
    """Purchase events of one to three customers: one to six purchases each, at any second of the
    day, gaps of up to 300 days (some on the same day), amounts of 0 to 500."""
    from microseg.segments.testing import event_bytes

    lines: list[tuple[float, bytes]] = []
    for customer in range(draw(st.integers(1, 3))):
        t = parse_ts("1997-01-01T00:00:00Z") + draw(st.integers(0, 90 * DAY))
        for n in range(draw(st.integers(1, 6))):
            if n:
                t += draw(st.sampled_from([0, 3600, DAY, 5 * DAY])) + draw(st.integers(0, 300 * DAY))
            amount = draw(st.integers(0, 50_000)) / 100
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
            event_id = f"c{customer}-{n}"
            lines.append((t, event_bytes(f"c{customer}", "purchase", stamp, event_id=event_id, order_id=event_id, amount=amount)))
    return [line for _, line in sorted(lines, key=lambda item: item[0])]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=_histories(),
    picks=st.lists(st.tuples(st.sampled_from(_SCORES), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), st.floats(0.0, 1.0)), min_size=1, max_size=3),
    cut=st.sampled_from(_SCORES),
    cuts=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3, unique=True),
    unit=st.sampled_from(["weeks", "days"]),
)
def test_crossing_wake_ups_give_the_records_of_daily_wake_ups(
    lines: list[bytes], picks: list[tuple[str, str, float]], cut: str, cuts: list[float], unit: str
) -> None:
    """Random purchase histories and rules (comparisons in either direction, a dimension cut over a
    score) replayed to two years after the first purchase, once waking at the crossings and once
    every 24 h: the same change records (ids, instants, causes) and final states' memberships."""
    scale = {"p_alive": 1.0, "churn_risk": 1.0, "expected_purchases_90d": 3.0, "clv_12m": 300.0}
    when = " and ".join(f"{name} {op} {round(scale[name] * u, 3)}" for name, op, u in picks)
    bands = sorted({round(scale[cut] * u, 3) for u in cuts})
    labels = ", ".join(f"b{i}" for i in range(len(bands) + 1))
    rules = load_rules_text(
        f"version: 1\nsegments:\n  - {{id: s, when: '{when}'}}\n  - {{id: t, when: '{picks[0][0]} >= 0.25'}}\n"
        f"microsegments:\n  dimensions:\n    - {{name: band, of: {cut}, cuts: {bands}, labels: [{labels}]}}\n"
    )
    alpha = CDNOW.bgnbd.alpha * (7.0 if unit == "days" else 1.0)
    model = PredictiveModel(BgNbdParams(CDNOW.bgnbd.r, alpha, CDNOW.bgnbd.a, CDNOW.bgnbd.b), CDNOW.gamma_gamma, unit)
    outputs = []
    for crossings in (True, False):
        core = Core(rules, model, crossings=crossings)
        sink = ListSink()
        stats, states = replay(lines, core, sink, until=parse_ts("1999-07-01T00:00:00Z"), now=parse_ts("2030-01-01T00:00:00Z"))
        outputs.append((sink.change_records, {c: (s.segments, s.code) for c, s in states.items()}, stats.as_dict()["crossings"]))
    (crossed, crossed_states, solved), (daily, daily_states, _) = outputs
    assert crossed == daily
    assert crossed_states == daily_states
    assert solved["daily"] == 0 and solved["solved"] >= 1


@pytest.mark.parametrize("crossings", [True, False])
def test_a_wake_up_across_2_pow_30_seconds_moves_on(crossings: bool) -> None:
    """2004-01-10 (2^30 s): base + k days rounds down there for a first purchase with a fraction of
    a second, and the wake-up used to land on its own instant again (the customer stuck at it, no
    later tick). It is the first instant with k whole days, and time runs on."""
    base = parse_ts("2003-09-19T13:37:04.265Z")
    for k in range(0, 400):
        at = day_step(base, k)
        assert (at - base) // DAY == k > (math.nextafter(at, -math.inf) - base) // DAY  # the first such instant
    rules = load_rules_text("version: 1\nsegments:\n  - {id: fading, when: p_alive < 0.3}\n  - {id: old, when: days_since_last_purchase > 100}\n")
    j = Journey(rules, CDNOW)
    j.pipeline = Pipeline(Core(rules, CDNOW, crossings=crossings), source="journey", kafka=False)
    for n, stamp in enumerate(["2003-09-19T13:37:04.265Z", "2003-09-29T13:37:04.265Z", "2003-10-10T13:37:04.265Z"]):
        j.send("c1", "purchase", stamp, order_id=f"o{n}", amount=20.0)
    j.until("2005-01-01T00:00:00Z")
    state = j.states["c1"]
    assert state.wake is None or state.wake > state.evaluated_at
    assert [(c["segment"], c["change"], c["cause"]) for c in j.changes if c["cause"] == "tick"] == [("fading", "entered", "tick"), ("old", "entered", "tick")]
    assert j.entered("c1", "old") == "2004-01-19T13:37:04.265Z"  # 101 whole days after the last purchase
