"""The machine a bench ran on, recorded with its figures: cores, CPU, RAM, Python, which core build."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path
from typing import Any

__all__ = ["machine_info"]


def machine_info() -> dict[str, Any]:
    """``nproc``, ``cpu`` (model name), ``ram_gib``, ``python``, ``platform`` and ``core_build`` (``mypyc`` or why not)."""
    cpu = platform.processor() or ""
    mem_gib = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    from microseg.segments.native import build

    core = build()
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "core_build": "mypyc" if core.compiled else f"python ({core.reason})",
    }
