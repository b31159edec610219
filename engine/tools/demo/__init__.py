"""``microseg demo``: embedded broker + a worker subprocess + simulated customers, watched live.

The worker runs as ``python -m microseg worker`` in its own session, so Ctrl-C reaches only the
demo, which then stops things in order (producer, worker, follower, broker); a parent-death
signal makes even ``kill -9`` of the demo leave no orphan. Segment populations and micro-segment
cells are computed from the ``segment-changes`` stream itself (idempotent under redelivery), so
the view needs nothing from the worker but its outputs and ``GET /health`` for readiness.

Modules: ``options``, ``board`` (what is shown, from the outputs), ``view`` (plain lines or a
live screen), ``worker_process`` (the worker and its directory), ``streams`` (the producer and
follower threads), ``run`` (the orchestration).
"""

from __future__ import annotations

from microseg.engine.tools.demo.board import Board, Decision, Move
from microseg.engine.tools.demo.options import DemoOptions
from microseg.engine.tools.demo.run import run_demo

__all__ = ["DemoOptions", "Board", "Move", "Decision", "run_demo"]
