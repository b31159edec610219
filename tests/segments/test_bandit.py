"""Thompson sampling over posterior snapshots (segments/bandit.py): determinism, the Beta draws,
and convergence on a simulated campaign (issue 16 item 6)."""

from __future__ import annotations

import random
import statistics
from collections import Counter
from pathlib import Path
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.segments.bandit import (
    EMPTY_SNAPSHOT,
    NoVariantsError,
    PosteriorSnapshot,
    arm_posterior,
    beta_draw,
    choose_variant,
)

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=12)
counts = st.tuples(st.integers(0, 10_000), st.integers(0, 10_000))


@given(
    message=ids,
    variants=st.lists(ids, min_size=1, max_size=5, unique=True),
    key=st.text(min_size=1, max_size=40),
    arm_counts=st.lists(counts, min_size=5, max_size=5),
    order_seed=st.integers(0, 1000),
)
@settings(max_examples=150, deadline=None)
def test_same_snapshot_and_decision_give_the_same_variant_whatever_the_order(message, variants, key, arm_counts, order_seed):
    snapshot = PosteriorSnapshot("v", {(message, v): c for v, c in zip(variants, arm_counts)})
    chosen = choose_variant(snapshot, message, variants, key)
    assert chosen in variants
    shuffled = list(variants)
    random.Random(order_seed).shuffle(shuffled)
    copy = PosteriorSnapshot("v", dict(snapshot.arms))
    assert choose_variant(copy, message, shuffled, key) == chosen


def test_a_single_variant_is_returned_and_no_variants_is_a_readable_error():
    assert choose_variant(EMPTY_SNAPSHOT, "m", ["only"], "d1") == "only"
    with pytest.raises(NoVariantsError, match="at least one"):
        choose_variant(EMPTY_SNAPSHOT, "m", [], "d1")


def test_the_empty_snapshot_splits_evenly():
    chosen = Counter(choose_variant(EMPTY_SNAPSHOT, "welcome", ["a", "b", "c"], f"d{i}") for i in range(6000))
    for variant in "abc":
        assert 1800 < chosen[variant] < 2200, chosen


def test_impossible_counts_are_clamped_not_raised():
    snapshot = PosteriorSnapshot("v", {("m", "a"): (3, 5), ("m", "b"): (-2, -1)})
    assert arm_posterior(snapshot, "m", "a") == (6.0, 1.0)
    assert arm_posterior(snapshot, "m", "b") == (1.0, 1.0)
    assert arm_posterior(snapshot, "m", "unknown") == (1.0, 1.0)
    assert choose_variant(snapshot, "m", ["a", "b"], "d") in {"a", "b"}


@pytest.mark.parametrize(("alpha", "beta"), [(1.0, 1.0), (3.0, 7.0), (41.0, 961.0), (8001.0, 92001.0)])
def test_beta_draws_have_the_beta_mean_and_variance(alpha, beta):
    rng = random.Random(7)
    draws = [beta_draw(rng, alpha, beta) for _ in range(40_000)]
    mean = alpha / (alpha + beta)
    var = alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1))
    # standard error of the mean is sqrt(var / n); 5 of them is a test that fails only when wrong
    assert abs(statistics.fmean(draws) - mean) < 5 * (var / len(draws)) ** 0.5
    assert abs(statistics.variance(draws) / var - 1) < 0.05


# --- convergence on a simulated campaign --------------------------------------------------------

RATES = {"a": 0.04, "b": 0.08}
DECISIONS = 20_000
REFRESH = 500
"""The simulated workers see a new posterior snapshot every 500 decisions."""
SEEDS = 20


def simulate(seed: int) -> list[float]:
    """One campaign: returns the better variant's cumulative share after each refresh window.

    Decisions read the snapshot cut at the last refresh (counts of every earlier decision and
    its conversion), exactly as workers read a published version; conversions are Bernoulli
    draws at the variant's true rate."""
    rng = random.Random(seed)
    totals = {v: [0, 0] for v in RATES}
    snapshot = EMPTY_SNAPSHOT
    better = 0
    curve = []
    for i in range(1, DECISIONS + 1):
        variant = choose_variant(snapshot, "offer", ("a", "b"), f"sim{seed}-{i}")
        totals[variant][0] += 1
        totals[variant][1] += rng.random() < RATES[variant]
        better += variant == "b"
        if i % REFRESH == 0:
            snapshot = PosteriorSnapshot(f"sim{seed}-{i // REFRESH}", MappingProxyType({("offer", v): (d, c) for v, (d, c) in totals.items()}))
            curve.append(better / i)
    return curve


