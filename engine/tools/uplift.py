"""``microseg report uplift``: conversion of treated customers against their holdout, per message and variant.

Who was treated and who was held out comes from the decision records: ``next-best-messages``
(treated) and ``message-holdouts`` (records marked ``holdout``: the message's own control group or
the policy's ``global_holdout``), read from ``microseg replay --out`` files or from the topics.
Each customer counts once per message and arm, from their first decision (its ``at``) — later
re-decisions of the same message do not restart the clock. A customer holds a variant in either
arm: holdout decisions are complete decisions (variant chosen the same way) that are never sent.

Conversion is measured the same way in both arms, from the input events alone: the customer has an
event of the message's ``converts_on`` type (default ``purchase``) with ``at < ts <= at +
attribution`` (default 7 days; both from the rule file when given). ``campaign_converted`` is not
used here: a holdout customer is never sent anything, so it can never report one (it feeds only
the bandit, ``segments.bandit``).

The 95 % interval of the difference of the two conversion rates (treated − holdout) is Newcombe's
hybrid score interval built from the two Wilson score intervals (R. G. Newcombe, "Interval
estimation for the difference between independent proportions: comparison of eleven methods",
Statistics in Medicine 17 (1998) 873–890, method 10; E. B. Wilson, JASA 22 (1927) 209–212). Unlike
the Wald interval it keeps close to its nominal coverage for the small rates and unequal arm
sizes of a holdout design, and it exists when an arm has no conversion at all.
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from microseg.errors import MicrosegError

__all__ = [
    "Exposure",
    "UpliftRow",
    "UpliftInputError",
    "ConversionIndex",
    "wilson",
    "newcombe",
    "exposures_of",
    "read_decision_lines",
    "read_event_lines",
    "uplift",
    "table",
    "plot",
    "HOLDOUTS_TOPIC",
    "MESSAGES_TOPIC",
    "DEFAULT_ATTRIBUTION_S",
    "Z95",
]

MESSAGES_TOPIC = "next-best-messages"
HOLDOUTS_TOPIC = "message-holdouts"
DEFAULT_ATTRIBUTION_S = 7 * 86_400
Z95 = 1.959963984540054
"""The standard normal quantile of 0.975: a two-sided 95 % interval."""
ALL = "(all)"
"""The variant column of a message's row over all its variants."""


class UpliftInputError(MicrosegError):
    """Inputs the report cannot use at all (no decision records); bad lines are only counted."""


@dataclass(frozen=True)
class Exposure:
    """One customer's first decision for a message in one arm; ``at`` in epoch seconds."""

    customer_id: str
    message: str
    variant: str | None
    at: float
    holdout: bool


@dataclass(frozen=True)
class UpliftRow:
    """One line of the report: counts, rates, the difference treated − holdout and its 95 % interval."""

    message: str
    variant: str
    treated: int
    treated_converted: int
    holdout: int
    holdout_converted: int
    converts_on: str
    attribution_s: int

    @property
    def treated_rate(self) -> float | None:
        return self.treated_converted / self.treated if self.treated else None

    @property
    def holdout_rate(self) -> float | None:
        return self.holdout_converted / self.holdout if self.holdout else None

    @property
    def interval(self) -> tuple[float, float, float] | None:
        """(difference, low, high), or None when an arm is empty."""
        if not self.treated or not self.holdout:
            return None
        return newcombe(self.treated_converted, self.treated, self.holdout_converted, self.holdout)

    def as_dict(self) -> dict[str, Any]:
        found = self.interval
        return {
            "message": self.message,
            "variant": self.variant,
            "treated": self.treated,
            "treated_converted": self.treated_converted,
            "treated_rate": self.treated_rate,
            "holdout": self.holdout,
            "holdout_converted": self.holdout_converted,
            "holdout_rate": self.holdout_rate,
            "difference": found[0] if found else None,
            "ci95_low": found[1] if found else None,
            "ci95_high": found[2] if found else None,
            "converts_on": self.converts_on,
            "attribution_s": self.attribution_s,
        }


