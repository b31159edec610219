"""Message variants chosen by Thompson sampling on conversions, from a versioned posterior snapshot.

Each arm — a (message id, variant id) pair — has a Beta posterior on its conversion rate: the
uniform prior Beta(1, 1) updated with the arm's counts, Beta(1 + conversions, 1 + decisions −
conversions) (Thompson 1933; Russo et al., "A Tutorial on Thompson Sampling", 2018, §3). A
decision draws once from each variant's posterior and takes the highest draw, so a variant is
chosen with the probability that it is the best one given what has been seen: the better variant's
share grows as evidence comes in, and a poor one is still tried now and then.

Pure and deterministic: no I/O, no clock, no global random state. The draws are seeded from the
decision's ``seed_key`` (its decision id) with the message and variant ids, so the same snapshot
and the same decision give the same variant in every worker and in replay. Each variant's draw
has its own seed, so reordering the variants in a rule file changes nothing. The Beta draws are
built on ``random.Random.random()`` alone — the one generator method whose sequence Python
guarantees for a given integer seed across versions — through two Gamma draws
(Marsaglia & Tsang, "A simple method for generating gamma variables", ACM TOMS 26(3), 2000) and
Box–Muller normals, so a snapshot replayed by another Python version picks the same variants.

Which snapshot a decision reads (docs/architecture.md, "Variants and the shared posterior"):
snapshots are cut from the counts of all partitions and published in one sequence, each with an
``effective_from`` instant (epoch seconds, event time) a little after it was cut. A decision made
at event time ``t`` reads ``PosteriorHistory.at(t)``: the snapshot with the latest
``effective_from <= t``. Worker and replay hold the same published sequence, so they pick the same
snapshot, hence the same variant. Hosts (worker, replay) put the history on ``Core.posterior``;
``decide`` passes ``snapshot_at(posterior, t)`` to ``choose_variant``. ``snapshot_record``/``read_snapshot_record`` are the published
JSON shape (topic ``message-posteriors`` and ``replay --posteriors FILE``).
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from types import MappingProxyType

from microseg.errors import MicrosegError

__all__ = [
    "PosteriorSnapshot",
    "EMPTY_SNAPSHOT",
    "choose_variant",
    "beta_draw",
    "arm_posterior",
    "NoVariantsError",
    "PosteriorHistory",
    "PosteriorRecordError",
    "snapshot_version",
    "snapshot_record",
    "read_snapshot_record",
    "snapshot_at",
]


class NoVariantsError(MicrosegError):
    """``choose_variant`` was asked to choose among no variants (a rule-file check should refuse it)."""


class PosteriorRecordError(MicrosegError):
    """A published posterior snapshot that cannot be read; the reason says which field is wrong."""


@dataclass(frozen=True)
class PosteriorSnapshot:
    """The counts every decision of one version reads: ``arms[(message_id, variant)] =
    (decisions, conversions)``, summed over all partitions when the snapshot was cut.

    ``version`` names the snapshot on decision records (``posterior_version``); an arm missing
    from ``arms`` has no evidence yet (the prior alone)."""

    version: str
    arms: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=lambda: MappingProxyType({}))


EMPTY_SNAPSHOT = PosteriorSnapshot(version="empty", arms=MappingProxyType({}))
"""No evidence at all: every variant is drawn from the uniform prior (an even split)."""


def arm_posterior(snapshot: PosteriorSnapshot, message_id: str, variant: str) -> tuple[float, float]:
    """Beta parameters (alpha, beta) of one arm: ``1 + conversions``, ``1 + decisions −
    conversions``. Counts that cannot be right (negative, or more conversions than decisions,
    which at-least-once counting of two streams can briefly show) are clamped, never raised."""
    decisions, conversions = snapshot.arms.get((message_id, variant), (0, 0))
    conversions = max(0, int(conversions))
    failures = max(0, int(decisions) - conversions)
    return 1.0 + conversions, 1.0 + failures


def _seed(seed_key: str, message_id: str, variant: str) -> int:
    return int.from_bytes(blake2b(f"{seed_key}\x1f{message_id}\x1f{variant}".encode(), digest_size=16).digest(), "big")


def _normal(rng: random.Random) -> float:
    """A standard normal draw by Box–Muller (one of the pair), from ``random()`` only."""
    u1 = 1.0 - rng.random()  # in (0, 1]: log is finite
    u2 = rng.random()
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _gamma(rng: random.Random, alpha: float) -> float:
    """A Gamma(alpha, 1) draw for ``alpha >= 1`` (Marsaglia & Tsang 2000, the squeeze and the log test)."""
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = _normal(rng)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = 1.0 - rng.random()
        if u < 1.0 - 0.0331 * x**4 or math.log(u) < 0.5 * x * x + d * (1.0 - v + math.log(v)):
            return d * v


def beta_draw(rng: random.Random, alpha: float, beta: float) -> float:
    """A Beta(alpha, beta) draw (both >= 1) as X / (X + Y) of two Gamma draws."""
    x = _gamma(rng, alpha)
    y = _gamma(rng, beta)
    return x / (x + y)


def choose_variant(snapshot: PosteriorSnapshot, message_id: str, variants: Sequence[str], seed_key: str) -> str:
    """The variant of ``message_id`` a decision identified by ``seed_key`` sends: the one with the
    highest Thompson draw from ``snapshot`` (ties, vanishingly rare, go to the smaller id).

    A single variant is returned without drawing. Raises ``NoVariantsError`` for an empty list."""
    if not variants:
        raise NoVariantsError(f"message {message_id!r} has no variants to choose from; give it at least one under 'variants:'")
    if len(variants) == 1:
        return variants[0]
    best = ""
    best_draw = -1.0
    for variant in sorted(variants):
        alpha, beta = arm_posterior(snapshot, message_id, variant)
        draw = beta_draw(random.Random(_seed(seed_key, message_id, variant)), alpha, beta)
        if draw > best_draw:
            best, best_draw = variant, draw
    return best


# --- the published sequence of snapshots ------------------------------------------------------


def snapshot_version(effective_from: float, arms: Mapping[tuple[str, str], tuple[int, int]]) -> str:
    """A snapshot's name: its ``effective_from`` (UTC, to the second) and a digest of its counts,
    e.g. ``20261130T021530Z-3fa2c19b``: sortable by time, and two cuts in the same second with
    different counts still differ."""
    stamp = _utc_stamp(effective_from)
    body = "\x1e".join(f"{m}\x1f{v}\x1f{d}\x1f{c}" for (m, v), (d, c) in sorted(arms.items()))
    return f"{stamp}-{blake2b(body.encode(), digest_size=4).hexdigest()}"


def _utc_stamp(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(int(t)))  # a conversion, not a clock read


def snapshot_record(effective_from: float, snapshot: PosteriorSnapshot, *, cut_at: float) -> dict[str, object]:
    """The published JSON shape of a snapshot: ``version``, ``effective_from`` and ``cut_at``
    (epoch seconds), and ``arms`` as ``{message, variant, decisions, conversions}`` objects."""
    return {
        "version": snapshot.version,
        "effective_from": effective_from,
        "cut_at": cut_at,
        "arms": [
            {"message": m, "variant": v, "decisions": d, "conversions": c} for (m, v), (d, c) in sorted(snapshot.arms.items())
        ],
    }


def read_snapshot_record(record: object) -> tuple[float, PosteriorSnapshot]:
    """``(effective_from, snapshot)`` of a published record; ``PosteriorRecordError`` says what is wrong."""
    if not isinstance(record, Mapping):
        raise PosteriorRecordError(f"a posterior snapshot is a JSON object, not {type(record).__name__}")
    version = record.get("version")
    if not isinstance(version, str) or not version:
        raise PosteriorRecordError("a posterior snapshot needs a non-empty string 'version'")
    effective_from = record.get("effective_from")
    if isinstance(effective_from, bool) or not isinstance(effective_from, (int, float)) or not math.isfinite(effective_from):
        raise PosteriorRecordError(f"posterior snapshot {version}: 'effective_from' must be epoch seconds")
    arms_in = record.get("arms")
    if not isinstance(arms_in, list):
        raise PosteriorRecordError(f"posterior snapshot {version}: 'arms' must be a list")
    arms: dict[tuple[str, str], tuple[int, int]] = {}
    for arm in arms_in:
        try:
            message, variant = arm["message"], arm["variant"]
            decisions, conversions = arm["decisions"], arm["conversions"]
        except (TypeError, KeyError) as exc:
            raise PosteriorRecordError(f"posterior snapshot {version}: an arm lacks {exc} (message, variant, decisions, conversions)") from None
        if not (isinstance(message, str) and isinstance(variant, str)):
            raise PosteriorRecordError(f"posterior snapshot {version}: an arm's message and variant must be strings")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (decisions, conversions)):
            raise PosteriorRecordError(f"posterior snapshot {version}: arm {message}/{variant} needs whole, non-negative counts")
        arms[(message, variant)] = (decisions, conversions)
    return float(effective_from), PosteriorSnapshot(version, MappingProxyType(arms))


class PosteriorHistory:
    """The published snapshots a process knows, by ``effective_from``; ``at(t)`` is the one a
    decision at event time ``t`` (epoch seconds) reads: the latest with ``effective_from <= t``
    (on equal instants the greater version), or ``EMPTY_SNAPSHOT`` before the first.

    Adding is idempotent (a snapshot read twice, by a restart or a redelivery, is kept once) and
    order-free (the same set of snapshots gives the same answers, whatever order they came in)."""

    def __init__(self, entries: Iterable[tuple[float, PosteriorSnapshot]] = ()) -> None:
        self._keys: list[tuple[float, str]] = []
        self._snapshots: list[PosteriorSnapshot] = []
        for effective_from, snapshot in entries:
            self.add(effective_from, snapshot)

    def add(self, effective_from: float, snapshot: PosteriorSnapshot) -> bool:
        """Keep a snapshot; False when it was already known."""
        key = (float(effective_from), snapshot.version)
        i = bisect.bisect_left(self._keys, key)
        if i < len(self._keys) and self._keys[i] == key:
            return False
        self._keys.insert(i, key)
        self._snapshots.insert(i, snapshot)
        return True

    def at(self, t: float) -> PosteriorSnapshot:
        """The snapshot a decision at event time ``t`` reads."""
        i = bisect.bisect_right(self._keys, (t, "\U0010ffff"))
        return self._snapshots[i - 1] if i else EMPTY_SNAPSHOT

    def latest(self) -> tuple[float, PosteriorSnapshot] | None:
        """The newest snapshot and its ``effective_from``; None when none is known."""
        return (self._keys[-1][0], self._snapshots[-1]) if self._keys else None

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[tuple[float, PosteriorSnapshot]]:
        """``(effective_from, snapshot)`` pairs, oldest first."""
        return iter([(key[0], snapshot) for key, snapshot in zip(self._keys, self._snapshots)])


def snapshot_at(posterior: PosteriorHistory | PosteriorSnapshot | None, t: float) -> PosteriorSnapshot | None:
    """The snapshot a decision at event time ``t`` reads from what its host gave the core: a
    history (worker, replay: ``history.at(t)``), one fixed snapshot (tests, previews), or None
    (no posterior: the caller's fallback)."""
    if isinstance(posterior, PosteriorHistory):
        return posterior.at(t)
    return posterior
