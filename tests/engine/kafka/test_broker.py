"""The embedded broker: starts, answers, creates topics idempotently, and never leaves an orphan."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from microseg.engine.kafka.broker import BrokerError, EmbeddedBroker, broker_for, ensure_topics, wait_for_broker
from microseg.engine.settings import Settings


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _fresh(**overrides: object) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    names = {
        f"{field}": f"{field}-{suffix}"
        for field in ("input_topic", "changes_topic", "messages_topic", "dlq_topic", "rules_topic", "changelog_topic", "identity_topic", "memberships_topic", "holdouts_topic")
    }
    return Settings(**(names | overrides))  # type: ignore[arg-type]


@pytest.mark.broker
def test_session_broker_answers(broker: str) -> None:
    host, port = broker.split(":")
    wait_for_broker(host, int(port), timeout=2)


@pytest.mark.broker
def test_ensure_topics_is_idempotent_with_explicit_configs(broker: str) -> None:
    settings = _fresh(partitions=3)
    first = ensure_topics(broker, settings)
    second = ensure_topics(broker, settings)
    assert first == second
    assert {first[name] for name in settings.topic_names} == {3}
    assert first[settings.rules_topic] == 1
    admin = KafkaAdminClient(bootstrap_servers=broker)
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.changelog_topic), ConfigResource(ConfigResourceType.TOPIC, settings.input_topic)],
            config_filter="all",
        )["topic"]
    finally:
        admin.close()
    changelog = {k: v["value"] for k, v in described[settings.changelog_topic].items()}
    assert changelog == {"cleanup.policy": "compact", "retention.ms": "-1", "retention.bytes": "-1"}
    assert {"retention.ms", "retention.bytes"} <= set(described[settings.input_topic])


@pytest.mark.broker
def test_partition_mismatch_is_refused(broker: str) -> None:
    settings = _fresh(partitions=2)
    ensure_topics(broker, settings)
    with pytest.raises(BrokerError, match="MICROSEG_PARTITIONS=4"):
        ensure_topics(broker, settings.model_copy(update={"partitions": 4}))


@pytest.mark.broker
def test_broker_for_uses_configured_broker(broker: str) -> None:
    settings = _fresh(broker=f"kafka://{broker}", partitions=2)
    with broker_for(settings) as endpoint:
        assert endpoint.bootstrap == broker and not endpoint.embedded


def test_start_stop_and_context_manager() -> None:
    embedded = EmbeddedBroker()
    with embedded:
        pid = embedded.pid
        assert pid is not None and _alive(pid)
        host, port = embedded.bootstrap.split(":")
        wait_for_broker(host, int(port), timeout=2)
    assert embedded.pid is None
    assert _wait_gone(pid, 1)
    embedded.stop()
    with pytest.raises(BrokerError, match="not running"):
        _ = embedded.bootstrap


def test_broker_for_embedded_installs_fix() -> None:
    from microseg.engine.kafka.offsets import end_offsets_fix_installed, uninstall_end_offsets_fix

    uninstall_end_offsets_fix()
    try:
        with broker_for(Settings(partitions=2)) as endpoint:
            assert endpoint.embedded
            assert end_offsets_fix_installed()
    finally:
        uninstall_end_offsets_fix()


def test_failure_reports_broker_output(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'boom: cannot bind' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(BrokerError, match="(?s)exited while starting.*boom: cannot bind"):
        EmbeddedBroker(binary=fake, port=1).start()


def test_silent_broker_times_out(tmp_path: Path) -> None:
    fake = tmp_path / "tansu"
    fake.write_text("#!/bin/sh\necho 'not listening'\nexec sleep 30\n")
    fake.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(BrokerError, match="(?s)did not answer a metadata request within 1 s.*not listening"):
        EmbeddedBroker(binary=fake, startup_timeout=1).start()
    assert time.monotonic() - started < 8


@pytest.mark.parametrize("parent_signal", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_no_orphan_when_parent_dies(parent_signal: signal.Signals) -> None:
    script = (
        "import sys, time\n"
        "from microseg.engine.kafka.broker import EmbeddedBroker\n"
        "b = EmbeddedBroker().start()\n"
        "print(b.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    # a run started in the background (`pytest &`) inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: give the parent the default disposition, as a terminal would
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
        parent.send_signal(parent_signal)
        parent.wait(30)  # a loaded 2-core machine can take >10 s to unwind the interpreter
        assert _wait_gone(child), f"broker pid {child} outlived its parent ({parent_signal.name})"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_check_reachable_says_why_in_one_line_and_fast() -> None:
    import socket

    from microseg.engine.kafka.broker import check_reachable, free_port

    closed = free_port()
    started = time.monotonic()
    with pytest.raises(BrokerError) as refused:
        check_reachable(f"127.0.0.1:{closed}")
    assert str(refused.value) == f"cannot reach the broker at 127.0.0.1:{closed}: Connection refused"
    assert time.monotonic() - started < 1
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(BrokerError, match=f"^cannot reach the broker at 127.0.0.1:{closed},{address}: 127.0.0.1:{closed} Connection refused; {address} no answer within"):
            check_reachable(f"127.0.0.1:{closed},{address}", timeout=1.0)
        assert time.monotonic() - started < 2
        with pytest.raises(BrokerError, match="no answer within"):
            check_reachable(address, timeout=0.5)


@pytest.mark.broker
def test_check_reachable_passes_for_a_live_broker(broker: str) -> None:
    import asyncio

    from microseg.engine.kafka.broker import check_reachable, free_port, probe_async

    check_reachable(f"127.0.0.1:{free_port()},{broker}")
    assert asyncio.run(probe_async([broker], plaintext=True, timeout=2)) is None
    assert "refused" in str(asyncio.run(probe_async([f"127.0.0.1:{free_port()}"], plaintext=True, timeout=2)))
