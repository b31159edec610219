"""The deployment files, checked without Docker: docker-compose.yml, Dockerfile, .dockerignore,
deploy/prometheus.yml, the Grafana dashboard and the settings table in docs/operations.md.

Nothing here runs a container (there is no Docker daemon where the suite runs); instead every
name the files use is checked against the code that reads it: ``MICROSEG_*`` variables against
``Settings``, scrape targets against the compose services, dashboard queries against ``Metrics``,
and the KRaft broker settings against each other.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from microseg.engine.worker.metrics import Metrics
from microseg.engine.settings import Settings, load_settings
from microseg.segments import native

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus.yml"
DASHBOARD_FILE = ROOT / "deploy" / "grafana-dashboard.json"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

PREFIX = "MICROSEG_"
SETTINGS_ENV = {PREFIX + name.upper(): name for name in Settings.model_fields}
# What the stack would be started with: the variables the compose file requires from the shell.
SHELL_ENV = {"MICROSEG_API_TOKEN": "test-token-0123456789", "MICROSEG_ERASURE_SECRET": "test-erasure-secret-0123456789"}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(PREFIX)]:
        monkeypatch.delenv(name)


# -- helpers ----------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` against ``shell`` (``$$`` stays literal)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        present = shell.get(name)
        if op in (":-", "-"):
            return present if present or (op == "-" and present is not None) else arg
        if op in (":?", "?"):
            if present is None or (op == ":?" and not present):
                raise AssertionError(f"compose would refuse to start without {name}: {arg}")
            return present
        if op in (":+", "+"):
            return arg if present else ""
        return present or ""

    return _INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), "docker-compose.yml needs a services mapping"
    return data


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def raw_environment(service: dict[str, Any]) -> dict[str, Any]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {k: v for k, v in pairs}
    return dict(env)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """The environment a container of ``service`` gets, with the shell's variables substituted."""
    resolved = {}
    for key, value in raw_environment(service).items():
        if value is None:
            if key in SHELL_ENV:
                resolved[key] = SHELL_ENV[key]
            continue
        resolved[key] = interpolate(str(value), SHELL_ENV)
    return resolved


