"""The parts of a decision (``segments.messages``): caps and their opening, holdouts' stability,
consent modes and the preferred channel, and the best local hour across daylight-saving changes."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from microseg.segments.dna_record import Dna
from microseg.segments.messages.caps import DAY, WEEK, blocked_until, opening
from microseg.segments.messages.channels import permitted, preferred_order
from microseg.segments.messages.holdouts import in_global_holdout, in_holdout
from microseg.segments.messages.timing import best_hour_at, quiet_until
from microseg.segments.ruleset import ContactPolicy, Message, Origin
from microseg.segments.testing import load_rules_text, parse_ts


def test_a_window_at_its_limit_opens_when_its_oldest_send_leaves_it() -> None:
    assert opening([100.0], 2, DAY, 200.0) is None, "under the limit"
    assert opening([100.0, 150.0], 2, DAY, 200.0) == 100.0 + DAY, "at the limit: opens as the oldest leaves"
    assert opening([100.0, 150.0], 2, DAY, 100.0 + DAY) is None, "a send counts while after s - window"
    assert opening([100.0, 150.0, 170.0], 2, DAY, 200.0) == 150.0 + DAY
    assert opening([1.0], 0, DAY, 2.0) == math.inf
    assert opening([], None, DAY, 2.0) is None


def test_channel_caps_count_only_their_channel_and_the_global_caps_everything() -> None:
    policy = ContactPolicy(per_week=3, channel_caps=(("email", 1, None),))
    sends = [(1000.0, "a", "email"), (2000.0, "b", "sms")]
    assert blocked_until(policy, sends, 3000.0, "email") == 1000.0 + DAY
    assert blocked_until(policy, sends, 3000.0, "sms") is None
    sends.append((2500.0, "c", "push"))
    assert blocked_until(policy, sends, 3000.0, "sms") == 1000.0 + WEEK, "the week's third send fills the global cap"


def _message(mid: str, holdout: float) -> Message:
    return Message(mid, ("s",), None, "email", 1, 0, holdout, "", Origin("f", 1, 1))


def test_holdouts_are_stable_across_rule_versions_and_nest_as_the_share_grows() -> None:
    ids = [f"c-{n:06d}" for n in range(20_000)]
    small = {c for c in ids if in_global_holdout(c, 0.05)}
    assert 0.04 < len(small) / len(ids) < 0.06
    assert small <= {c for c in ids if in_global_holdout(c, 0.10)}, "growing the share only adds customers"
    assert small == {c for c in ids if in_global_holdout(c, 0.05)}, "the same customers every time"
    message = {c for c in ids if in_holdout(c, _message("winback", 0.1))}
    assert 0.09 < len(message) / len(ids) < 0.11
    assert len(message & small) < len(small) * 0.2, "a message's control group is drawn apart from the global one"
    first = load_rules_text(RULES.format(extra=""))
    second = load_rules_text(RULES.format(extra="  - {id: other, when: purchases_total >= 5}\n"))
    assert first.version != second.version
    assert {c for c in ids if in_holdout(c, first.messages[0])} == {c for c in ids if in_holdout(c, second.messages[0])} == message


RULES = """
version: 1
segments:
  - {{id: s, when: purchases_total >= 1}}
{extra}messages:
  - {{id: winback, segments: [s], channel: email, priority: 1, cooldown: 1d, holdout: 0.1}}
contact_policy:
  global_holdout: 0.05
