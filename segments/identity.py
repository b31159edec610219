"""Identity stitching in the core (CONTRACT §8): alias resolution and the ``identify`` step.

A profile is a customer (its key is the ``customer_id``) or an anonymous visitor (its key is
``ANONYMOUS_KEY + anonymous_id``, ``schemas.event_models.profile_key``). The **alias table** maps
an ``anonymous_id`` to the customer it was identified as; hosts keep it (``MemoryAliases`` in
``microseg replay``; the worker's resolution stage keeps it per partition, docs/architecture.md)
and the pipeline reads it through ``AliasBook``. The pipeline stays pure: links made and
forgotten by a batch come back in ``Batch.links`` / ``Batch.unlinked`` and the host applies them.

Within one batch an ``IdentityOverlay`` sees the book plus the batch's own links, in input order:

- an event of an anonymous visitor whose ``anonymous_id`` is linked counts for the customer
  (``route``: re-keyed to the customer's id, ``anonymous_id`` kept);
- ``identify`` (``step_identify``): an ``anonymous_id`` linked to another customer is refused
  (``AliasTaken``, a dead letter); linked to this customer already, nothing changes (``Repeat``,
  counted as a duplicate); else it links them, the visitor exits every segment at the identify
  instant and its state is dropped, and the customer is evaluated on ``segments.merge.merge`` of
  the two DNA records (every rule read), both with ``cause`` = the identify's event id;
- erasing a customer forgets its aliases and leaves an erased mark under each alias's profile key,
  so their later events are dropped like the customer's (``erase_aliases``).

Records of an anonymous visitor carry ``customer_id: null`` and ``anonymous_id``
(``anonymize``); their ids hash the profile key, so they never equal a customer's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from microseg.errors import MicrosegError
from microseg.schemas.events import ANONYMOUS_KEY, Event
from microseg.segments.changes import diff
from microseg.segments.dna import Dna, fold, is_duplicate
from microseg.segments.merge import merge
from microseg.segments.state import CustomerState
from microseg.segments.step import Core, StepResult

__all__ = [
    "AliasBook",
    "MemoryAliases",
    "IdentityOverlay",
    "AliasTaken",
    "Repeat",
    "Identified",
    "step_identify",
    "visitor_exits",
    "merge_into_customer",
    "alias_taken",
    "anonymize",
    "erase_aliases",
    "erased_mark",
]


class AliasBook(Protocol):
    """The alias table as the pipeline reads it."""

    def customer_of(self, anonymous_id: str) -> str | None:
        """The customer ``anonymous_id`` is linked to, None when it is not linked."""

    def aliases_of(self, customer_id: str) -> Sequence[str]:
        """The anonymous ids linked to ``customer_id``, in the order they were linked."""


class MemoryAliases:
    """An alias table in memory (``microseg replay``, tests): ``links`` anonymous id -> customer."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}
        self.by_customer: dict[str, list[str]] = {}

    def customer_of(self, anonymous_id: str) -> str | None:
        return self.links.get(anonymous_id)

    def aliases_of(self, customer_id: str) -> Sequence[str]:
        return self.by_customer.get(customer_id, ())

    def apply(self, links: Sequence[tuple[str, str]], unlinked: Sequence[str]) -> None:
        """A batch's ``links`` (anonymous id, customer id) then its ``unlinked`` anonymous ids, in order."""
        for anonymous_id, customer_id in links:
            self.links[anonymous_id] = customer_id
            self.by_customer.setdefault(customer_id, []).append(anonymous_id)
        for anonymous_id in unlinked:
            owner = self.links.pop(anonymous_id) if anonymous_id in self.links else None
            if owner is not None:
                kept = [a for a in self.by_customer.get(owner, ()) if a != anonymous_id]
                if kept:
                    self.by_customer[owner] = kept
                else:
                    self.by_customer.pop(owner, None)


class AliasTaken(MicrosegError):
    """An ``identify`` whose ``anonymous_id`` is already linked to another customer; ``str()`` is the reason."""


