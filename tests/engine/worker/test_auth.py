"""The bearer-token guard and the start-up bind check, without a server (the worker tests call
them over HTTP: tests/engine/worker/test_security.py)."""

from __future__ import annotations

import hmac
import logging

import orjson
import pytest
from pydantic import SecretStr

from microseg.engine.settings import Settings, load_settings
from microseg.engine.worker import auth
from microseg.engine.worker.auth import Guard, Scope, check_bind, is_loopback
from microseg.engine.worker.logs import REDACTED, RedactFilter, install_redaction
from microseg.errors import ConfigError

API = "api-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"


def guard(api: str | None = API, read: str | None = READ) -> Guard:
    return Guard(SecretStr(api) if api else None, SecretStr(read) if read else None)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "localhost.", "::ffff:127.0.0.1"])
def test_loopback_binds(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "", "192.168.1.20", "10.0.0.5", "fe80::1%eth0", "worker-1", "example.com", "::ffff:10.0.0.1"])
def test_binds_reachable_from_elsewhere(host: str) -> None:
    assert not is_loopback(host)


def test_a_non_loopback_bind_without_a_token_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        check_bind("0.0.0.0", 6066, guard(None, None))
    message = str(caught.value)
    assert "\n" not in message and "MICROSEG_API_TOKEN" in message and "MICROSEG_WEB_HOST=0.0.0.0" in message
    assert check_bind("0.0.0.0", 6066, guard(API, None)) is None
    assert check_bind("0.0.0.0", 6066, guard(None, READ)) is None, "reads guarded, erasure closed to all"
    assert check_bind("0.0.0.0", 0, guard(None, None)) is None, "web endpoints off: nothing served"
    warning = check_bind("127.0.0.1", 6066, guard(None, None))
    assert warning is not None and "unguarded" in warning
    assert check_bind("127.0.0.1", 6066, guard()) is None


def test_the_header_is_the_only_way_in() -> None:
    g = guard()
    assert g.check(f"Bearer {API}", [], Scope.ADMIN) is None
    assert g.check(f"bearer   {API} ", [], Scope.READ) is None, "the scheme is case-insensitive (RFC 7235)"
    assert g.check(f"Bearer {READ}", [], Scope.READ) is None
    assert g.check(None, [], Scope.READ) is auth.MISSING
    assert g.check("", [], Scope.READ) is auth.MISSING
    assert g.check(API, [], Scope.READ) is auth.MISSING, "no scheme"
    assert g.check(f"Basic {API}", [], Scope.READ) is auth.MISSING
    assert g.check("Bearer nope", [], Scope.READ) is auth.WRONG
    assert g.check(f"Bearer {API}x", [], Scope.READ) is auth.WRONG
    assert g.check(f"Bearer {API[:-1]}", [], Scope.READ) is auth.WRONG


def test_a_read_token_cannot_erase() -> None:
    refusal = guard().check(f"Bearer {READ}", [], Scope.ADMIN)
    assert refusal is auth.FORBIDDEN and refusal.status == 403
    assert 'error="insufficient_scope"' in refusal.headers["WWW-Authenticate"]
    only_read = guard(None, READ)
    assert only_read.check(f"Bearer {READ}", [], Scope.ADMIN) is auth.FORBIDDEN
    assert only_read.check(None, [], Scope.ADMIN) is auth.MISSING


@pytest.mark.parametrize("query", [[("token", API)], [("access_token", API)], [("Access_Token", "anything")], [("q", API)], [("x", "1"), ("api_key", "k")]])
def test_a_token_in_the_query_string_is_refused_even_with_a_good_header(query: list[tuple[str, str]]) -> None:
    refusal = guard().check(f"Bearer {API}", query, Scope.READ)
    assert refusal is auth.IN_QUERY and refusal.status == 401
    assert guard().check(f"Bearer {API}", [("cursor", "abc"), ("limit", "10")], Scope.READ) is None, "ordinary parameters pass"