# --- statistics ------------------------------------------------------------------------------


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for a proportion ``k / n`` (``n > 0``)."""
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> tuple[float, float, float]:
    """``(p1 − p2, low, high)``: Newcombe's hybrid score interval (1998, method 10) for the
    difference of two independent proportions, from the Wilson intervals (l1, u1), (l2, u2):
    low = d − √((p1 − l1)² + (u2 − p2)²), high = d + √((u1 − p1)² + (p2 − l2)²)."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, max(-1.0, min(low, d)), min(1.0, max(high, d))  # rounding must not leave [-1, 1] or lose d


# --- inputs ----------------------------------------------------------------------------------


def _epoch(text: Any) -> float | None:
    """Epoch seconds of an RFC 3339 time (``Z`` or an offset); None when it is not one."""
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


def _records(lines: Iterable[bytes], problems: list[str], where: str) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(topic, record) of each JSON line: ``replay --out`` lines ``{topic, key, value}`` or bare records."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            found = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            problems.append(f"{where}:{number}: not JSON ({exc})")
            continue
        if not isinstance(found, dict):
            problems.append(f"{where}:{number}: not a JSON object")
            continue
        if isinstance(found.get("value"), dict) and "topic" in found:
            yield str(found["topic"]), found["value"]
        else:
            yield None, found


def exposures_of(records: Iterable[tuple[str | None, dict[str, Any]]], problems: list[str]) -> Iterator[Exposure]:
    """Decision records as exposures: holdout when on ``message-holdouts`` or marked ``holdout``,
    treated when a ``next-best-messages`` record; other records (segment changes) are passed over."""
    for topic, record in records:
        if topic is not None and topic not in (MESSAGES_TOPIC, HOLDOUTS_TOPIC):
            continue
        if "decision_id" not in record and topic is None:
            continue
        holdout = topic == HOLDOUTS_TOPIC or bool(record.get("holdout"))
        customer_id, message, at = record.get("customer_id"), record.get("message"), _epoch(record.get("at"))
        if not isinstance(customer_id, str) or not isinstance(message, str) or at is None:
            problems.append(f"decision {record.get('decision_id')!r}: needs customer_id, message and an RFC 3339 'at'")
            continue
        variant = record.get("variant")
        yield Exposure(customer_id, message, variant if isinstance(variant, str) else None, at, holdout)


def read_decision_lines(paths: Iterable[Path], problems: list[str]) -> list[Exposure]:
    """Exposures from JSONL files (``replay --out``, or dumps of either decision topic)."""
    found: list[Exposure] = []
    for path in paths:
        with path.open("rb") as lines:
            found.extend(exposures_of(_records(lines, problems, str(path)), problems))
    return found


class ConversionIndex:
    """Per customer and event type, the sorted event times (epoch seconds), deduplicated by ``event_id``."""

    def __init__(self) -> None:
        self._times: dict[tuple[str, str], list[float]] = defaultdict(list)
        self._seen: set[str] = set()
        self._sorted = True
        self.events = 0

    def add(self, customer_id: str, kind: str, t: float, event_id: str | None = None) -> None:
        if event_id is not None:
            if event_id in self._seen:
                return
            self._seen.add(event_id)
        self._times[(customer_id, kind)].append(t)
        self._sorted = False
        self.events += 1

    def add_record(self, record: Mapping[str, Any], problems: list[str], where: str) -> None:
        """An input event (CONTRACT §1); one that lacks customer_id, type or a readable ``ts`` is counted as a problem."""
        customer_id, kind, t = record.get("customer_id"), record.get("type"), _epoch(record.get("ts"))
        if not isinstance(customer_id, str) or not isinstance(kind, str) or t is None:
            problems.append(f"{where}: an event needs customer_id, type and an RFC 3339 ts")
            return
        event_id = record.get("event_id")
        self.add(customer_id, kind, t, event_id if isinstance(event_id, str) else None)

    def converted(self, customer_id: str, kind: str, at: float, window_s: float) -> bool:
        """An event of ``kind`` with ``at < t <= at + window_s``."""
        if not self._sorted:
            for times in self._times.values():
                times.sort()
            self._sorted = True
        times = self._times.get((customer_id, kind))
        if not times:
            return False
        i = bisect.bisect_right(times, at)
        return i < len(times) and times[i] <= at + window_s


