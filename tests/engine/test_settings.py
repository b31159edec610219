"""Settings: environment names, broker URL forms, masked secrets, client kwargs."""

from __future__ import annotations

import pytest

from microseg.engine.settings import Settings, load_settings, parse_bootstrap
from microseg.errors import ConfigError


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in [n for n in os.environ if n.startswith("MICROSEG_")]:
        monkeypatch.delenv(name)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("kafka://127.0.0.1:9092", ("127.0.0.1:9092",)),
        ("kafka://a:1,b:2", ("a:1", "b:2")),
        ("kafka://a:1,kafka://b:2/", ("a:1", "b:2")),
        ("broker-1.internal:9093", ("broker-1.internal:9093",)),
        (" a:1 , b:2 ", ("a:1", "b:2")),
        ("[::1]:9092", ("[::1]:9092",)),
    ],
)
def test_bootstrap_forms(url: str, expected: tuple[str, ...]) -> None:
    assert parse_bootstrap(url) == expected


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://a:1", "unsupported scheme 'http'"),
        ("kafka://a", "'a' is not host:port"),
        ("a:notaport", "is not host:port"),
        ("a:1,,b:2", "'(empty)' is not host:port"),
        ("a:70000", "is not host:port"),
        ("user@a:1", "bad host"),
    ],
)
def test_bad_bootstrap_is_named(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_bootstrap(url)


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROSEG_BROKER", "kafka://k1:9092,k2:9092")
    monkeypatch.setenv("MICROSEG_PARTITIONS", "8")
    monkeypatch.setenv("MICROSEG_WEB_PORT", "7000")
    monkeypatch.setenv("MICROSEG_API_TOKEN", "s3cret-s3cret-s3cret")
    settings = Settings()
    assert settings.bootstrap_servers == ("k1:9092", "k2:9092")
    assert not settings.embedded
    assert settings.partitions == 8
    assert settings.web_port == 7000
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "s3cret-s3cret-s3cret"


def test_defaults_mean_embedded() -> None:
    settings = Settings()
    assert settings.embedded and settings.bootstrap_servers is None
    assert settings.web_host == "127.0.0.1"
    assert settings.input_topic == "customer-events"
    assert settings.changelog_topic in settings.topic_names


def test_frozen() -> None:
    with pytest.raises(ValueError, match="frozen"):
        Settings().partitions = 3  # type: ignore[misc]


def test_secrets_masked() -> None:
    settings = Settings(api_token="tok-123-tok-123-tok", read_token="read-456-read-456", sasl_password="pw-456")
    printed = repr(settings) + str(settings) + settings.model_dump_json()
    assert "tok-123" not in printed and "pw-456" not in printed and "read-456" not in printed


def test_load_settings_reports_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MICROSEG_BROKER", "kafka://nope")
    with pytest.raises(ConfigError, match="MICROSEG_BROKER: broker 'kafka://nope'"):
        load_settings()
    monkeypatch.delenv("MICROSEG_BROKER")
    with pytest.raises(ConfigError, match="MICROSEG_PARTITIONS"):
        load_settings(partitions=0)


def test_security_pass_through(tmp_path) -> None:
    settings = Settings(
        broker="k:9093", security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="u", sasl_password="p"
    )
    expected = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "u", "sasl_plain_password": "p"}
    assert settings.kafka_python_kwargs() == expected
    assert settings.aiokafka_kwargs() == expected
    ssl_settings = Settings(broker="k:9093", security_protocol="SSL")
    assert ssl_settings.kafka_python_kwargs()["ssl_cafile"] is None
    assert "ssl_context" in ssl_settings.aiokafka_kwargs()
    assert Settings().aiokafka_kwargs() == {"security_protocol": "PLAINTEXT"}
