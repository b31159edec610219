"""The record pipeline: raw input records in, new customer states and every output record out.

Every host runs records through this one pipeline — the worker (``engine.worker.runtime``),
``microseg replay``, ``rules preview``, the test harness (``segments.testing``) and the bench peer —
so a behaviour exists once:

1. **decode** each record with the rule set's event catalog (``schemas.event_catalog``: the
   built-in types and the custom ones the rule files declare); a record that does not validate is a
   dead letter with its reason, and the rest goes on;
2. **step** each customer in input order (``segments.step.Core.on_event``), which skips a
   redelivered input offset or a repeated event id (counted as duplicates) and events of an erased
   customer; a record that makes the core raise is a dead letter, the others go on;
3. **encode** (when the host stores bytes) each stepped customer's state once per batch; a customer
   whose state cannot be encoded is stepped again without the record that made it so, and that
   record is a dead letter — so one record can never stop a partition;
4. **collect** segment changes, next-best-messages, holdout decisions (``message-holdouts``) and
   held-back decisions in input order.

``advance`` does the same for "let time run on to ``until``" (wake-ups, ``cause: tick``) and for a
rule change (``until=None``: re-evaluate under the new rules, ``cause: rules:<version>``).

Pure: no I/O and no clock. ``now`` (epoch seconds) is the processing clock, passed in: the wall
clock in the worker, the start of the run (or ``--now``) in replay. States come from the host
through ``load(partition, customer_ids)``; nothing is written anywhere but the returned ``Batch``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from microseg.schemas.events import ANONYMOUS_KEY, Event, InvalidEvent, decode_event
from microseg.segments.state import CustomerState
from microseg.segments.step import Core, StepResult

if TYPE_CHECKING:
    from microseg.segments.identity import AliasBook

__all__ = ["InputRecord", "Record", "Erasure", "Batch", "Pipeline", "StateLoader", "dead_letter", "INTERNAL_ERROR"]

INTERNAL_ERROR = "internal error while processing"

StateLoader = Callable[[int, Collection[str]], dict[str, CustomerState]]
"""``load(partition, customer_ids)``: a dict of the stored states of those customers that have one
(the pipeline only reads it)."""


class InputRecord(Protocol):
    """What the pipeline reads of an input record: aiokafka's ``ConsumerRecord`` as fetched (no copy
    per record on the hot path), or a ``Record``."""

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...

    @property
    def key(self) -> bytes | None: ...

    @property
    def value(self) -> bytes: ...

    @property
    def timestamp(self) -> int | None:
        """Produce time (ms since the epoch) when known."""


class Record(NamedTuple):
    """An input record built by hand (replay, tests, tools). ``offset``: the Kafka offset, or the
    line number of a file."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int | None = None


class Erasure(NamedTuple):
    """An ``erasure_requested`` event the pipeline applied, for the host's audit trail.

    ``outcome``: ``erased`` (the customer had data, now deleted), ``already_erased`` (an erased
    mark was there: nothing left) or ``unknown`` (no state: a bare erased mark now keeps later
    events out). ``t``: the event's time (epoch seconds); ``partition``/``offset``: the input record."""

    customer_id: str
    event_id: str
    t: float
    outcome: str
    partition: int
    offset: int


def dead_letter(reason: str, raw: bytes, *, topic: str, partition: int | None, offset: int | None) -> dict[str, Any]:
    """The ``customer-events-dlq`` record (CONTRACT §4); ``raw`` keeps the original bytes as text."""
    return {
        "reason": reason,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "raw": raw.decode("utf-8", errors="replace"),
    }


