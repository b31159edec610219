"""The worker's log lines: JSON on request, no terminal escape codes, and the lines an operator
looks for (web URL, model, progress, stopped), read from a real worker writing into a pipe."""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from microseg.engine.kafka.broker import free_port
from microseg.engine.worker.logs import JsonFormatter, TextFormatter, install_format, strip_escapes


def _record(msg: str, *args: object, level: int = logging.INFO, exc: bool = False) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            info = sys.exc_info()
    record = logging.LogRecord("microseg.worker", level, __file__, 1, msg, args, info)
    record.created = 1_767_225_600.5  # 2026-01-01T00:00:00.5Z
    return record


def test_escape_sequences_and_control_characters_are_removed() -> None:
    assert strip_escapes("\b\x1b[?25hready \x1b[1;31mred\x1b[0m") == "ready red"
    assert strip_escapes("\x1b]0;title\x07tab\tand\nnewline kept") == "tab\tand\nnewline kept"
    assert strip_escapes("café — ünïcode stays") == "café — ünïcode stays"


def test_json_lines_carry_time_level_logger_message_and_traceback() -> None:
    line = JsonFormatter().format(_record("partition %d ready: %s", 3, "\x1b[32mok\x1b[0m"))
    assert "\n" not in line
    assert orjson.loads(line) == {"ts": "2026-01-01T00:00:00.500Z", "level": "INFO", "logger": "microseg.worker", "message": "partition 3 ready: ok"}
    failed = orjson.loads(JsonFormatter().format(_record("it failed", level=logging.ERROR, exc=True)))
    assert failed["level"] == "ERROR" and "ValueError: boom" in failed["exc"]


def test_text_lines_keep_their_format_without_escapes() -> None:
    line = TextFormatter().format(_record("\x1b[1mbold\x1b[0m line"))
    assert line.endswith(" INFO microseg.worker: bold line") and "\x1b" not in line


def test_install_format_sets_every_root_handler() -> None:
    root = logging.getLogger()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    saved = [h.formatter for h in root.handlers]
    root.addHandler(handler)
    try:
        install_format("json")
        logging.getLogger("microseg.test.format").warning("hello %s", "there")
        assert orjson.loads(stream.getvalue().splitlines()[-1])["message"] == "hello there"
    finally:
        root.removeHandler(handler)
        for h, formatter in zip(root.handlers, saved):
            h.setFormatter(formatter)
        logging.captureWarnings(False)


def _read_until(process: subprocess.Popen[bytes], lines: list[bytes], needle: bytes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(needle in line for line in lines):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no line with {needle!r} in {timeout}s:\n" + b"".join(lines[-40:]).decode(errors="replace"))


@pytest.mark.broker
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_worker_writing_into_a_pipe_logs_url_model_progress_and_stopped(log_format: str, tmp_path: Path) -> None:
    """An embedded-broker worker with its stderr and stdout on a pipe, stopped with Ctrl-C (SIGINT)."""
    port = free_port()
    env = {
        **os.environ,
        "MICROSEG_DATA_DIR": str(tmp_path / "data"),
        "MICROSEG_WEB_PORT": str(port),
        "MICROSEG_LOG_FORMAT": log_format,
        "MICROSEG_PROGRESS_INTERVAL_S": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONWARNINGS": "ignore::RuntimeWarning",  # a stale compiled core warns at import, before logging is set up
    }
    env.pop("MICROSEG_BROKER", None)
    process = subprocess.Popen([sys.executable, "-m", "microseg", "worker"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, b"")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        _read_until(process, lines, b"progress: ", 120)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    reader.join(10)
    output = b"".join(lines)
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    assert b"\x1b" not in output and b"\x08" not in output, "terminal escape codes in a redirected log"
    text = output.decode()
    if log_format == "json":
        records = [orjson.loads(line) for line in lines if line.strip()]  # every line is one JSON object
        assert {"ts", "level", "logger", "message"} <= set(records[0])
        messages = [r["message"] for r in records]
    else:
        messages = text.splitlines()
    assert any(f"web endpoints on http://127.0.0.1:{port} " in m for m in messages)
    assert any("predictive demo model" in m and "(packaged)" in m for m in messages), "the model it loaded"
    assert any("progress: 0 events" in m and "4 partitions" in m for m in messages)
    assert "stopped after" in messages[-1] and "(exit code 0)" in messages[-1]