class Repeat(MicrosegError):
    """An ``identify`` of a pair already linked: nothing to do."""


class IdentityOverlay:
    """The book plus one batch's own links and forgotten aliases, in input order."""

    __slots__ = ("book", "links", "unlinked", "_linked", "_forgotten")

    def __init__(self, book: AliasBook) -> None:
        self.book = book
        self.links: list[tuple[str, str]] = []
        self.unlinked: list[str] = []
        self._linked: dict[str, str] = {}
        self._forgotten: set[str] = set()

    def customer_of(self, anonymous_id: str) -> str | None:
        found = self._linked.get(anonymous_id)
        if found is not None:
            return found
        if anonymous_id in self._forgotten:
            return None
        return self.book.customer_of(anonymous_id)

    def aliases_of(self, customer_id: str) -> list[str]:
        found = [a for a in self.book.aliases_of(customer_id) if a not in self._forgotten and a not in self._linked]
        return found + [a for a, c in self._linked.items() if c == customer_id]

    def route(self, event: Event) -> Event:
        """An anonymous visitor's event re-keyed to its customer when its ``anonymous_id`` is linked."""
        anonymous_id = event.customer_id[1:]
        customer_id = self.customer_of(anonymous_id)
        return event if customer_id is None else event._replace(customer_id=customer_id)

    def link(self, anonymous_id: str, customer_id: str) -> None:
        self._forgotten.discard(anonymous_id)
        self._linked[anonymous_id] = customer_id
        self.links.append((anonymous_id, customer_id))

    def forget(self, anonymous_id: str) -> None:
        self._linked.pop(anonymous_id, None)
        self._forgotten.add(anonymous_id)
        self.unlinked.append(anonymous_id)


class Identified:
    """What one accepted ``identify`` did: the anonymous visitor's records (already in its output
    form) and its state afterwards (None: dropped, kept only as an alias; an erased mark when the
    customer is erased), and the customer's step."""

    __slots__ = ("anonymous_key", "anonymous", "anonymous_state", "customer")

    def __init__(self, anonymous_key: str, anonymous: StepResult | None, anonymous_state: CustomerState | None, customer: StepResult) -> None:
        self.anonymous_key = anonymous_key
        self.anonymous = anonymous
        self.anonymous_state = anonymous_state
        self.customer = customer


def erased_mark(t: float, version: str) -> CustomerState:
    """The bare erased mark a forgotten profile keeps (``segments.step``'s erasure)."""
    return CustomerState(Dna(), rules_version=version, evaluated_at=t, erased=True)


def visitor_exits(core: Core, anonymous: CustomerState | None, event: Event) -> StepResult | None:
    """The visitor's half of an ``identify``: time runs on to just before its instant, then the
    visitor exits every segment (``cause`` = the identify's id; records in their anonymous form).
    ``result.state.dna`` is what is merged into the customer. None when there is nothing to merge
    (no state, or an erased mark)."""
    if anonymous is None or anonymous.erased:
        return None
    anonymous_id = str(event.anonymous_id)
    anonymous_key = ANONYMOUS_KEY + anonymous_id
    visitor = core.advance(anonymous_key, anonymous, event.t, inclusive=False)
    before = visitor.state
    at = max(event.t, before.evaluated_at)
    visitor.changes += diff(anonymous_key, before.segments, (), before.code, None, t=at, cause=event.event_id, rules_version=core.ruleset.version)
    visitor.state = CustomerState(before.dna, (), None, before.rules_version, at, None, before.sends, before.last_sent, before.offset, held=before.held)
    return anonymize(visitor, anonymous_id)