class Batch:
    """What one ``process`` or ``advance`` call produced, in input order.

    ``states[partition]`` holds the new state of every customer the batch changed, and
    ``encoded[partition]`` their bytes when the pipeline encodes; ``loaded[partition]`` the states
    they had before (absent: a new customer). ``moves[partition]`` counts segment entries (+1) and
    exits (-1). ``source_ms`` / ``source_t``: the produce time (ms) and event time (s) of each record
    that led to changes (for latency metrics). ``rejected`` counts dead letters by the kind of reason
    (the text before the first colon).
    """

    def __init__(self) -> None:
        self.changes: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.holdouts: list[dict[str, Any]] = []
        """Decisions for customers in a control group: the ``message-holdouts`` topic, never ``next-best-messages``."""
        self.suppressed: list[dict[str, Any]] = []
        self.dead_letters: list[dict[str, Any]] = []
        self.source_ms: list[int] = []
        self.source_t: list[float] = []
        self.moves: dict[int, Counter[str]] = {}
        self.states: dict[int, dict[str, CustomerState]] = {}
        self.encoded: dict[int, dict[str, bytes]] = {}
        self.loaded: dict[int, Mapping[str, CustomerState]] = {}
        self.types: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.duplicates = 0
        self.conversions: list[tuple[int, str, str | None]] = []
        """Accepted ``campaign_converted`` events as (partition, message_id, variant): the bandit's
        conversions (``engine.worker.posteriors``), counted with the state they belong to."""
        self.after_erasure = 0
        self.dropped_values = 0
        """Values computed traits could not keep (``traits.MAX_VALUES``)."""
        self.stuck: dict[str, str] = {}
        """Customers time could not be run on for (``advance``), with the error; their stored state stays."""
        self.erasures: list[Erasure] = []
        """Erasure requests applied, in input order (duplicates of an applied one are not)."""
        self.links: list[tuple[str, str]] = []
        """Aliases linked by ``identify`` events, (anonymous id, customer id) in input order."""
        self.unlinked: list[str] = []
        """Aliases forgotten (their customer was erased), in input order, after ``links``."""
        self.removed: dict[int, list[str]] = {}
        """Per partition, profile keys whose state is gone (an anonymous visitor merged into its customer)."""

    def __len__(self) -> int:
        """Records to deliver (changes, messages, holdout decisions and dead letters)."""
        return len(self.changes) + len(self.messages) + len(self.holdouts) + len(self.dead_letters)

    def _add(self, partition: int, result: StepResult) -> None:
        self.changes += result.changes
        self.messages += result.messages
        self.suppressed += result.suppressed
        if result.holdouts:
            self.holdouts += result.holdouts
        if result.changes:
            delta = self.moves.get(partition)
            if delta is None:
                delta = self.moves[partition] = Counter()
            for change in result.changes:
                segment = change["segment"]
                if segment != "micro":
                    delta[segment] += 1 if change["change"] == "entered" else -1

    def merge(self, other: Batch) -> None:
        """Append ``other`` (a later batch): its records after these, its states over these."""
        self.changes += other.changes
        self.messages += other.messages
        self.holdouts += other.holdouts
        self.suppressed += other.suppressed
        self.dead_letters += other.dead_letters
        self.source_ms += other.source_ms
        self.source_t += other.source_t
        for partition, delta in other.moves.items():
            self.moves.setdefault(partition, Counter()).update(delta)
        for partition, states in other.states.items():
            self.states.setdefault(partition, {}).update(states)
        for partition, encoded in other.encoded.items():
            self.encoded.setdefault(partition, {}).update(encoded)
        for partition, loaded in other.loaded.items():
            mine = self.loaded.get(partition)
            if mine is None:
                self.loaded[partition] = loaded
            elif any(customer_id not in mine for customer_id in loaded):
                # a customer first loaded by the later batch: its stored state is what it was loaded with
                # (the member index deletes the segments it leaves from that), the earlier batch's stay
                self.loaded[partition] = {**loaded, **mine}
        self.types.update(other.types)
        self.rejected.update(other.rejected)
        self.duplicates += other.duplicates
        if other.conversions:
            self.conversions += other.conversions
        self.after_erasure += other.after_erasure
        self.dropped_values += other.dropped_values
        self.stuck.update(other.stuck)
        self.erasures += other.erasures
        self.links += other.links
        self.unlinked += other.unlinked
        for partition, removed in other.removed.items():
            self.removed.setdefault(partition, []).extend(removed)


Encoder = Callable[[CustomerState], bytes]


