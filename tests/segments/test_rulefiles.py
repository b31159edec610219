"""Rule files: the contract example loads; every kind of mistake is reported as file:line:col."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from microseg.schemas.rulefile import rulefile_json_schema
from microseg.segments.language import RuleError
from microseg.segments.rulefiles import check_rules, compile_rule_texts, load_rules
from microseg.segments.ruleset import CasesDimension, CategoryDimension, CutsDimension

CONTRACT_EXAMPLE = """\
version: 1
segments:                       # named segments; a customer may be in many
  - id: cart_abandoner          # [a-z0-9_]+, unique
    description: Left a cart this week and has not bought since
    when: carts_abandoned_30d >= 1 and days_since_last_purchase > 3
  - id: lapsed_high_value
    description: Spent a lot, then went quiet
    when: spend_total >= 500 and days_since_last_activity > 45
microsegments:                  # the DNA code: one label per dimension; cells hold 1..n customers
  dimensions:
    - name: lifecycle
      cases:                    # first true case wins
        - {label: new, when: tenure_days <= 90}
        - {label: lapsed, when: days_since_last_activity > 60}
        - {label: active, when: true}
    - name: value
      of: clv_12m
      cuts: [100, 500, 2000]
      labels: [low, mid, high, top]
    - name: taste
      of: top_category
messages:                       # next-best-message playbook
  - id: winback_10pct
    segments: [lapsed_high_value]   # eligible when in any of them (or `when:` expression)
    channel: preferred              # or a fixed channel
    priority: 50                    # higher wins arbitration
    cooldown: 14d
    holdout: 0.1                    # share of eligible customers deliberately not messaged
contact_policy:
  caps: {per_day: 1, per_week: 3}
  quiet_hours: {start: "21:00", end: "08:00"}   # in the customer's timezone