def test_refusals_name_no_customer_and_ask_for_bearer() -> None:
    for refusal in (auth.MISSING, auth.WRONG, auth.IN_QUERY, auth.FORBIDDEN):
        assert refusal.headers["WWW-Authenticate"].startswith('Bearer realm="microseg"')
        assert set(orjson.loads(refusal.body)) == {"error"}
        assert "customer " not in refusal.message
    assert auth.MISSING.headers["WWW-Authenticate"] == 'Bearer realm="microseg"'
    assert 'error="invalid_token"' in auth.WRONG.headers["WWW-Authenticate"]


def test_no_token_configured_lets_everything_through() -> None:
    g = guard(None, None)
    assert not g.enabled and g.check(None, [("token", "x")], Scope.ADMIN) is None


def test_comparison_is_on_digests_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    assert guard().check(f"Bearer {API}", [], Scope.ADMIN) is None
    assert len(compared) == 2, "both tokens compared, whichever matched"
    assert all(isinstance(a, bytes) and len(a) == len(b) == 32 for a, b in compared), "SHA-256 digests: lengths never differ"


def test_secrets_stay_out_of_reprs() -> None:
    g = guard()
    assert API not in repr(g) and READ not in repr(g)
    settings = Settings(api_token=API, read_token=READ)
    assert API not in repr(settings) and READ not in repr(settings) and API not in str(settings.model_dump())


def test_token_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="MICROSEG_API_TOKEN: at least 16 characters"):
        load_settings(api_token="short")
    with pytest.raises(ConfigError, match="MICROSEG_READ_TOKEN: must differ from MICROSEG_API_TOKEN"):
        load_settings(api_token=API, read_token=API)
    with pytest.raises(ConfigError, match="MICROSEG_READ_TOKEN: no spaces"):
        load_settings(read_token="two words are not one token")
    monkeypatch.setenv("MICROSEG_READ_TOKEN", "")
    assert load_settings().read_token is None, "an empty variable is unset"
    assert Settings(read_token="").read_token is None
    try:
        load_settings(api_token="short-secret-value")
    except ConfigError as exc:  # pragma: no cover - a valid token
        raise AssertionError(exc) from exc
    with pytest.raises(ConfigError) as caught:
        load_settings(api_token="tiny-secret")
    assert "tiny-secret" not in str(caught.value), "a refused token is not echoed"


def test_the_log_filter_takes_secrets_bearer_values_and_query_strings_out() -> None:
    redact = RedactFilter([API, "erasure-secret-0123456789"]).redact
    assert redact(f'GET /customers/c1?token={API} HTTP/1.1" 401') == f'GET /customers/c1?{REDACTED} HTTP/1.1" 401'
    assert redact("Authorization: Bearer abc.def") == f"Authorization: Bearer {REDACTED}"
    assert redact("{'Authorization': 'Basic dXNlcjpwdw=='}") == f"{{'Authorization': '{REDACTED}'}}"
    assert redact(f"the key is {API}!") == f"the key is {REDACTED}!"
    assert redact("http://w:6066/customers/x?access_token=zz&y=1 failed") == f"http://w:6066/customers/x?{REDACTED} failed"
    assert redact("partition 3 ready: 120 customers, 0.20 s") == "partition 3 ready: 120 customers, 0.20 s"
    assert redact("what? nothing to hide") == "what? nothing to hide"
    assert redact("query string: access_token=abc&limit=5") == f"query string: access_token={REDACTED}&limit=5"


def test_the_log_filter_sits_on_the_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler()
    root.addHandler(handler)
    try:
        install_redaction([API])
        logger = logging.getLogger("microseg.test.redaction")
        logger.error("token %s in a message", API)
        try:
            raise ValueError(f"a traceback with {API}")
        except ValueError:
            logger.exception("failed")
    finally:
        root.removeHandler(handler)
    err = capsys.readouterr().err
    assert API not in err and err.count(REDACTED) == 2