"""


def test_consent_modes() -> None:
    dna = Dna(consent={"email": 100.0, "sms": -50.0}, unsubscribed={"push": 60.0})
    opt_in = ContactPolicy()
    opt_out = ContactPolicy(consent="opt_out")
    mixed = ContactPolicy(consent_by_channel=(("whatsapp", "opt_out"),))
    assert [permitted(opt_in, dna, c) for c in ("email", "sms", "push", "whatsapp")] == [True, False, False, False]
    assert [permitted(opt_out, dna, c) for c in ("email", "sms", "push", "whatsapp")] == [True, False, False, True]
    assert [permitted(mixed, dna, c) for c in ("email", "whatsapp")] == [True, True]


def test_preferred_ranks_messaging_channels_by_engagement_after_a_declared_one() -> None:
    policy = ContactPolicy()
    dna = Dna(channel_uses={"app": 50, "web": 20, "push": 1}, campaigns={"sms": [10, 4, 2]})
    assert preferred_order(policy, dna)[:3] == ("sms", "push", "email")
    dna.preferred_channel = "whatsapp"
    assert preferred_order(policy, dna)[0] == "whatsapp"
    dna.preferred_channel = "app"
    assert "app" not in preferred_order(policy, dna)


NEW_YORK = "America/New_York"


def _local(t: float, zone: str) -> str:
    return datetime.fromtimestamp(t, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M %Z")


def test_best_hour_is_the_same_local_hour_on_both_sides_of_a_daylight_saving_change() -> None:
    policy = ContactPolicy()
    hours = [0] * 24
    hours[9] = 5
    hours[20] = 2
    start = parse_ts("2026-10-31T15:00:00Z")  # 11:00 EDT, the day before clocks go back
    first = best_hour_at(hours, start, start + 3 * DAY, policy, NEW_YORK)
    assert first is not None and _local(first, NEW_YORK) == "2026-11-01 09:00 EST" and first == parse_ts("2026-11-01T14:00:00Z")
    before = best_hour_at(hours, parse_ts("2026-10-30T15:00:00Z"), parse_ts("2026-10-30T15:00:00Z") + DAY, policy, NEW_YORK)
    assert before == parse_ts("2026-10-31T13:00:00Z"), "09:00 EDT is 13:00Z, 09:00 EST 14:00Z"


def test_best_hour_in_the_hour_now_sends_now_and_a_missing_local_hour_is_taken_after_the_change() -> None:
    policy = ContactPolicy()
    hours = [0] * 24
    hours[2] = 3
    paris = "Europe/Paris"
    start = parse_ts("2026-03-28T12:00:00Z")  # 02:00 does not exist in Paris on 2026-03-29
    at = best_hour_at(hours, start, start + 2 * DAY, policy, paris)
    assert at == parse_ts("2026-03-29T01:00:00Z") and _local(at, paris) == "2026-03-29 03:00 CEST"
    now = parse_ts("2026-03-30T00:30:00Z")  # 02:30 CEST: in the best hour already
    assert best_hour_at(hours, now, now + DAY, policy, paris) == now


def test_best_hour_stays_in_the_validity_and_out_of_quiet_hours_else_none() -> None:
    policy = ContactPolicy(quiet_start_min=21 * 60, quiet_end_min=8 * 60)
    hours = [0] * 24
    hours[22] = 9  # most engaged at 22:00, which is quiet: the next best hour is used
    hours[18] = 1
    start = parse_ts("2026-05-04T10:00:00Z")
    assert best_hour_at(hours, start, start + DAY, policy, "UTC") == parse_ts("2026-05-04T18:00:00Z")
    assert best_hour_at(hours, start, start + 3600, policy, "UTC") is None, "not within the validity: the caller sends now"
    assert best_hour_at([0] * 24, start, start + DAY, policy, "UTC") is None
    assert best_hour_at(None, start, start + DAY, policy, "UTC") is None
    assert quiet_until(policy, parse_ts("2026-05-04T22:00:00Z"), "UTC") == parse_ts("2026-05-05T08:00:00Z")


@pytest.mark.parametrize(
    ("text", "where", "hint"),
    [
        ("channel: emial", (8, 14), "did you mean 'email'?"),
        ("channel: [push, smss]", (8, 21), "did you mean 'sms'?"),
        ("channel: app", (8, 14), "not a messaging channel"),
    ],
)
def test_a_misspelt_or_non_messaging_channel_is_a_check_error_at_its_position(text: str, where: tuple[int, int], hint: str, tmp_path) -> None:
    from microseg.segments.rulefiles import check_rules

    (tmp_path / "r.yaml").write_text(
        "version: 1\nsegments:\n  - {id: s, when: 'true'}\nmessages:\n  - id: m\n    segments: [s]\n    priority: 1\n"
        f"    {text}\n    cooldown: 1d\n"
    )
    (problem,) = check_rules(tmp_path)
    assert (problem.line, problem.col) == where and hint in problem.message


def test_caps_and_consent_of_unknown_channels_are_check_errors(tmp_path) -> None:
    from microseg.segments.rulefiles import check_rules

    (tmp_path / "r.yaml").write_text(
        "version: 1\ncontact_policy:\n  caps: {per_day: 2, emial: {per_week: 2}}\n  consent: {smss: opt_out}\n"
    )
    problems = check_rules(tmp_path)
    assert [(p.line, "did you mean" in p.message) for p in problems] == [(3, True), (4, True)]