class Pipeline:
    """Records through the core. ``core`` may be swapped between calls (a new rule set or model).

    ``source``: the input's name in dead letters (the topic, or ``file``). ``kafka``: records carry
    Kafka partitions and offsets (redelivered offsets are skipped, keys must match the customer);
    off for files, where ``offset`` is a line number and dead letters have no partition.
    ``encode``: the state encoder when the host stores bytes (its failures dead-letter the record).
    ``aliases``: the alias table (``segments.identity``): with it, events of a linked anonymous
    visitor count for its customer and ``identify`` merges profiles; without it, ``identify`` only
    counts for the customer (a host whose input was re-keyed upstream, or that has no identity).
    """

    def __init__(self, core: Core, *, source: str, kafka: bool = True, encode: Encoder | None = None, aliases: AliasBook | None = None) -> None:
        self.core = core
        self.source = source
        self.kafka = kafka
        self.encode = encode
        self.aliases: AliasBook | None = aliases
        self.newest: dict[int, float] = {}
        """Per partition, the newest event time seen (the future-time check's reference)."""

    # -- decode ---------------------------------------------------------------------------

    def _reject(self, out: Batch, reason: str, record: InputRecord) -> None:
        out.dead_letters.append(
            dead_letter(reason, record.value, topic=self.source, partition=record.partition if self.kafka else None, offset=record.offset)
        )
        out.rejected[reason.split(":")[0][:40]] += 1

    def _decode(self, records: Iterable[InputRecord], now: float, out: Batch) -> dict[int, list[tuple[InputRecord, Event]]]:
        by_partition: dict[int, list[tuple[InputRecord, Event]]] = {}
        newest = self.newest
        kafka = self.kafka
        catalog = self.core.ruleset.catalog
        decode = decode_event if catalog is None else catalog.decode
        for record in records:
            partition = record.partition
            seen = newest.get(partition)
            try:
                event = decode(
                    record.value, reference_t=now if seen is None or seen < now else seen, key=record.key if kafka else None
                )
            except InvalidEvent as exc:
                self._reject(out, str(exc), record)
                continue
            if seen is None or event.t > seen:
                newest[partition] = event.t
            items = by_partition.get(partition)
            if items is None:
                items = by_partition[partition] = []
            items.append((record, event))
        return by_partition

    # -- step -----------------------------------------------------------------------------

    def _step(
        self, partition: int, items: list[tuple[InputRecord, Event]], loaded: dict[str, CustomerState], skip: dict[int, str], now: float | None = None
    ) -> tuple[Batch, dict[str, CustomerState]]:
        """Step the records of one partition in order, except the indexes in ``skip``; ``now``: the processing clock."""
        out = Batch()
        states: dict[str, CustomerState] = {}
        types: dict[str, int] = {}
        core = self.core
        kafka = self.kafka
        index = -1
        overlay: Any = None
        if self.aliases is not None:
            from microseg.segments.identity import IdentityOverlay

            overlay = IdentityOverlay(self.aliases)
        for record, event in items:
            index += 1
            if skip and index in skip:
                continue
            if overlay is not None:
                if event.customer_id[:1] == ANONYMOUS_KEY:
                    event = overlay.route(event)
                elif event.type == "identify":
                    self._identify(out, partition, record, event, overlay, states, loaded)
                    continue
            customer_id = event.customer_id
            state = states.get(customer_id)
            if state is None:
                state = loaded.get(customer_id)
            kind = event.type
            types[kind] = types.get(kind, 0) + 1
            try:
                result = core.on_event(state, event, offset=record.offset if kafka else -1, now=now)
            except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
                self._reject(out, f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}", record)
                continue
            if result.duplicate:
                out.duplicates += 1
                continue
            if result.ignored:
                out.after_erasure += 1
                if kind == "erasure_requested":
                    out.erasures.append(Erasure(customer_id, event.event_id, event.t, "already_erased", partition, record.offset))
                continue
            states[customer_id] = result.state
            if kind == "campaign_converted":
                props = event.props
                out.conversions.append((partition, props.message_id, getattr(props, "variant", None)))
            if kind == "erasure_requested":
                out.erasures.append(Erasure(customer_id, event.event_id, event.t, "unknown" if state is None else "erased", partition, record.offset))
                if overlay is not None:
                    from microseg.segments.identity import erase_aliases

                    states.update(erase_aliases(core, overlay, customer_id, event.t))
            if customer_id[:1] == ANONYMOUS_KEY:
                from microseg.segments.identity import anonymize

                anonymize(result, customer_id[1:])
            if result.dropped_values:
                out.dropped_values += result.dropped_values
            if result.changes or result.messages or result.suppressed or result.holdouts:
                out._add(partition, result)
                if result.changes:
                    out.source_t.append(event.t)
                    produced = record.timestamp
                    if produced:
                        out.source_ms.append(produced)
        out.types.update(types)
        if overlay is not None:
            out.links, out.unlinked = overlay.links, overlay.unlinked
            gone = out.removed.get(partition)
            if gone:  # a profile merged away and stored again later in the batch (an erased mark) is kept
                out.removed[partition] = [key for key in gone if key not in states]
        return out, states

    def _identify(
        self, out: Batch, partition: int, record: InputRecord, event: Event, overlay: Any, states: dict[str, Any], loaded: Mapping[str, CustomerState]
    ) -> None:
        """One ``identify`` (``segments.identity.step_identify``): the visitor's exits and the
        customer's merged evaluation, or a dead letter for an alias taken, or a duplicate."""
        from microseg.segments.identity import AliasTaken, Repeat, step_identify

        anonymous_key = ANONYMOUS_KEY + str(event.anonymous_id)
        customer_id = event.customer_id
        customer = states[customer_id] if customer_id in states else loaded.get(customer_id)
        anonymous = states[anonymous_key] if anonymous_key in states else loaded.get(anonymous_key)
        out.types["identify"] += 1
        if customer is not None and not customer.erased and self.kafka and record.offset <= customer.offset:
            out.duplicates += 1
            return
        try:
            done = step_identify(self.core, overlay, event, customer, anonymous, offset=record.offset if self.kafka else -1)
        except Repeat:
            out.duplicates += 1
            return
        except AliasTaken as exc:
            self._reject(out, str(exc), record)
            return
        except Exception as exc:  # noqa: BLE001 - one bad record must not stop the partition
            self._reject(out, f"{INTERNAL_ERROR}: {type(exc).__name__}: {exc}", record)
            return
        if done.anonymous_state is None:  # merged away: kept only as an alias
            states.pop(anonymous_key, None)
            out.removed.setdefault(partition, []).append(anonymous_key)
        else:
            states[anonymous_key] = done.anonymous_state
        if done.anonymous is not None:
            out._add(partition, done.anonymous)
        if done.customer.ignored:
            out.after_erasure += 1
            return
        states[customer_id] = done.customer.state
        out._add(partition, done.customer)
        if done.anonymous is not None and done.anonymous.changes or done.customer.changes:
            out.source_t.append(event.t)
            if record.timestamp:
                out.source_ms.append(record.timestamp)

    def _unencodable(self, states: Mapping[str, CustomerState]) -> tuple[dict[str, bytes], dict[str, str]]:
        """Encode every state; the customers whose state cannot be encoded, with the error."""
        encode = self.encode
        assert encode is not None
        encoded: dict[str, bytes] = {}
        failed: dict[str, str] = {}
        for customer_id, state in states.items():
            try:
                encoded[customer_id] = encode(state)
            except Exception as exc:  # noqa: BLE001 - whatever the encoder refuses
                failed[customer_id] = f"{type(exc).__name__}: {exc}"
        return encoded, failed

    def _culprits(
        self, customer_id: str, items: list[tuple[InputRecord, Event]], loaded: dict[str, CustomerState], skip: dict[int, str], now: float | None = None
    ) -> list[int]:
        """The records of one customer after which its state no longer encodes."""
        encode = self.encode
        assert encode is not None
        bad: list[int] = []
        state = loaded.get(customer_id)
        for index, (record, event) in enumerate(items):
            if index in skip or event.customer_id != customer_id:
                continue
            try:
                result = self.core.on_event(state, event, offset=record.offset if self.kafka else -1, now=now)
            except Exception:  # noqa: BLE001 - dead-lettered by the step itself
                continue
            try:
                encode(result.state)
            except Exception:  # noqa: BLE001 - whatever the encoder refuses
                bad.append(index)
                continue
            if not (result.duplicate or result.ignored):
                state = result.state
        return bad

    def process(self, records: Sequence[InputRecord], now: float, load: StateLoader) -> Batch:
        """Every record of a batch, partition by partition, each partition in offset order.

        ``now``: the processing clock (epoch seconds) for the future-time check and for decisions
        (no send before it, ``stale`` after a message's validity; not finite: each event's own time).
        """
        out = Batch()
        for partition, items in self._decode(records, now, out).items():
            wanted = {event.customer_id for _, event in items}
            if self.aliases is not None:
                wanted |= self._identity_keys(items)
            loaded = load(partition, wanted)
            skip: dict[int, str] = {}
            while True:
                stepped, states = self._step(partition, items, loaded, skip, now)
                if self.encode is None:
                    encoded: dict[str, bytes] = {}
                    break
                encoded, failed = self._unencodable(states)
                if not failed:
                    break
                for customer_id, error in failed.items():
                    culprits = self._culprits(customer_id, items, loaded, skip, now)
                    if not culprits:  # the stored state itself no longer encodes: drop its records
                        culprits = [i for i, (_, e) in enumerate(items) if e.customer_id == customer_id and i not in skip]
                    for index in culprits:
                        skip[index] = f"{INTERNAL_ERROR}: the customer's state cannot be stored after this event ({error})"
            for index, reason in sorted(skip.items()):
                self._reject(out, reason, items[index][0])
            stepped.states[partition] = states
            stepped.encoded[partition] = encoded
            stepped.loaded[partition] = loaded
            out.merge(stepped)
        return out

    def _identity_keys(self, items: list[tuple[InputRecord, Event]]) -> set[str]:
        """The profiles a batch's identity events read besides their own keys: the visitor of
        each ``identify`` and the customer of each linked visitor."""
        aliases = self.aliases
        assert aliases is not None
        keys: set[str] = set()
        for _, event in items:
            key = event.customer_id
            if key[:1] == ANONYMOUS_KEY:
                customer_id = aliases.customer_of(key[1:])
                if customer_id is not None:
                    keys.add(customer_id)
            elif event.type == "identify":
                keys.add(ANONYMOUS_KEY + str(event.anonymous_id))
        return keys

    # -- time -----------------------------------------------------------------------------

    def advance(self, partition: int, customer_ids: Sequence[str], until: float | None, load: StateLoader, now: float | None = None) -> Batch:
        """Let time run on to ``until`` (epoch seconds) for these customers, in the order given;
        ``now``: the processing clock for decisions (default ``until``).

        ``until=None``: re-evaluate customers last evaluated under other rules or another model at
        their own last evaluation (``cause: rules:<version>`` or ``model:<version>``). Customers
        with nothing due are left alone.
        """
        out = Batch()
        core = self.core
        version = core.version
        loaded = load(partition, customer_ids)
        states: dict[str, CustomerState] = {}
        for customer_id in customer_ids:
            state = loaded.get(customer_id)
            if state is None:
                continue
            if state.rules_version == version and (until is None or state.wake is None or state.wake > until):
                continue
            try:
                result = core.advance(customer_id, state, state.evaluated_at if until is None else until, now=until if now is None else now)
            except Exception as exc:  # noqa: BLE001 - one customer must not stop the others' wake-ups
                out.stuck[customer_id] = f"{type(exc).__name__}: {exc}"
                continue
            states[customer_id] = result.state
            if customer_id[:1] == ANONYMOUS_KEY:
                from microseg.segments.identity import anonymize

                anonymize(result, customer_id[1:])
            out._add(partition, result)
        encoded: dict[str, bytes] = {}
        if self.encode is not None and states:
            encoded, failed = self._unencodable(states)
            for customer_id, error in failed.items():  # time alone adds no data; keep what was stored
                del states[customer_id]
                out.stuck[customer_id] = error
        if out.stuck:  # and emit nothing for them
            stuck = out.stuck
            out.changes = [r for r in out.changes if r["customer_id"] not in stuck]
            out.messages = [r for r in out.messages if r["customer_id"] not in stuck]
            out.holdouts = [r for r in out.holdouts if r["customer_id"] not in stuck]
            out.suppressed = [r for r in out.suppressed if r["customer_id"] not in stuck]
        out.states[partition] = states
        out.encoded[partition] = encoded
        out.loaded[partition] = loaded
        return out
