"""The peer phase: the same core hosted in quix-streams (``engine.tools.bench_peer``), in a subprocess
over the worker's input topic."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from microseg.engine.settings import Settings

__all__ = ["run_peer"]


def run_peer(settings: Settings, bootstrap: str, events: int, rules_dir: Path | None, workdir: Path, timeout: float) -> dict[str, Any]:
    """The quix-streams-hosted core (``engine.tools.bench_peer``) in a subprocess over the same input topic.

    Returns the peer's JSON line (``peer_events_per_s`` and its details), or ``peer_events_per_s``
    None with a ``peer_note`` saying why (quixstreams missing, a timeout after ``timeout`` seconds,
    a failure with the end of its log).
    """
    if importlib.util.find_spec("quixstreams") is None:
        return {"peer_events_per_s": None, "peer_note": "skipped: quixstreams is not installed (pip install 'microseg[bench]')"}
    command = [
        sys.executable, "-m", "microseg.engine.tools.bench_peer",
        "--bootstrap", bootstrap, "--topic", settings.input_topic, "--output", f"{settings.input_topic}-peer-out",
        "--group", f"{settings.group_id}-peer", "--events", str(events), "--state-dir", str(workdir / "peer-state"),
    ]
    if rules_dir is not None:
        command += ["--rules", str(rules_dir)]
    log_path = workdir / "peer.log"
    with open(log_path, "wb") as log:
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=log, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return {"peer_events_per_s": None, "peer_note": f"failed: the quix-streams peer did not finish within {timeout:.0f} s"}
    for line in reversed(done.stdout.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = log_path.read_text(errors="replace")[-1500:]
    return {"peer_events_per_s": None, "peer_note": f"failed: the quix-streams peer exited with {done.returncode}: {tail}"}
