"""All runtime configuration in one frozen model, read from ``MICROSEG_*`` variables and flags."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from microseg.errors import ConfigError

__all__ = ["Settings", "load_settings", "parse_bootstrap"]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def parse_bootstrap(url: str) -> tuple[str, ...]:
    """Turn ``kafka://h:p[,h:p]`` or ``h:p[,h:p]`` into ``("h:p", ...)``, naming what is wrong otherwise."""
    text = url.strip()
    for scheme in ("kafka://", "aiokafka://"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    else:
        if "://" in text:
            msg = f"broker {url!r}: unsupported scheme {text.split('://')[0]!r}; use kafka://host:port or host:port"
            raise ConfigError(msg)
    text = text.rstrip("/")
    servers: list[str] = []
    for part in text.split(","):
        item = part.strip()
        if item.startswith("kafka://"):
            item = item[len("kafka://") :]
        host, sep, port = item.rpartition(":")
        if not item or not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            msg = f"broker {url!r}: {item or '(empty)'!r} is not host:port (e.g. kafka://127.0.0.1:9092,10.0.0.2:9092)"
            raise ConfigError(msg)
        if any(ch in host for ch in "/ @?#"):
            msg = f"broker {url!r}: bad host {host!r} in {item!r}"
            raise ConfigError(msg)
        servers.append(f"{host}:{int(port)}")
    return tuple(servers)


class Settings(BaseSettings):
    """Every knob of the engine; ``broker=None`` means start the embedded broker."""

    model_config = SettingsConfigDict(env_prefix="MICROSEG_", frozen=True, extra="ignore", env_ignore_empty=True)

    broker: str | None = None
    data_dir: Path = Path("./.microseg")
    rules_dir: Path | None = None
    partitions: int = Field(4, ge=1, le=10_000)
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=0, le=65535)
    advertised_url: str | None = Field(
        None, description="the URL other workers reach this one's web endpoints at (request routing); default http://<web host, or this host's name on a wildcard bind>:<web port>"
    )
    api_token: SecretStr | None = Field(
        None, description="bearer token for every customer endpoint, erasure included (docs/security.md); never logged"
    )
    read_token: SecretStr | None = Field(
        None, description="bearer token that may only read personal data (explain, segment members, console pages)"
    )
    erasure_secret: SecretStr | None = Field(
        None, description="key of the hash under which erased customers' marks are stored; same on every worker, never changed"
    )

    input_topic: str = "customer-events"
    changes_topic: str = "segment-changes"
    messages_topic: str = "next-best-messages"
    holdouts_topic: str = Field("message-holdouts", description="decisions for customers in a control group (same record shape; never on the messages topic)")
    dlq_topic: str = "customer-events-dlq"
    rules_topic: str = "microseg-rules"
    models_topic: str = "microseg-models"
    posteriors_topic: str = Field("microseg-posteriors", description="published posterior snapshots of message variants (one partition; every worker and replay read it)")
    posterior_counts_topic: str = Field("microseg-posterior-counts", description="absolute per-partition variant totals, compacted, key partition|message|variant")
    posterior_interval_s: float = Field(60.0, gt=0, description="how often a new posterior snapshot is cut (by the worker owning input partition 0)")
    posterior_lead_s: float = Field(30.0, ge=0, description="a snapshot takes effect this long after it is cut (event time), so every worker has it first")
    posterior_publish_s: float = Field(10.0, gt=0, description="how often each worker publishes its partitions' variant totals")
    changelog_topic: str = "microseg-dna-changelog"
    identity_topic: str = Field(
        "microseg-identity", description="records moving between partitions for identity (linked visitors' events, identify hand-overs); partitioned like the input"
    )
    erasure_audit_topic: str = "customer-erasures-audit"
    memberships_topic: str = "segment-memberships"
    memberships: bool = Field(True, description="publish current memberships to the compacted memberships topic (key customer_id|segment, tombstone on exit)")
    group_id: str = "microseg"
    replication_factor: int = Field(1, ge=1)

    tick_interval_s: float = Field(10.0, gt=0, description="how often the clock lets time run on for due customers")
    ticks: bool = Field(True, description="fire time-based changes from the wall clock (off: only events move customers)")
    log_format: Literal["text", "json"] = Field("text", description="worker log lines: text, or one JSON object per line (ts, level, logger, message)")
    progress_interval_s: float = Field(60.0, ge=0, description="how often the worker logs a progress line (0: never)")
    max_batch: int = Field(5_000, ge=1, le=100_000, description="most input records per batch")
    batch_within_s: float = Field(0.05, gt=0, description="longest wait to fill a batch")
    session_timeout_s: float = Field(10.0, ge=6, description="consumer group session timeout")
    idempotent_producer: bool = Field(False, description="enable for real Kafka; the embedded broker (Tansu) refuses it")
    commit_interval_s: float = Field(1.0, gt=0, description="how often processed input offsets are committed")
    console_snapshot_s: float = Field(3600.0, gt=0, description="how often the web console records segment populations (seconds)")
    console_snapshots: int = Field(168, ge=2, le=100_000, description="population snapshots the console keeps (168: a week of hours)")
    console_candidates_dir: Path | None = Field(None, description="directory whose subdirectories are candidate rule sets on the console (default <data_dir>/candidates)")
    console_prometheus_url: str | None = Field(None, description="Prometheus scraping the workers: the console's charts then show every worker (e.g. http://prometheus:9090)")
    model_path: Path | None = None
    fix_end_offsets: bool | None = Field(
        None, description="correct Tansu's ListOffsets(latest); None = only with the embedded broker"
    )

    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            parse_bootstrap(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value.strip()

    @field_validator("api_token", "read_token", mode="before")
    @classmethod
    def _empty_token_is_unset(cls, value: Any) -> Any:
        """An empty value (``MICROSEG_READ_TOKEN=`` or compose's ``${MICROSEG_READ_TOKEN:-}``) means unset."""
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return None if isinstance(text, str) and not text else value

    @field_validator("api_token", "read_token")
    @classmethod
    def _check_token(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        if len(text.strip()) < 16:
            raise ValueError("at least 16 characters (e.g. openssl rand -hex 32)")
        if text != text.strip() or any(ch.isspace() for ch in text):
            raise ValueError("no spaces (a bearer token is one word)")
        other = info.data.get("api_token") if info.field_name == "read_token" else None
        if isinstance(other, SecretStr) and other.get_secret_value() == text:
            raise ValueError("must differ from MICROSEG_API_TOKEN (a read token must not be able to erase)")
        return value

    @field_validator("erasure_secret")
    @classmethod
    def _check_erasure_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("at least 16 characters (e.g. openssl rand -hex 32)")
        return value

    @property
    def erasure_secret_needed(self) -> bool:
        """True when the worker must have ``erasure_secret``: its state outlives it on a real broker.
        Not with the embedded broker (its own, or another process's: ``fix_end_offsets=True``), whose
        topics live in memory: demos, tests and benchmarks."""
        return self.broker is not None and self.fix_end_offsets is not True and self.erasure_secret is None

    def erasure_key_bytes(self) -> bytes:
        """The HMAC key of erased marks: the secret, or, where it may be left unset (above), a fixed
        development key derived from the group id, which is no secret at all."""
        if self.erasure_secret is not None:
            return self.erasure_secret.get_secret_value().encode()
        return f"microseg-development-erasure-key:{self.group_id}".encode()

    @property
    def embedded(self) -> bool:
        """True when no broker is configured and the engine must start its own."""
        return self.broker is None

    @property
    def bootstrap_servers(self) -> tuple[str, ...] | None:
        """The configured brokers as ``host:port`` strings, or None for the embedded broker."""
        return None if self.broker is None else parse_bootstrap(self.broker)

    @property
    def topic_names(self) -> tuple[str, ...]:
        """The topics partitioned like the input (rules and models topics excluded: they have one partition)."""
        return (self.input_topic, self.changes_topic, self.messages_topic, self.holdouts_topic, self.dlq_topic, self.changelog_topic, self.identity_topic)

    def web_url(self) -> str:
        """Where other workers reach this worker's web endpoints (``advertised_url``, or derived from the bind)."""
        if self.advertised_url:
            return self.advertised_url.rstrip("/")
        import socket

        host = self.web_host if self.web_host not in ("", "0.0.0.0", "::") else socket.getfqdn()
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.web_port}"

    def _uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL")

    def _ssl_context(self) -> ssl.SSLContext | None:
        if "SSL" not in self.security_protocol:
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None)
        return context

    def _auth_kwargs(self) -> dict[str, Any]:
        """Protocol and SASL keywords, spelled the same by kafka-python and aiokafka."""
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self._uses_sasl():
            kwargs |= {
                "sasl_mechanism": self.sasl_mechanism or "PLAIN",
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            }
        return kwargs

    def kafka_python_kwargs(self) -> dict[str, Any]:
        """Security keyword arguments for kafka-python clients (bootstrap servers not included)."""
        kwargs = self._auth_kwargs()
        if "SSL" in self.security_protocol:
            kwargs |= {
                "ssl_cafile": str(self.ssl_cafile) if self.ssl_cafile else None,
                "ssl_certfile": str(self.ssl_certfile) if self.ssl_certfile else None,
                "ssl_keyfile": str(self.ssl_keyfile) if self.ssl_keyfile else None,
            }
        return kwargs

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Security keyword arguments for aiokafka clients (bootstrap servers not included)."""
        kwargs = self._auth_kwargs()
        context = self._ssl_context()
        if context is not None:
            kwargs["ssl_context"] = context
        return kwargs


def load_settings(**overrides: Any) -> Settings:
    """Build ``Settings`` from the environment plus overrides, as a ``ConfigError`` naming each bad field."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"MICROSEG_{field.upper()}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from exc
