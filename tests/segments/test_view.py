"""``iso``: the text every output record carries for an instant, always with milliseconds."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, strategies as st

from microseg.segments.view import iso


def _reference(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False, allow_infinity=False))
def test_iso_matches_datetime_for_any_instant(t: float) -> None:
    assert iso(t) == _reference(t)


@given(st.integers(min_value=0, max_value=4_102_444_800), st.integers(min_value=0, max_value=1_999_999))
def test_iso_matches_datetime_at_microsecond_and_half_microsecond_steps(seconds: int, half_micros: int) -> None:
    t = seconds + half_micros / 2_000_000
    assert iso(t) == _reference(t)


def test_iso_examples() -> None:
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_767_261_600.25) == "2026-01-01T10:00:00.250Z"
    assert iso(1_767_261_602.6459) == "2026-01-01T10:00:02.645Z", "cut to the millisecond, not rounded"
    assert iso(1_767_225_599.9999996) == "2026-01-01T00:00:00.000Z", "float noise: rounded to the microsecond first"
    assert iso(1_767_225_599.999999) == "2025-12-31T23:59:59.999Z", "a clamped leap second stays on its day"