def read_event_lines(paths: Iterable[Path], problems: list[str], index: ConversionIndex | None = None) -> ConversionIndex:
    """The input events of JSONL files (``simulate`` output, what ``produce`` sends) into an index."""
    index = index or ConversionIndex()
    for path in paths:
        with path.open("rb") as lines:
            for topic, record in _records(lines, problems, str(path)):
                index.add_record(record, problems, f"{path} ({topic or 'event'})")
    return index


# --- the report ------------------------------------------------------------------------------


def uplift(
    exposures: Iterable[Exposure],
    conversions: ConversionIndex,
    *,
    goals: Mapping[str, tuple[str, int]] | None = None,
    default_goal: tuple[str, int] = ("purchase", DEFAULT_ATTRIBUTION_S),
) -> list[UpliftRow]:
    """One row per message over all its variants, then one per variant, sorted by message.

    ``goals[message] = (converts_on, attribution_s)`` from the rule file; ``default_goal`` for
    messages it does not name."""
    goals = goals or {}
    first: dict[tuple[bool, str, str], Exposure] = {}
    for exposure in exposures:
        key = (exposure.holdout, exposure.message, exposure.customer_id)
        known = first.get(key)
        if known is None or exposure.at < known.at:
            first[key] = exposure
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (holdout, message, customer_id), exposure in first.items():
        kind, window = goals.get(message, default_goal)
        hit = conversions.converted(customer_id, kind, exposure.at, window)
        for variant in (ALL, exposure.variant) if exposure.variant is not None else (ALL,):
            cell = counts[(message, variant)]
            cell[2 if holdout else 0] += 1
            cell[3 if holdout else 1] += hit
    rows = []
    for (message, variant), (n_t, k_t, n_h, k_h) in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] != ALL, kv[0][1])):
        kind, window = goals.get(message, default_goal)
        rows.append(UpliftRow(message, variant, n_t, k_t, n_h, k_h, kind, window))
    return rows


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def table(rows: Iterable[UpliftRow]) -> str:
    """The report as an aligned text table (rates and differences in percentage points); both arms
    count customers (each once per message and arm, from their first decision), not decisions."""
    header = ("message", "variant", "treated customers", "conv", "rate", "holdout customers", "conv", "rate", "uplift", "95% CI (Newcombe)", "goal")
    lines = [header]
    for row in rows:
        found = row.interval
        ci = "—" if found is None else f"[{100 * found[1]:+.2f}, {100 * found[2]:+.2f}] pp"
        diff = "—" if found is None else f"{100 * found[0]:+.2f} pp"
        goal = f"{row.converts_on} ≤ {row.attribution_s / 86_400:g}d"
        lines.append(
            (row.message, row.variant, str(row.treated), str(row.treated_converted), _pct(row.treated_rate),
             str(row.holdout), str(row.holdout_converted), _pct(row.holdout_rate), diff, ci, goal)
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def plot(rows: list[UpliftRow], path: Path) -> Path:
    """The differences with their 95 % intervals as a PNG (one line per message and variant);
    raises ImportError without matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [(row, row.interval) for row in rows if row.interval is not None]
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.45 * max(len(shown), 1)))
    for y, (row, (d, low, high)) in enumerate(reversed(shown)):
        bold = row.variant == ALL
        ax.errorbar([100 * d], [y], xerr=[[100 * (d - low)], [100 * (high - d)]], fmt="o", capsize=4,
                    color="tab:blue" if bold else "tab:gray", markersize=7 if bold else 5)
    ax.set_yticks(range(len(shown)), [f"{r.message} / {r.variant}" for r, _ in reversed(shown)])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("conversion uplift, treated − holdout (percentage points, 95 % Newcombe interval)")
    ax.set_title("Uplift per message and variant")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
