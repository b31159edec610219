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
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from types import MappingProxyType

from microseg.errors import MicrosegError

__all__ = ["PosteriorSnapshot", "EMPTY_SNAPSHOT", "choose_variant", "beta_draw", "arm_posterior", "NoVariantsError"]


class NoVariantsError(MicrosegError):
    """``choose_variant`` was asked to choose among no variants (a rule-file check should refuse it)."""


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
