"""What a candidate rule set would do to live state: segment sizes before and after, as of one instant.

For ``microseg rules diff DIR`` (and the console's rules page): every customer stored in this
worker's ready partitions is read from the store, and the record pipeline
(``segments.pipeline.Pipeline.advance``, the same as a clock tick or a rule sweep) lets time run on
to ``as_of`` under the rules in force and under the candidate, on copies: nothing is stored,
emitted or counted in the worker's metrics. The two sizes are therefore comparable (same instant,
same customers). A request to one worker is answered for all of them: it asks every other
partition owner from the assignor's table (``engine.worker.routing``) for its own part, and sums.
It costs one evaluation per customer and rule set, in chunks that yield to the event loop.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson

from microseg.segments.pipeline import Pipeline
from microseg.segments.rulefiles import compile_rule_texts
from microseg.segments.ruleset import RuleSet
from microseg.segments.step import Core

from microseg.engine.worker.routing import ROUTED_HEADER, RoutingError

__all__ = ["local_sizes", "live_sizes"]

_CHUNK = 2_000


async def local_sizes(runtime: Any, ruleset: RuleSet, as_of: float) -> tuple[int, Counter[str], list[int]]:
    """(customers, members per segment, partitions) under ``ruleset`` as of ``as_of`` on this worker."""
    pipeline = Pipeline(Core(ruleset, runtime.model), source="rules-preview", kafka=True)
    counts: Counter[str] = Counter()
    customers = 0
    partitions = sorted(runtime.ready)
    for partition in partitions:
        keys = [k for k, _ in runtime.store.items(partition) if not k.startswith("\x00")]
        for start in range(0, len(keys), _CHUNK):
            ids = keys[start : start + _CHUNK]
            loaded = runtime.tasks.load(partition, ids)  # decoded afresh: copies, never the stored states
            stepped = pipeline.advance(partition, ids, as_of, lambda p, c, found=loaded: found).states.get(partition, {})
            for customer_id, state in loaded.items():
                final = stepped.get(customer_id, state)
                if not final.erased:
                    customers += 1
                    counts.update(final.segments)
            await asyncio.sleep(0)
    return customers, counts, partitions


async def live_sizes(runtime: Any, router: Any, files: dict[str, str] | None, as_of: float, authorization: str | None, *, local_only: bool) -> dict[str, Any]:
    """``{"as_of", "customers", "before", "after", "partitions", "rules_version", "candidate_version"}``
    over this worker (``local_only``) or every worker. Raises ``RuleError`` for a candidate that does
    not compile and ``RoutingError`` when a partition's owner cannot be asked."""
    candidate = compile_rule_texts(files, base="candidate") if files is not None else runtime.ruleset
    customers, before, partitions = await local_sizes(runtime, runtime.ruleset, as_of)
    if candidate.version == runtime.ruleset.version:
        after = before
    else:
        _, after, _ = await local_sizes(runtime, candidate, as_of)
    body: dict[str, Any] = {
        "as_of": as_of, "customers": customers, "before": dict(before), "after": dict(after), "partitions": partitions,
        "rules_version": runtime.ruleset.version, "candidate_version": candidate.version,
    }
    if local_only:
        return body
    total_before, total_after = Counter(before), Counter(after)
    covered = set(partitions)
    payload = orjson.dumps({"files": files, "as_of": as_of})
    for url in router.peers():
        answer = await router.post(url, "/rules/sizes", payload, authorization)
        if answer.status != 200:
            raise RoutingError(f"the worker at {url} answered {answer.status}: {answer.body[:200].decode(errors='replace')}")
        part = orjson.loads(answer.body)
        if part["rules_version"] != runtime.ruleset.version:
            raise RoutingError(f"the worker at {url} runs rules {part['rules_version']}, this one {runtime.ruleset.version}; try again when the rules have reached every worker")
        body["customers"] += part["customers"]
        total_before.update(part["before"])
        total_after.update(part["after"])
        covered.update(part["partitions"])
    missing = sorted(set(range(runtime.settings.partitions)) - covered)
    if missing:
        raise RoutingError(f"partitions {missing} are not ready on any worker (a rebalance or a recovery is under way); try again")
    body.update(before=dict(total_before), after=dict(total_after), partitions=sorted(covered))
    return body


def routed(headers: Any) -> bool:
    """Whether a request was forwarded by another worker (then it is answered for this worker only)."""
    return bool(headers.get(ROUTED_HEADER))