def plot(curves: list[list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [REFRESH * (k + 1) for k in range(DECISIONS // REFRESH)]
    fig, ax = plt.subplots(figsize=(7, 4))
    for curve in curves:
        ax.plot(xs, curve, color="tab:blue", alpha=0.35, linewidth=1)
    ax.plot(xs, [statistics.median(c[k] for c in curves) for k in range(len(xs))], color="tab:blue", linewidth=2.5, label="median of 20 seeds")
    ax.axhline(0.8, color="tab:red", linestyle="--", linewidth=1, label="80 %")
    ax.set_xlabel(f"decisions (snapshot refreshed every {REFRESH})")
    ax.set_ylabel("share of decisions to the 8 % variant (cumulative)")
    ax.set_title("Thompson sampling, conversion 4 % vs 8 %")
    ax.set_ylim(0.4, 1.0)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts" / "bandit"
"""Where the curve is written (``tests/artifacts/``, ignored by git); docs/bandit-curve.png is a copy."""


def test_thompson_sampling_sends_the_better_variant_at_least_80_percent_by_20000_decisions():
    """The share is cumulative: of all decisions 1..20,000, how many went to the 8 % variant."""
    curves = [simulate(seed) for seed in range(SEEDS)]
    final = [curve[-1] for curve in curves]
    converged = sum(share >= 0.8 for share in final)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "bandit-curve.png"
    plot(curves, path)
    print(f"\nbandit: cumulative share of the 8% variant at {DECISIONS}: min {min(final):.3f} median {statistics.median(final):.3f}; "
          f">= 0.8 in {converged}/{SEEDS} seeds; curve {path}")
    assert path.stat().st_size > 10_000
    assert converged >= 18, final


# --- the published sequence: which snapshot a decision reads ----------------------------------

from microseg.segments.bandit import (  # noqa: E402 - grouped with the tests that use them
    PosteriorHistory,
    PosteriorRecordError,
    read_snapshot_record,
    snapshot_record,
    snapshot_version,
)


def _snap(version: str, **arms: tuple[int, int]) -> PosteriorSnapshot:
    return PosteriorSnapshot(version, MappingProxyType({("m", v): c for v, c in arms.items()}))


def test_a_decision_reads_the_latest_snapshot_effective_at_its_time():
    history = PosteriorHistory([(200.0, _snap("v2")), (100.0, _snap("v1"))])
    assert history.at(99.999) is EMPTY_SNAPSHOT
    assert history.at(100.0).version == "v1"  # effective_from is inclusive
    assert history.at(199.999).version == "v1"
    assert history.at(200.0).version == "v2"
    assert history.at(1e12).version == "v2"
    assert history.latest() == (200.0, history.at(200.0))


@given(st.permutations(range(6)), st.lists(st.floats(0, 700), min_size=1, max_size=20))
@settings(max_examples=60, deadline=None)
def test_the_same_snapshots_in_any_order_and_read_twice_give_the_same_answers(order, times):
    entries = [(float(100 * (i // 2)), _snap(f"v{i}")) for i in range(6)]  # two per instant
    reference = PosteriorHistory(entries)
    shuffled = PosteriorHistory()
    for i in order:
        shuffled.add(*entries[i])
    assert not shuffled.add(*entries[order[0]])  # a redelivered snapshot is kept once
    assert len(shuffled) == 6
    for t in times:
        assert shuffled.at(t).version == reference.at(t).version
    assert reference.at(0.0).version == "v1"  # equal instants: the greater version


def test_records_round_trip_and_bad_ones_say_what_is_wrong():
    arms = {("m", "a"): (10, 1), ("m", "b"): (12, 3)}
    version = snapshot_version(1_796_005_530.0, arms)
    assert version.startswith("20261130T022530Z-") and version != snapshot_version(1_796_005_530.0, {("m", "a"): (10, 2)})
    snapshot = PosteriorSnapshot(version, arms)
    record = snapshot_record(1_796_005_530.0, snapshot, cut_at=1_796_005_500.0)
    effective_from, read = read_snapshot_record(record)
    assert (effective_from, read.version, dict(read.arms)) == (1_796_005_530.0, version, arms)
    for bad, reason in [
        ([], "JSON object"),
        ({"effective_from": 1.0, "arms": []}, "version"),
        ({"version": "v", "effective_from": "soon", "arms": []}, "effective_from"),
        ({"version": "v", "effective_from": 1.0, "arms": {}}, "arms"),
        ({"version": "v", "effective_from": 1.0, "arms": [{"message": "m"}]}, "lacks"),
        ({"version": "v", "effective_from": 1.0, "arms": [{"message": "m", "variant": "a", "decisions": -1, "conversions": 0}]}, "non-negative"),
    ]:
        with pytest.raises(PosteriorRecordError, match=reason):
            read_snapshot_record(bad)


def test_snapshot_at_reads_a_history_at_the_decision_time_and_passes_a_snapshot_through():
    from microseg.segments.bandit import snapshot_at

    history = PosteriorHistory([(100.0, _snap("v1"))])
    assert snapshot_at(history, 150.0).version == "v1"
    assert snapshot_at(history, 50.0) is EMPTY_SNAPSHOT
    fixed = _snap("fixed")
    assert snapshot_at(fixed, 0.0) is fixed and snapshot_at(None, 0.0) is None
