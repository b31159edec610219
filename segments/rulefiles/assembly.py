"""Rule files together -> one frozen ``RuleSet``: the checks across files, then the compiled sections.

Across files: the ``microsegments``, ``messages`` and ``contact_policy`` sections are each
defined in one file only, segment and message ids are unique, dimension names are unique, and
every segment a message refers to exists (with the closest id suggested). Files are taken in
the order given (sorted by name), so the first definition wins and later ones are reported.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Any

from microseg.schemas.rulefile import RuleFileModel
from microseg.segments.language import Problem
from microseg.segments.rulefiles.declarations import Declarations
from microseg.segments.rulefiles.positions import KeyPath
from microseg.segments.rulefiles.rule_file import RuleFile
from microseg.segments.rulefiles.sections import build_dimension, build_message, build_policy, check_channels
from microseg.segments.ruleset import ContactPolicy, Dimension, Message, Origin, RuleSet, Segment

__all__ = ["assemble"]

_SECTIONS = ("microsegments", "messages", "contact_policy")


def _iter_models(parts: list[RuleFile]) -> Iterator[tuple[RuleFile, RuleFileModel]]:
    for part in parts:
        if part.model is not None:
            yield part, part.model


def _in_file_order(part: RuleFile, section: str, valid: list[Any]) -> list[tuple[int, str, Any]]:
    """``(index, id, model or None)`` for every item of ``section`` with an id, in file order: the
    valid ones with their model, the ones that failed validation (already reported) with None, so
    duplicate ids are found together with the file's other problems."""
    items: list[tuple[int, str, Any]] = [(i, item.id, item) for i, item in zip(part.kept[section], valid)]
    items += [(i, item_id, None) for i, item_id, _ in part.loose_items[section]]
    return sorted(items, key=lambda item: item[0])


def assemble(parts: list[RuleFile], version: str, names: tuple[str, ...], problems: list[Problem], declared: Declarations | None = None) -> RuleSet:
    """Cross-file checks and the frozen RuleSet; adds to ``problems`` rather than raising.

    ``version`` and ``names`` (the file names) are stored in the RuleSet as given, with the
    ``declared`` event catalog, traits and registry.
    """
    segments: list[Segment] = []
    seen_segments: dict[str, str] = {}
    dimensions: list[Dimension] = []
    messages: list[Message] = []
    policy = ContactPolicy()
    section_owner: dict[str, str] = {}
    pending_refs: list[tuple[RuleFile, KeyPath, str]] = []
    seen_messages: dict[str, str] = {}
    channel_refs: list[tuple[RuleFile, KeyPath, Message]] = []

    def add(part: RuleFile, where: tuple[int, int], message: str) -> None:
        problems.append(Problem(part.name, where[0], where[1], message))

    for part, model in _iter_models(parts):
        for section in _SECTIONS:
            if (section,) not in part.key_marks:
                continue
            here = part.at((section,), key=True)
            if section in section_owner:
                add(part, here, f"'{section}' is already defined in {section_owner[section]}; keep it in one file")
            else:
                section_owner[section] = f"{part.name}:{here[0]}:{here[1]}"
        for i, seg_id, seg in _in_file_order(part, "segments", model.segments):
            where = part.at(("segments", i, "id"))
            if seg_id in seen_segments:
                add(part, where, f"segment id '{seg_id}' is already used at {seen_segments[seg_id]}")
                continue
            seen_segments[seg_id] = f"{part.name}:{where[0]}:{where[1]}"
            expr = part.exprs.get(("segments", i, "when"))
            if seg is not None and expr is not None:
                segments.append(Segment(seg.id, seg.description, expr, Origin(part.name, *part.at(("segments", i)))))
        if model.microsegments is not None:
            names_seen: set[str] = set()
            for i, dim in enumerate(model.microsegments.dimensions):
                path: KeyPath = ("microsegments", "dimensions", i)
                if dim.name in names_seen:
                    add(part, part.at((*path, "name")), f"dimension name '{dim.name}' is used twice")
                names_seen.add(dim.name)
                built = build_dimension(part, path, dim, lambda w, m, p=part: add(p, w, m))
                if built is not None:
                    dimensions.append(built)
        for i, msg_id, msg in _in_file_order(part, "messages", model.messages):
            path = ("messages", i)
            where = part.at((*path, "id"))
            if msg_id in seen_messages:
                add(part, where, f"message id '{msg_id}' is already used at {seen_messages[msg_id]}")
                continue
            seen_messages[msg_id] = f"{part.name}:{where[0]}:{where[1]}"
            if msg is None:  # did not validate (reported): its id and segment references are still checked
                raw = next(data for j, _, data in part.loose_items["messages"] if j == i)
                refs = raw.get("segments")
                if isinstance(refs, list):
                    pending_refs.extend((part, (*path, "segments", j), s) for j, s in enumerate(refs) if isinstance(s, str))
                continue
            built_msg = build_message(part, path, msg, lambda w, m, p=part: add(p, w, m))
            pending_refs.extend((part, (*path, "segments", j), s) for j, s in enumerate(msg.segments or ()))
            if built_msg is not None:
                messages.append(built_msg)
                channel_refs.append((part, (*path, "channel"), built_msg))
        if model.contact_policy is not None:
            policy = build_policy(part, model, lambda w, m, p=part: add(p, w, m)) or policy
    loose = set().union(*(p.loose_ids["segments"] for p in parts)) if parts else set()
    for part, path, seg_id in pending_refs:
        if seg_id not in seen_segments and seg_id not in loose:
            close = difflib.get_close_matches(seg_id, list(seen_segments), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            add(part, part.at(path), f"message refers to unknown segment '{seg_id}'{hint}")
    for part, path, msg in channel_refs:  # the policy (maybe in another file) names the messaging channels
        if not check_channels(part, path, msg.channel_order, policy.channels, lambda w, m, p=part: add(p, w, m), what=f"message '{msg.id}'"):
            messages.remove(msg)
    return RuleSet(
        version=version,
        segments=tuple(segments),
        dimensions=tuple(dimensions),
        messages=tuple(messages),
        policy=policy,
        files=names,
        traits=declared.traits if declared is not None else (),
        registry=declared.registry if declared is not None and (declared.traits or declared.catalog.custom) else None,
        catalog=declared.catalog if declared is not None else None,
    )