def is_microseg(service: dict[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("microseg")


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if command is None:
        return dockerfile_instruction_json("CMD")
    return shlex.split(command) if isinstance(command, str) else list(command)


def worker_services() -> dict[str, dict[str, Any]]:
    """Services built from our Dockerfile that run ``microseg worker`` whenever the stack is up."""
    return {
        name: svc
        for name, svc in services().items()
        if is_microseg(svc) and not svc.get("profiles") and command_of(svc)[:1] == ["worker"]
    }


def worker_settings(service: dict[str, Any]) -> Settings:
    return load_settings(**{SETTINGS_ENV[k]: v for k, v in environment(service).items() if k.startswith(PREFIX)})


def dockerfile_lines() -> list[str]:
    """Instructions of the Dockerfile with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def dockerfile_instructions(keyword: str) -> list[str]:
    return [line.split(None, 1)[1] if " " in line else "" for line in dockerfile_lines() if line.split(None, 1)[0].upper() == keyword]


def dockerfile_instruction_json(keyword: str) -> list[str]:
    found = dockerfile_instructions(keyword)
    assert found, f"Dockerfile has no {keyword}"
    value = json.loads(found[-1])
    assert isinstance(value, list), f"{keyword} must use the exec (JSON array) form"
    return value


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in dockerfile_instructions("ENV"):
        for token in shlex.split(args):
            if "=" in token:
                key, value = token.split("=", 1)
                env[key] = value
    return env


def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """``(host_ip, host_port, container_port)`` of a service's ``ports`` (short and long syntax)."""
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            out.append((str(entry.get("host_ip", "")), int(entry["published"]), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        if len(parts) == 3:
            out.append((parts[0], int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out.append(("", int(parts[0]), int(parts[1])))
        else:
            raise AssertionError(f"port {entry!r} is published on a random host port")
    return out


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source (named volume or host path) of a service's volumes."""
    mounts = {}
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            mounts[entry["target"]] = entry.get("source", "")
            continue
        parts = str(entry).split(":")
        assert len(parts) >= 2, f"anonymous volume {entry!r}: state would be lost with the container"
        mounts[parts[1]] = parts[0]
    return mounts


def listeners(text: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    out = {}
    for item in text.split(","):
        name, _, address = item.strip().partition("://")
        host, _, port = address.rpartition(":")
        out[name] = (host, int(port))
    return out


def kafka_service() -> tuple[str, dict[str, Any]]:
    found = [(n, s) for n, s in services().items() if "kafka" in str(s.get("image", "")) and not is_microseg(s)]
    assert len(found) == 1, f"expected one Kafka broker service, found {[n for n, _ in found]}"
    return found[0]


# -- services ---------------------------------------------------------------------------


def test_stack_has_kafka_two_workers_and_prometheus() -> None:
    all_services = services()
    name, kafka = kafka_service()
    assert str(kafka["image"]).startswith("apache/kafka:"), "the broker is Apache Kafka's own image"
    assert ":latest" not in kafka["image"] and str(kafka["image"]).count(":") == 1, "pin the Kafka image version"
    assert len(worker_services()) >= 2, "at least two workers share the partitions"
    assert any(str(s.get("image", "")).startswith("prom/prometheus:") for s in all_services.values())
    for svc_name, svc in all_services.items():
        image = str(svc.get("image", ""))
        if not is_microseg(svc):
            assert ":" in image and not image.endswith(":latest"), f"{svc_name}: pin the image version ({image!r})"


def test_every_microseg_variable_is_a_settings_field() -> None:
    unknown = {}
    for name, svc in services().items():
        for key in raw_environment(svc):
            if key.startswith(PREFIX) and key not in SETTINGS_ENV:
                unknown.setdefault(name, []).append(key)
    assert not unknown, f"MICROSEG_* names that Settings does not read (a typo is silently ignored): {unknown}"
    stray = [key for key in dockerfile_env() if key.startswith(PREFIX) and key not in SETTINGS_ENV]
    assert not stray, f"Dockerfile ENV names Settings does not read: {stray}"


def test_environment_values_are_strings() -> None:
    # Compose implementations differ on YAML booleans in `environment`; quoted strings mean the same everywhere.
    for name, svc in services().items():
        for key, value in raw_environment(svc).items():
            assert value is None or isinstance(value, (str, int)) and not isinstance(value, bool), (
                f"{name}: {key}={value!r} should be a quoted string"
            )


@pytest.mark.parametrize("name", sorted(worker_services()))
def test_worker_environment_parses_as_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = services()[name]
    settings = worker_settings(svc)
    assert settings.broker is not None and not settings.embedded, "workers must use the Kafka service, never the embedded broker"
    kafka_name, _ = kafka_service()
    assert all(server.split(":")[0] == kafka_name for server in settings.bootstrap_servers)
    assert settings.web_host == "0.0.0.0", "the web endpoints must be reachable from Prometheus"
    assert settings.web_port > 0
    assert settings.idempotent_producer is True, "real Kafka supports the idempotent producer"
    assert settings.fix_end_offsets is not True, "the ListOffsets workaround is for the embedded broker only"
    assert settings.api_token is not None and settings.api_token.get_secret_value() == SHELL_ENV["MICROSEG_API_TOKEN"]
    assert settings.erasure_secret is not None and settings.erasure_secret.get_secret_value() == SHELL_ENV["MICROSEG_ERASURE_SECRET"]
    assert not settings.erasure_secret_needed, "a worker on Kafka refuses to start without the erasure secret"
    assert settings.partitions >= len(worker_services()), "fewer partitions than workers leaves workers idle"

    # The container reads the same values from its environment (image ENV first, compose on top).
    for key, value in {**dockerfile_env(), **environment(svc)}.items():
        monkeypatch.setenv(key, value)
    assert load_settings() == settings


def test_one_off_services_parse_too() -> None:
    for name, svc in services().items():
        if is_microseg(svc) and name not in worker_services():
            settings = worker_settings(svc)
            assert settings.broker is not None, f"{name}: one-off commands need the broker too"


def test_workers_share_a_group_and_keep_their_own_state_and_ports() -> None:
    workers = worker_services()
    group_ids = {worker_settings(svc).group_id for svc in workers.values()}
    assert len(group_ids) == 1, f"workers must share one consumer group, got {group_ids}"
    partitions = {worker_settings(svc).partitions for svc in workers.values()}
    assert len(partitions) == 1, "every worker must be configured with the same MICROSEG_PARTITIONS"

    data_sources, host_ports = [], []
    named_volumes = set((load_compose().get("volumes") or {}).keys())
    for name, svc in workers.items():
        settings = worker_settings(svc)
        mounts = volume_mounts(svc)
        data_dir = str(settings.data_dir)
        assert data_dir in mounts, f"{name}: MICROSEG_DATA_DIR={data_dir} is not on a volume"
        assert mounts[data_dir] in named_volumes, f"{name}: the data volume {mounts[data_dir]!r} is not declared"
        data_sources.append(mounts[data_dir])
        ports = published(svc)
        assert any(container == settings.web_port for _, _, container in ports), f"{name}: web port {settings.web_port} not published"
        host_ports += [host for _, host, _ in ports]
        depends = svc.get("depends_on") or {}
        kafka_name, _ = kafka_service()
        assert isinstance(depends, dict) and depends.get(kafka_name, {}).get("condition") == "service_healthy", (
            f"{name}: start only once Kafka is healthy"
        )
    assert len(set(data_sources)) == len(data_sources), f"workers must not share a state volume: {data_sources}"
    assert len(set(host_ports)) == len(host_ports), f"published ports collide: {host_ports}"


def test_no_two_services_publish_the_same_host_port() -> None:
    seen: dict[int, str] = {}
    for name, svc in services().items():
        for _, host, _ in published(svc):
            assert host not in seen, f"{name} and {seen[host]} both publish host port {host}"
            seen[host] = name


def test_bind_mounted_files_exist() -> None:
    for name, svc in services().items():
        for target, source in volume_mounts(svc).items():
            if source.startswith("./deploy/"):
                assert (ROOT / source).is_file(), f"{name}: {source} (mounted at {target}) is missing"
            if source == "./rules":
                assert any((ROOT / "rules").glob("*.yaml"))


# -- Kafka (KRaft) ------------------------------------------------------------------------


def test_kraft_settings_are_self_consistent() -> None:
    name, kafka = kafka_service()
    env = environment(kafka)
    host = kafka.get("hostname", name)
    assert host == name, "keep the broker's hostname equal to its service name"
    roles = {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}, "one combined node: broker and controller"
    node_id = int(env["KAFKA_NODE_ID"])

    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller_names = [n.strip() for n in env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")]

    assert set(bound) <= set(protocols), f"listeners without a security protocol: {set(bound) - set(protocols)}"
    assert set(controller_names) <= set(bound), "the controller listener must be bound"
    assert not set(controller_names) & set(advertised), "a controller listener is not advertised to clients"
    assert set(advertised) <= set(bound), "every advertised listener must also be bound"
    inter_broker = env.get("KAFKA_INTER_BROKER_LISTENER_NAME", "PLAINTEXT")
    assert inter_broker in bound and inter_broker not in controller_names
    ports = [port for _, port in bound.values()]
    assert len(set(ports)) == len(ports), f"listeners share a port: {bound}"

    voters = [v.strip() for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")]
    assert len(voters) == 1
    voter_id, _, voter_address = voters[0].partition("@")
    voter_host, _, voter_port = voter_address.rpartition(":")
    assert int(voter_id) == node_id, "the quorum voter must be this node"
    assert voter_host == name
    assert int(voter_port) in {bound[c][1] for c in controller_names}, "quorum voter port must be the controller listener's"

    # The listener the workers bootstrap from is advertised under the service name on the same port.
    broker_ports = {int(server.rpartition(":")[2]) for svc in worker_services().values() for server in worker_settings(svc).bootstrap_servers}
    for port in broker_ports:
        matching = [n for n, (h, p) in advertised.items() if p == port]
        assert matching, f"workers connect to port {port}, which is not an advertised listener"
        assert advertised[matching[0]][0] == name, "the advertised host for in-stack clients must be the service name"
        assert bound[matching[0]][1] == port

    # Every published port belongs to a listener advertised for the host.
    for _, host_port, container_port in published(kafka):
        matching = [n for n, (_, p) in advertised.items() if p == container_port]
        assert matching and advertised[matching[0]][1] == host_port, (
            f"published {host_port}:{container_port} must match an advertised listener (clients are redirected to it)"
        )

    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1, "a single broker cannot host three replicas"
    assert int(env.get("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")) == 1
    for svc in worker_services().values():
        assert worker_settings(svc).replication_factor == 1
    cluster_id = env.get("CLUSTER_ID")
    assert cluster_id and re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id), "CLUSTER_ID is a base64url UUID (22 chars)"

    assert "healthcheck" in kafka, "workers wait for a healthy broker"
    check = " ".join(kafka["healthcheck"]["test"]) if isinstance(kafka["healthcheck"]["test"], list) else kafka["healthcheck"]["test"]
    assert "/opt/kafka/bin/" in check, "the apache/kafka image has its tools in /opt/kafka/bin"
    log_dirs = env.get("KAFKA_LOG_DIRS")
    assert log_dirs and log_dirs in volume_mounts(kafka), "the broker's log dir must be on a volume"


# -- Dockerfile -------------------------------------------------------------------------


def test_dockerfile_builds_a_non_root_worker_image() -> None:
    assert DOCKERFILE.is_file()
    froms = dockerfile_instructions("FROM")
    assert froms and froms[-1].split()[0] == "python:3.11-slim"
    users = dockerfile_instructions("USER")
    assert users, "the image must not run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, f"final USER is {users[-1]!r}"
    assert dockerfile_instruction_json("ENTRYPOINT") == ["microseg"]
    assert dockerfile_instruction_json("CMD") == ["worker"]

    runs = " ".join(dockerfile_instructions("RUN"))
    assert re.search(r"pip wheel [^&;]*--wheel-dir /wheels \.(\s|$)", runs), "build the project's wheel with `pip wheel ... .`"
    assert re.search(r"apt-get install [^&;]*\bgcc\b", runs), "the build stage needs a C compiler for the mypyc-compiled core"
    assert "pip install /wheels/*.whl" in runs, "the final stage installs the wheel built in the first"
    assert "native import build" in runs and "assert b.compiled" in runs, "the image build fails if the core is not compiled"
    assert not re.search(r"pip install[^&;]*(-e|--editable)\b", runs), "no editable install in the image"
    stages = [f.split() for f in froms]
    assert len(stages) == 2 and stages[0][-2:] == ["AS", "build"], "a build stage with the compiler, then a slim final image"
    copies = dockerfile_instructions("COPY")
    assert "--from=build /wheels /wheels" in copies

    env = dockerfile_env()
    web_port = int(env.get("MICROSEG_WEB_PORT", Settings.model_fields["web_port"].default))
    exposed = {int(p.split("/")[0]) for args in dockerfile_instructions("EXPOSE") for p in args.split()}
    assert web_port in exposed, f"EXPOSE {web_port} (the web port)"

    checks = dockerfile_instructions("HEALTHCHECK")
    assert checks and "/health" in checks[-1] and "urllib" in checks[-1], "HEALTHCHECK through /health with Python's urllib"
    assert "/health/ready" not in checks[-1], "the container healthcheck is liveness: a worker waiting for its broker is not restarted"
    assert "curl" not in checks[-1] and "wget" not in checks[-1], "python:3.11-slim has neither curl nor wget"

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert "microseg" in scripts, "ENTRYPOINT microseg needs the console script"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves ``path`` (relative to the context) out; later ``!`` lines re-include."""
    verdict = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        if any(fnmatch.fnmatchcase(prefix, body) for prefix in prefixes) or (
            body.startswith("**/") and any(fnmatch.fnmatchcase(part, body[3:]) for part in parts)
        ):
            verdict = not negate
    return verdict


def test_dockerignore_keeps_what_pip_install_needs() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", "setup.py"}
    readme = pyproject["project"].get("readme")
    if isinstance(readme, str):
        needed.add(readme)
    package_dirs = pyproject.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    needed |= {directory.split("/")[0] for directory in package_dirs.values()}
    for directory in set(package_dirs.values()):
        for path in (ROOT / directory).glob("*"):
            if path.is_file() and path.suffix in {".py", ".yaml", ".lark", ".json"} and path.name != native.MANIFEST:
                needed.add(str(path.relative_to(ROOT)))
    left_out = sorted(p for p in needed if _ignored(p, patterns))
    assert not left_out, f".dockerignore leaves out files `pip install .` needs: {left_out}"
    for heavy in (".venv", ".git", "tests", "spike-0b1802-data", "x.jsonl", "engine/__pycache__", "segments/dna.cpython-311-x86_64-linux-gnu.so", "segments/_native_build.json"):
        assert _ignored(heavy, patterns), f".dockerignore should leave out {heavy}"


# -- Prometheus and Grafana ---------------------------------------------------------------


def test_prometheus_scrapes_every_worker() -> None:
    config = yaml.safe_load(PROMETHEUS_FILE.read_text(encoding="utf-8"))
    jobs = [job for job in config["scrape_configs"] if job["job_name"] == "microseg"]
    assert len(jobs) == 1
    job = jobs[0]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    assert job.get("scheme", "http") == "http"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    expected = {f"{name}:{worker_settings(svc).web_port}" for name, svc in worker_services().items()}
    assert targets == expected, f"scrape targets {sorted(targets)} != workers {sorted(expected)}"

    prometheus = [s for s in services().values() if str(s.get("image", "")).startswith("prom/prometheus:")][0]
    mounts = volume_mounts(prometheus)
    config_target = next(
        (arg.split("=", 1)[1] for arg in prometheus.get("command") or [] if arg.startswith("--config.file=")),
        "/etc/prometheus/prometheus.yml",
    )
    assert mounts.get(config_target) == "./deploy/prometheus.yml"


def _metric_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        if family.type == "counter":
            names |= {family.name + "_total", family.name + "_created"}
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_sum", "_count", "_created")}
        else:
            names.add(family.name)
    return names


def test_dashboard_queries_name_real_metrics() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    known = _metric_names()
    used = set()
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used |= set(re.findall(r"\bmicroseg_[a-z0-9_]+", target["expr"]))
    assert used, "the dashboard queries no microseg metric"
    assert not used - known, f"dashboard queries metrics the worker does not export: {sorted(used - known)}"
    for required in (
        "microseg_events_processed_total",
        "microseg_events_rejected_total",
        "microseg_processing_seconds_bucket",
        "microseg_produce_to_output_seconds_bucket",
        "microseg_segment_population",
        "microseg_segment_transitions_total",
        "microseg_messages_decided_total",
        "microseg_messages_suppressed_total",
        "microseg_consumer_lag",
        "microseg_rules_version_info",
    ):
        assert required in used, f"the dashboard should show {required}"
    datasource = yaml.safe_load((ROOT / "deploy" / "grafana" / "datasource.yml").read_text(encoding="utf-8"))
    uids = {d["uid"] for d in datasource["datasources"]}
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] in uids


# -- docs/operations.md -----------------------------------------------------------------

_ROW = re.compile(r"^\|\s*`(?P<name>MICROSEG_[A-Z0-9_]+)`\s*\|\s*(?P<default>[^|]*?)\s*\|", re.MULTILINE)


def _default_matches(cell: str, default: Any) -> bool:
    text = cell.strip().strip("`")
    if default is None:
        return text == "unset"
    if isinstance(default, bool):
        return text == str(default).lower()
    if isinstance(default, (int, float)):
        try:
            return float(text.replace("_", "").replace(",", "")) == float(default)
        except ValueError:
            return False
    if isinstance(default, Path):
        return Path(text) == default
    return text == str(default)


def test_operations_doc_lists_every_setting_with_its_default() -> None:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    rows = [(m.group("name"), m.group("default")) for m in _ROW.finditer(text)]
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), "a variable is listed twice"
    assert set(names) == set(SETTINGS_ENV), (
        f"missing from docs/operations.md: {sorted(set(SETTINGS_ENV) - set(names))}; "
        f"not settings: {sorted(set(names) - set(SETTINGS_ENV))}"
    )
    wrong = [
        (name, cell, Settings.model_fields[SETTINGS_ENV[name]].default)
        for name, cell in rows
        if not _default_matches(cell, Settings.model_fields[SETTINGS_ENV[name]].default)
    ]
    assert not wrong, f"defaults in docs/operations.md differ from Settings: {wrong}"


def test_operations_doc_covers_endpoints_and_links() -> None:
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    for needle in ("/metrics", "/health", "GET /health/ready", "/segments", "GET /customers/{id}", "DELETE /customers/{id}", "Authorization: Bearer"):
        assert needle in text, f"docs/operations.md should mention {needle}"
    for target in re.findall(r"\]\(((?!https?:)[^)#\s]+)", text):
        assert (OPERATIONS_DOC.parent / target).exists(), f"docs/operations.md links to a missing file: {target}"
    for family in Metrics().registry.collect():
        assert family.name in text, f"docs/operations.md should explain metric {family.name}"
