"""The bench's identity mix (``microseg bench --identities``): 20% anonymous events, 5% identifies, valid input."""

from __future__ import annotations

import orjson

from microseg.engine.tools.bench.workload import identity_mix, make_lines
from microseg.schemas.events import decode_event


def test_the_identity_mix_has_its_shares_and_valid_keys() -> None:
    lines, keys = make_lines(6_000, 600)
    mixed, mixed_keys, counts = identity_mix(lines, keys)
    assert len(mixed) == len(lines) + counts["identifies"]
    assert abs(counts["identifies"] / len(mixed) - 0.05) < 0.005 and abs(counts["anonymous"] / len(mixed) - 0.2) < 0.02
    seen_identify: set[str] = set()
    for line, key in zip(mixed, mixed_keys):
        event = decode_event(line, key=key)  # the key is customer_id, else anonymous_id
        data = orjson.loads(line)
        if event.type == "identify":
            seen_identify.add(data["customer_id"])
        elif "anonymous_id" in data:
            assert data["anonymous_id"].removeprefix("v-") not in seen_identify  # anonymous only before the identify
    assert len(seen_identify) == counts["identifies"]