"""


def write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


def problems(directory: Path) -> list[str]:
    return [str(p).removeprefix(f"{directory}/") for p in check_rules(directory)]


def test_contract_example_loads(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, {"main.yaml": CONTRACT_EXAMPLE}))
    assert rules.segment_ids == ("cart_abandoner", "lapsed_high_value")
    assert rules.files == ("main.yaml",)
    lifecycle, value, taste = rules.dimensions
    assert isinstance(lifecycle, CasesDimension) and [label for label, _ in lifecycle.cases] == ["new", "lapsed", "active"]
    assert isinstance(value, CutsDimension) and value.cuts == (100.0, 500.0, 2000.0) and value.labels == ("low", "mid", "high", "top")
    assert isinstance(taste, CategoryDimension) and taste.of.source == "top_category"
    (message,) = rules.messages
    assert (message.id, message.segments, message.channel, message.priority, message.cooldown_s, message.holdout) == (
        "winback_10pct",
        ("lapsed_high_value",),
        "preferred",
        50,
        14 * 86_400,
        0.1,
    )
    assert (rules.policy.per_day, rules.policy.per_week, rules.policy.quiet_start_min, rules.policy.quiet_end_min) == (1, 3, 1260, 480)
    seg = rules.segments[0]
    assert seg.when.origin.line == 5 and seg.when.origin.col == 11 and seg.origin.line == 3
    assert seg.when.fn({"carts_abandoned_30d": 2, "days_since_last_purchase": 5}) is True
    assert check_rules(tmp_path) == []


def test_version_is_a_stable_content_hash(tmp_path: Path) -> None:
    a = load_rules(write(tmp_path / "a", {"main.yaml": CONTRACT_EXAMPLE})).version
    b = load_rules(write(tmp_path / "b", {"main.yaml": CONTRACT_EXAMPLE})).version
    c = load_rules(write(tmp_path / "c", {"main.yaml": CONTRACT_EXAMPLE + "\n"})).version
    d = compile_rule_texts({"main.yaml": CONTRACT_EXAMPLE.encode()}).version
    assert a == b == d != c and len(a) == 12


def test_sections_may_be_split_across_files(tmp_path: Path) -> None:
    top, rest = CONTRACT_EXAMPLE.split("microsegments:", 1)
    rules = load_rules(write(tmp_path, {"a_segments.yaml": top, "b_rest.yml": "version: 1\nmicrosegments:" + rest, ".hidden.yaml": "x", "notes.txt": "x"}))
    assert rules.files == ("a_segments.yaml", "b_rest.yml") and len(rules.messages) == 1


def test_yaml_12_scalars_stay_text(tmp_path: Path) -> None:
    rules = load_rules(
        write(
            tmp_path,
            {
                "a.yaml": """\
                version: 1
                segments: [{id: s, when: "true"}]
                microsegments:
                  dimensions:
                    - name: yes_no
                      cases:
                        - {label: yes, when: sessions_30d > 0}
                        - {label: no, when: true}
                contact_policy:
                  quiet_hours: {start: 21:00, end: 08:30}
                  default_timezone: Europe/Paris
                """
            },
        )
    )
    dim = rules.dimensions[0]
    assert isinstance(dim, CasesDimension) and [label for label, _ in dim.cases] == ["yes", "no"]
    assert (rules.policy.quiet_start_min, rules.policy.quiet_end_min, rules.policy.default_timezone) == (1260, 510, "Europe/Paris")


STRUCTURE_ERRORS: list[tuple[str, str]] = [
    ("version: 1\nsegments:\n  - id: a\n    whn: true\n", "a.yaml:4:5: segments[0]: unknown key 'whn'; did you mean 'when'?"),
    ("version: 1\nsegments:\n  - id: a\n    when: true\n    colour: red\n", "a.yaml:5:5: segments[0]: unknown key 'colour' (allowed: id, description, when)"),
    ("version: 1\nsegments:\n  - id: a\n    description: x\n", "a.yaml:3:5: segments[0]: missing required key 'when'"),
    ("segments: []\n", "a.yaml:1:1: missing required key 'version'; start the file with 'version: 1'"),
    ("version: 2\n", "a.yaml:1:10: version: rule file version 2 is not supported; use 'version: 1'"),
    ("version: true\n", "a.yaml:1:10: version: Input should be a valid integer"),
    ("version: 1\nsegments:\n  - id: Bad-Id\n    when: true\n", "a.yaml:3:9: segments[0].id: use lower-case letters, digits and _ only (got 'Bad-Id')"),
    ("version: 1\nsegments: {id: a}\n", "a.yaml:2:11: segments: Input should be a valid list"),
    ("version: 1\nversion: 1\n", "a.yaml:2:1: duplicate key 'version' (first at line 1)"),
    ("version: 1\nx: !!python/object/apply:os.system ['echo hi']\n", "a.yaml:2:4: YAML tags (tag:yaml.org,2002:python/object/apply:os.system) are not allowed"),
    ("version: !foo 1\n", "a.yaml:1:10: YAML tags (!foo) are not allowed"),
    ("version: 1\na: &a [1, 2]\nb: *a\n", "a.yaml:2:4: anchors (&a) are not allowed"),
    ("version: 1\nb: *a\n", "a.yaml:2:4: aliases (*a) are not allowed"),
    ("version: 1\nsegments: [\n", "a.yaml:3:1: YAML: expected the node content"),
    ("version: 1\n  bad indent: 2\n", "a.yaml:2:13: YAML: mapping values are not allowed here"),
    ("", "a.yaml:1:1: empty rule file; start it with 'version: 1'"),
    ("- 1\n- 2\n", "a.yaml:1:1: a rule file is a mapping that starts with 'version: 1'"),
    ("version: 1\n" + "x:\n" + "".join("  " * i + "- \n" for i in range(1, 25)), "rule file nests more than 20 levels deep"),
    ("version: 1\nx: [" * 1 + "[" * 30 + "]" * 30 + "]\n", "rule file nests more than 20 levels deep"),
    # microsegments
    (
        "version: 1\nmicrosegments:\n  dimensions:\n    - name: v\n      of: clv_12m\n      cuts: [100, 50, 2000]\n      labels: [a, b, c]\n",
        "a.yaml:6:19: dimension 'v': cuts must be strictly increasing (50 after 100)",
    ),
    (
        "version: 1\nmicrosegments:\n  dimensions:\n    - name: v\n      of: clv_12m\n      cuts: [100, 500]\n      labels: [a, b]\n",
        "a.yaml:7:15: dimension 'v': 2 cuts make 3 bands, so give 3 labels (got 2)",
    ),
    (
        "version: 1\nmicrosegments:\n  dimensions:\n    - name: v\n      of: clv_12m\n      cuts: [100]\n",
        "a.yaml:4:7: dimension 'v': numeric bands need both 'cuts' and 'labels' (missing 'labels')",
    ),
    (
        "version: 1\nmicrosegments:\n  dimensions:\n    - name: v\n      of: top_category\n      cuts: [1]\n      labels: [a, b]\n",
        "a.yaml:5:11: dimension 'v': 'of' with cuts must be a number, got string",
    ),
    ("version: 1\nmicrosegments:\n  dimensions:\n    - name: v\n", "a.yaml:4:7: dimension 'v' needs 'cases', or 'of'"),
    (
        "version: 1\nmicrosegments:\n  dimensions:\n    - name: v\n      cases:\n        - {label: na, when: true}\n",
        "a.yaml:6:19: 'na' is reserved",
    ),
    (
        "version: 1\nmicrosegments:\n  dimensions:\n    - name: v\n      cases:\n        - {label: a, when: true}\n        - {label: a, when: false}\n",
        "a.yaml:7:19: label 'a' is used twice in this dimension",
    ),
    (
        "version: 1\nmicrosegments:\n  dimensions:\n    - name: v\n      of: top_category\n    - name: v\n      of: preferred_channel\n",
        "a.yaml:6:13: dimension name 'v' is used twice",
    ),
    # messages
    (
        "version: 1\nmessages:\n  - id: m\n    channel: email\n    priority: 1\n    cooldown: 2w\n    when: true\n",
        "a.yaml:6:15: messages[0].cooldown: write a duration like 14d, 12h or 30m (got '2w')",
    ),
    (
        "version: 1\nmessages:\n  - id: m\n    channel: email\n    priority: 1\n    cooldown: 2d\n    holdout: 1.5\n    when: true\n",
        "a.yaml:7:14: messages[0].holdout: Input should be less than or equal to 1 (got 1.5)",
    ),
    (
        "version: 1\nmessages:\n  - id: m\n    channel: email\n    priority: high\n    cooldown: 2d\n    when: true\n",
        "a.yaml:5:15: messages[0].priority: Input should be a valid integer (got 'high')",
    ),
    (
        "version: 1\nmessages:\n  - id: m\n    channel: email\n    priority: 1\n    cooldown: 2d\n",
        "a.yaml:3:5: message 'm' needs 'segments' (a list of segment ids) or 'when' (an expression)",
    ),
    (
        "version: 1\nsegments:\n  - {id: lapsed, when: true}\nmessages:\n  - id: m\n    channel: email\n    priority: 1\n    cooldown: 2d\n    segments: [lapsd]\n",
        "a.yaml:9:16: message refers to unknown segment 'lapsd'; did you mean 'lapsed'?",
    ),
    # contact policy
    ("version: 1\ncontact_policy:\n  default_timezone: Mars/Olympus\n", "a.yaml:3:21: unknown time zone 'Mars/Olympus'"),
    ("version: 1\ncontact_policy:\n  default_timezone: ../../etc/passwd\n", "a.yaml:3:21: unknown time zone"),
    ("version: 1\ncontact_policy:\n  quiet_hours: {start: '25:00', end: '08:00'}\n", 'a.yaml:3:24: contact_policy.quiet_hours.start: write a time as "HH:MM" (24-hour)'),
    ("version: 1\ncontact_policy:\n  quiet_hours: {start: '08:00', end: '08:00'}\n", "a.yaml:3:16: quiet hours start and end are the same"),
    ("version: 1\ncontact_policy:\n  caps: {per_day: -1}\n", "a.yaml:3:19: contact_policy.caps.per_day: Input should be greater than or equal to 0"),
    ("version: 1\ncontact_policy:\n  caps: {per_weak: 3}\n", "a.yaml:3:10: contact_policy.caps: unknown cap 'per_weak'; did you mean 'per_week'?"),
    ("version: 1\ncontact_policy:\n  caps: {sms: 2}\n", "a.yaml:3:10: contact_policy.caps: unknown cap 'sms': caps are per_day and per_week, or a channel with its own, e.g. sms: {per_day: 2}"),
]


@pytest.mark.parametrize(("text", "expected"), STRUCTURE_ERRORS, ids=[e[1][:60] for e in STRUCTURE_ERRORS])
def test_structural_error_has_position(tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    found = problems(tmp_path)
    assert any(expected in p for p in found), found


EXPRESSION_POSITIONS: list[tuple[str, str]] = [
    ("    when: sessions_30d > 1 and sesions_7d > 2\n", "a.yaml:4:32: unknown field 'sesions_7d'; did you mean 'sessions_7d'?"),
    ("    when: 'top_category == ''a'' and nope'\n", "a.yaml:4:38: unknown field 'nope'"),
    ('    when: "top_category == \\"a\\" and nope"\n', "a.yaml:4:38: unknown field 'nope'"),
    ("    when: |\n      sessions_30d > 1 and\n        nope > 2\n", "a.yaml:6:9: unknown field 'nope'"),
    ("    when: >\n      sessions_30d > 1 and\n        nope > 2\n", "a.yaml:6:9: unknown field 'nope'"),
    ("    when: sessions_30d > 1 and\n      nope > 2\n", "a.yaml:5:7: unknown field 'nope'"),
    ("    when: sessions_30d >\n", "a.yaml:4:25: unexpected end of expression"),
    ("    when: sessions_30d\n", "a.yaml:4:11: a condition must be true or false, but this is number"),
]


@pytest.mark.parametrize(("when", "expected"), EXPRESSION_POSITIONS, ids=[e[1] for e in EXPRESSION_POSITIONS])
def test_expression_errors_point_into_the_yaml(tmp_path: Path, when: str, expected: str) -> None:
    (tmp_path / "a.yaml").write_text("version: 1\nsegments:\n  - id: s\n" + when, encoding="utf-8")
    found = problems(tmp_path)
    assert any(p.startswith(expected) for p in found), found


def test_problems_from_all_files_are_collected(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a.yaml": "version: 1\nsegments:\n  - {id: s, when: nope > 1}\nmessages: []\n",
            "b.yaml": "version: 1\nsegments:\n  - {id: s, when: true}\n  - {id: t, when: bad > 1}\nmessages: []\n",
            "c.yaml": "version: 1\nx: *y\n",
        },
    )
    found = problems(tmp_path)
    assert found == [
        "a.yaml:3:19: unknown field 'nope'",
        f"b.yaml:3:10: segment id 's' is already used at {tmp_path}/a.yaml:3:10",
        "b.yaml:4:19: unknown field 'bad'",
        f"b.yaml:5:1: 'messages' is already defined in {tmp_path}/a.yaml:4:1; keep it in one file",
        "c.yaml:2:4: aliases (*y) are not allowed in rule files; write the value out",
    ]
    with pytest.raises(RuleError) as info:
        load_rules(tmp_path)
    assert len(info.value.problems) == 5


def test_billion_laughs_is_refused_fast(tmp_path: Path) -> None:
    lines = ["version: 1", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    (tmp_path / "a.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert problems(tmp_path) == ["a.yaml:2:5: anchors (&a0) are not allowed in rule files; write values out"]


def test_oversized_and_non_utf8_files(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text("version: 1\n" + "# pad\n" * 200_000, encoding="utf-8")
    (tmp_path / "latin.yaml").write_bytes(b"version: 1\n# caf\xe9\n")
    found = problems(tmp_path)
    assert found[0].startswith("big.yaml:1:1: file is 1200011 bytes; rule files are limited to 1048576 bytes")
    assert found[1].startswith("latin.yaml:2:1: file is not UTF-8 text")


def test_directory_problems(tmp_path: Path) -> None:
    assert [str(p) for p in check_rules(tmp_path / "missing")] == [f"{tmp_path}/missing: rules directory not found"]
    assert [str(p) for p in check_rules(tmp_path)] == [f"{tmp_path}: no rule files (*.yaml, *.yml) in this directory"]


def test_json_schema_describes_the_file() -> None:
    schema = rulefile_json_schema()
    assert schema["title"] == "microseg rule file"
    assert set(schema["properties"]) == {"version", "segments", "microsegments", "messages", "contact_policy", "events", "traits"}
    assert schema["required"] == ["version"]


def test_one_bad_entry_does_not_hide_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "version: 1\nsegmnts: []\nsegments:\n"
        "  - {id: a, when: true, colour: red}\n"
        "  - {id: b, when: true}\n"
        "  - {id: b, when: true}\n"
        "messages:\n"
        "  - {id: m, segments: [a, b, c], channel: email, priority: 1, cooldown: 1d}\n",
        encoding="utf-8",
    )
    assert problems(tmp_path) == [
        "a.yaml:2:1: unknown key 'segmnts'; did you mean 'segments'?",
        "a.yaml:4:25: segments[0]: unknown key 'colour' (allowed: id, description, when)",
        f"a.yaml:6:10: segment id 'b' is already used at {tmp_path}/a.yaml:5:10",
        "a.yaml:8:30: message refers to unknown segment 'c'",
    ]


def test_duplicate_ids_and_unknown_segments_of_invalid_entries_are_reported_with_their_other_problems(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "version: 1\nsegments:\n"
        "  - {id: a, when: true}\n"
        "  - {id: a, when: true, colour: red}\n"
        "messages:\n"
        "  - {id: m, segments: [aa], channel: email, priority: 1, cooldown: 1d, colour: red}\n"
        "  - {id: m, segments: [a], channel: email, priority: 1, cooldown: 1d}\n",
        encoding="utf-8",
    )
    found = problems(tmp_path)
    assert f"a.yaml:4:10: segment id 'a' is already used at {tmp_path}/a.yaml:3:10" in found
    assert "a.yaml:6:24: message refers to unknown segment 'aa'; did you mean 'a'?" in found
    assert f"a.yaml:7:10: message id 'm' is already used at {tmp_path}/a.yaml:6:10" in found
    assert len(found) == 5 and sum("unknown key 'colour'" in p for p in found) == 2
