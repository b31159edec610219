"""Running window totals always equal a brute-force sum over the day rows."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from microseg.segments.windows import DAY, SPANS, Windows

_ADDS = st.lists(
    st.tuples(st.integers(0, 200 * DAY), st.integers(0, 12), st.integers(-1, 5)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_ADDS, st.integers(0, 120 * DAY))
def test_totals_match_a_full_scan(adds: list[tuple[int, int, int]], later: int) -> None:
    windows = Windows()
    for t, metric, amount in adds:
        snapshot = windows.copy()
        before = {(m, s): snapshot.scan(max(a[0] for a in adds), m, s) for m in range(13) for s in SPANS}
        windows.add(t, metric, amount)
        assert {(m, s): snapshot.scan(max(a[0] for a in adds), m, s) for m in range(13) for s in SPANS} == before
    now = windows.day * DAY + later
    for metric in range(13):
        for span in SPANS:
            assert windows.total(now, metric, span) == windows.scan(now, metric, span), (metric, span)


def test_a_day_leaves_the_window_at_utc_midnight() -> None:
    windows = Windows()
    windows.add(10 * DAY + 5, 0)
    assert windows.total(16 * DAY + DAY - 1, 0, 7) == 1
    assert windows.total(17 * DAY, 0, 7) == 0
    assert windows.next_expiry(10 * DAY + 5, (7, 30)) == 17 * DAY


def test_rows_older_than_the_longest_window_are_forgotten() -> None:
    windows = Windows()
    windows.add(0, 0)
    windows.add(200 * DAY, 0)
    assert list(windows.rows) == [200]


@given(
    st.lists(st.tuples(st.integers(0, 120 * DAY), st.sampled_from([0, 5, 6, 9])), min_size=1, max_size=40),
    st.integers(0, 30 * DAY),
    st.lists(st.sampled_from([0, 5, 6, 9]), min_size=1, max_size=2, unique=True),
)
def test_an_expiry_for_some_metrics_is_the_first_day_with_one_of_them_leaving(
    adds: list[tuple[int, int]], later: int, wanted: list[int]
) -> None:
    windows = Windows()
    for t, metric in sorted(adds):
        windows.add(t, metric)
    now = max(t for t, _ in adds) + later
    metrics = tuple(sorted(wanted))
    spans = (7, 30)
    expected = min(
        (
            float((day + span) * DAY)
            for span in spans
            for day, row in windows.rows.items()
            if (day + span) * DAY > now and any(row[m] for m in metrics)
        ),
        default=None,
    )
    assert windows.next_expiry(now, spans, (metrics, metrics)) == expected
