"""Summaries for people: counts as words, never a Python dict."""

from __future__ import annotations

from collections import Counter

from microseg.engine.tools.summaries import counted, counts_text, replay_summary_lines


def test_counts_are_words_largest_first() -> None:
    assert counts_text(Counter(quiet=3, cap=12, cooldown=5, consent=0)) == "cap 12, cooldown 5, quiet 3"
    assert counts_text({}) == "none" and counts_text({"cap": 0}, empty="0") == "0"
    assert counts_text({"a": 1, "b": 1, "c": 1}, limit=2) == "a 1, b 1 and 1 more kind"
    assert counts_text({"a": 1, "b": 1, "c": 1, "d": 1}, limit=2) == "a 1, b 1 and 2 more kinds"
    assert counts_text({"holdout": 12_345}) == "holdout 12,345"


def test_replay_summary_has_no_braces() -> None:
    summary = {
        "lines": 12_000, "events": 11_950, "rejected": 30, "duplicates": 20, "changes": 4_321, "messages": 210,
        "suppressed": {"cap": 12, "quiet": 3}, "customers": 300, "seconds": 1.5, "events_per_s": 8_000,
        "state_bytes_mean": 410, "state_bytes_p50": 380, "state_bytes_max": 1_900, "rules_version": "abc", "model": "none",
    }
    lines = replay_summary_lines(summary)
    assert lines[0] == "12,000 lines: 11,950 events, 30 rejected, 20 duplicates"
    assert lines[1] == "4,321 segment changes, 210 messages; held back: cap 12, quiet 3"
    assert not any(c in "".join(lines) for c in "{}'")


def test_a_count_of_one_is_singular() -> None:
    assert [counted(n, "customer") for n in (0, 1, 2, 1_234)] == ["0 customers", "1 customer", "2 customers", "1,234 customers"]
    assert counted(1, "segment change") == "1 segment change" and counted(3, "child", "children") == "3 children"
    one = {
        "lines": 1, "events": 1, "rejected": 0, "duplicates": 1, "changes": 1, "messages": 1, "suppressed": {}, "customers": 1,
        "seconds": 0.01, "events_per_s": 100, "state_bytes_mean": 1, "state_bytes_p50": 1, "state_bytes_max": 1, "rules_version": "v", "model": "none",
    }
    lines = replay_summary_lines(one)
    assert lines[0] == "1 line: 1 event, 0 rejected, 1 duplicate"
    assert lines[1] == "1 segment change, 1 message; held back: none" and lines[2].startswith("1 customer;")
