"""The console's charts from a real Prometheus (Debian's ``prometheus``) scraping a live worker,
and the fall-back to the worker's own snapshots, said on the page, when Prometheus does not answer."""

from __future__ import annotations

import asyncio
import json
from html import unescape
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from microseg.engine.console.pages import console_app
from microseg.engine.kafka.broker import free_port
from microseg.engine.settings import Settings
from microseg.engine.state import MemoryStore
from microseg.engine.worker.auth import Guard
from microseg.engine.worker.delivery import MemorySink
from microseg.engine.worker.runtime import Runtime
from microseg.segments.testing import load_rules_text
from microseg.segments.view import iso

from tests.conftest import send_events
from tests.engine.console.topics import own_topics

READ = "read-0a9d-console-prometheus-reader"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode()


def _chart(html: str, name: str) -> dict[str, Any]:
    found = re.search(rf'<script type="application/json" id="{name}">(.*?)</script>', html, re.S)
    assert found, name
    return json.loads(found[1])


@pytest.mark.broker
@pytest.mark.slow
def test_population_charts_come_from_prometheus_when_it_scrapes_the_workers(broker: str, workers: Any, unique_topics: dict[str, str], tmp_path: Path) -> None:
    import os

    if not Path(PROMETHEUS).exists():
        if os.environ.get("CI"):
            pytest.fail("this test needs Debian's prometheus (apt-get install prometheus)")
        pytest.skip("this test needs Debian's prometheus (apt-get install prometheus)")
    port = free_port()
    env = {**unique_topics, "MICROSEG_READ_TOKEN": READ, "MICROSEG_CONSOLE_PROMETHEUS_URL": f"http://127.0.0.1:{port}", "MICROSEG_CONSOLE_SNAPSHOT_S": "2", "MICROSEG_PARTITIONS": "2"}
    own_topics(env)
    worker = workers(env)
    worker.wait_assigned()
    now = time.time()
    send_events(broker, unique_topics["MICROSEG_INPUT_TOPIC"], [
        {"event_id": f"p{i}", "customer_id": f"cust-{i}", "type": "purchase", "ts": iso(now - 60), "channel": "web", "props": {"order_id": f"o{i}", "amount": 20.0}}
        for i in range(5)
    ])
    deadline = time.monotonic() + 90
    while sum(worker.get("/segments")["segments"].values()) == 0:
        assert time.monotonic() < deadline, "events not processed"
        time.sleep(0.5)
    populations = worker.get("/segments")["segments"]
    segment = max(populations, key=lambda s: populations[s])

    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: microseg\n    static_configs:\n      - targets: ['127.0.0.1:{worker.port}']\n")
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        query = urllib.parse.quote(f'sum(microseg_segment_population{{segment="{segment}"}})')
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = orjson.loads(_get(f"http://127.0.0.1:{port}/api/v1/query?query={query}")[1])
                if answer["data"]["result"]:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "prometheus.log").read_text()[-2000:]
            time.sleep(0.5)
        time.sleep(4)  # a few steps of history
        status, html = _get(f"http://127.0.0.1:{worker.port}/console/segments/{segment}", READ)
        assert status == 200
        assert f"From Prometheus at http://127.0.0.1:{port} (every worker)" in html
        chart = _chart(html, "population-chart")
        values = [v for v in chart["series"][0]["values"] if v is not None]
        assert chart["x"] and values and values[-1] == populations[segment]
        _, overview = _get(f"http://127.0.0.1:{worker.port}/console/segments", READ)
        assert "from Prometheus at" in overview
    finally:
        server.terminate()
        server.wait(20)
        log.close()


def test_without_an_answer_from_prometheus_the_page_says_so_and_shows_the_snapshots(tmp_path: Path) -> None:
    settings = Settings(partitions=1, data_dir=tmp_path, read_token=SecretStr(READ), console_prometheus_url="http://127.0.0.1:1")
    rules = load_rules_text("version: 1\nsegments:\n  - id: buyer\n    when: purchases_total >= 1\n")

    async def go() -> None:
        runtime = Runtime(settings, MemoryStore(), MemorySink(), rules, None)
        await runtime.on_assigned([0])
        await runtime.prepare([0])
        root = web.Application()
        root.add_subapp("/console", console_app(settings, runtime, "127.0.0.1:1", Guard(settings.api_token, settings.read_token)))
        async with TestClient(TestServer(root)) as client:
            html = await (await client.get("/console/segments/buyer", headers={"Authorization": f"Bearer {READ}"})).text()
            assert "this worker's snapshots (Prometheus at http://127.0.0.1:1 did not answer" in unescape(html)
            assert _chart(html, "population-chart")["series"][0]["values"] == [0]

    asyncio.run(go())