def merge_into_customer(
    core: Core, customer: CustomerState | None, visitor: Dna | None, event: Event, *, offset: int = -1, traits: Mapping[str, Any] | None = None
) -> StepResult:
    """The customer's half of an ``identify``: time runs on to just before its instant, the
    identify is folded in (its id remembered: a redelivered one is a duplicate), the visitor's
    record merged (``segments.merge``) and every rule evaluated at the identify instant (``cause``
    = its id). ``ignored`` when the customer is erased; ``duplicate`` when the identify was applied."""
    if customer is not None and customer.erased:
        return StepResult(customer, ignored=True)
    if customer is not None and is_duplicate(customer.dna, event):
        return StepResult(customer, duplicate=True)
    customer_id = event.customer_id
    t = event.t
    if customer is None:
        result = StepResult(CustomerState(Dna()))
        previous = result.state
        dna = fold(None, event)
    else:
        result = core.advance(customer_id, customer, t, inclusive=False)
        previous = result.state
        dna = fold(previous.dna, event)
    if visitor is not None:
        if traits is None:
            traits = {trait.id: trait for trait in core.ruleset.traits}
        dna = merge(dna, visitor, traits)
    result.extend(core._evaluate(customer_id, previous, dna, max(t, previous.evaluated_at), event.event_id, None))
    result.state.offset = max(offset, previous.offset)
    return result


def step_identify(
    core: Core,
    overlay: IdentityOverlay,
    event: Event,
    customer: CustomerState | None,
    anonymous: CustomerState | None,
    *,
    offset: int = -1,
    traits: Mapping[str, Any] | None = None,
) -> Identified:
    """Apply one ``identify`` in one process (``event.customer_id`` the customer,
    ``event.anonymous_id`` the visitor): ``visitor_exits`` then ``merge_into_customer``; raises
    ``AliasTaken`` or ``Repeat``. The worker runs the two halves on the visitor's and the
    customer's partitions (``engine.worker.resolution``)."""
    customer_id = event.customer_id
    anonymous_id = event.anonymous_id
    assert anonymous_id is not None
    linked = overlay.customer_of(anonymous_id)
    if linked == customer_id:
        raise Repeat(f"anonymous_id {anonymous_id!r} is already linked to this customer")
    if linked is not None:
        raise AliasTaken(alias_taken(anonymous_id))
    if customer is not None and not customer.erased and is_duplicate(customer.dna, event):
        raise Repeat(f"identify {event.event_id!r} was applied already")
    anonymous_key = ANONYMOUS_KEY + anonymous_id
    overlay.link(anonymous_id, customer_id)
    visitor = visitor_exits(core, anonymous, event)
    result = merge_into_customer(core, customer, visitor.state.dna if visitor is not None else None, event, offset=offset, traits=traits)
    if result.ignored:
        # The customer was forgotten: so is the visitor it turns out to be (erasure erases aliases).
        overlay.forget(anonymous_id)
        return Identified(anonymous_key, visitor, erased_mark(event.t, core.version), result)
    return Identified(anonymous_key, visitor, None, result)


def alias_taken(anonymous_id: str) -> str:
    """The dead-letter reason of an ``identify`` whose alias belongs to another customer."""
    return f"anonymous_id {anonymous_id[:128]!r} is already linked to another customer; an alias is never moved"


def erase_aliases(core: Core, overlay: IdentityOverlay, customer_id: str, t: float) -> dict[str, CustomerState]:
    """After ``customer_id`` was erased: its aliases forgotten, an erased mark under each one's
    profile key (so the visitor's later events are dropped too)."""
    marks: dict[str, CustomerState] = {}
    for anonymous_id in overlay.aliases_of(customer_id):
        overlay.forget(anonymous_id)
        marks[ANONYMOUS_KEY + anonymous_id] = erased_mark(t, core.version)
    return marks


def anonymize(result: StepResult, anonymous_id: str) -> StepResult:
    """An anonymous visitor's records in their output form: ``customer_id`` null, ``anonymous_id``."""
    for records in (result.changes, result.messages, result.suppressed, getattr(result, "holdouts", None) or ()):
        for record in records:
            record["customer_id"] = None
            record["anonymous_id"] = anonymous_id
    return result
