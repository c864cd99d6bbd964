"""`/metrics`, scraped by a real Prometheus server from a gateway of two workers.

Known traffic (whole answers, streams, upstream errors, bad requests) goes through the
gateway in front of the fake upstream; Prometheus's query API must then report exactly
what was sent, on the metrics port (no key) and on the main port (the admin key).
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import orjson
import pytest
import yaml

from tests.conftest import ROOT, Service, free_port, start_gateway, stop, wait_http

PROMETHEUS = "/usr/bin/prometheus"
MESSAGES = [{"role": "user", "content": "Say hello"}]
PROMPT_TOKENS, COMPLETION_TOKENS = 14, 30  # the usage of the `text-basic` recording
CHAT = 'endpoint="/v1/chat/completions"'


@dataclass
class Prometheus:
    process: subprocess.Popen[bytes]
    url: str

    def value(self, query: str) -> float | None:
        reply = httpx.get(self.url + "/api/v1/query", params={"query": query}, timeout=10)
        result = reply.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else None


@dataclass
class Gateway:
    service: Service
    metrics_port: int

    def snapshots(self) -> list[Path]:
        """Each live worker's metrics file, from the directory the supervisor logged."""
        found = re.search(r"workers share metrics in (\S+)", self.service.output())
        assert found, self.service.output()
        return sorted(Path(found.group(1)).glob("worker-*.json"))


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service) -> Iterator[Gateway]:
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    metrics_port = free_port()
    config = {
        "local": {"enabled": False},
        "server": {"workers": 2},
        "metrics": {"port": metrics_port},
        "usage": {"flush_seconds": 0.1},
        "providers": {
            "fake": {
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": ["*"],
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("metrics"), config)
    yield Gateway(service, metrics_port)
    stop(service.process)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, gateway: Gateway) -> Iterator[Prometheus]:
    work = tmp_path_factory.mktemp("prometheus")
    target = [f"127.0.0.1:{gateway.metrics_port}"]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "port", "static_configs": [{"targets": target}]},
            {
                "job_name": "admin",
                "authorization": {"type": "Bearer", "credentials": gateway.service.keys["admin"]},
                "static_configs": [{"targets": [f"127.0.0.1:{gateway.service.port}"]}],
            },
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = work / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(process, f"http://127.0.0.1:{port}")
    try:
        wait_http(server.url + "/-/ready", process, log)
        yield server
    finally:
        stop(process)


@dataclass
class Sent:
    answers: int = 0
    streams: int = 0
    upstream_errors: int = 0
    bad_requests: int = 0


def _traffic(service: Service, sent: Sent, lock: threading.Lock) -> None:
    """One client's share: a whole answer, a stream, an upstream 500, a bad request."""
    client = openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)
    answer = client.chat.completions.create(model="text-basic", messages=MESSAGES)
    assert answer.usage is not None and answer.usage.completion_tokens == COMPLETION_TOKENS
    chunks = list(
        client.chat.completions.create(model="text-basic", messages=MESSAGES, stream=True)
    )
    assert chunks
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="status-500", messages=MESSAGES)
    bad = httpx.post(
        service.base_url + "/chat/completions",
        json={"model": "text-basic"},
        headers={"Authorization": f"Bearer {service.key}"},
    )
    assert bad.status_code == 400
    client.close()
    with lock:
        sent.answers += 1
        sent.streams += 1
        sent.upstream_errors += 1
        sent.bad_requests += 1


def _served_chat(snapshot: Path) -> float:
    data = orjson.loads(snapshot.read_bytes())
    return sum(
        value
        for labels, value in data.get("savegate_requests", [])
        if labels[0] == "/v1/chat/completions"
    )


def _send_until_both_workers_served(gateway: Gateway) -> Sent:
    sent, lock = Sent(), threading.Lock()
    for _ in range(20):  # the kernel decides which worker accepts each connection
        threads = [
            threading.Thread(target=_traffic, args=(gateway.service, sent, lock)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        time.sleep(1.2)  # a worker writes its snapshot every second
        snapshots = gateway.snapshots()
        if len(snapshots) == 2 and all(_served_chat(path) for path in snapshots):
            return sent
    pytest.fail("one worker served every request")


def _settled(prometheus: Prometheus, query: str, expected: float, timeout: float = 30) -> float:
    """The query's value once it reached `expected` (or the last value seen)."""
    deadline = time.monotonic() + timeout
    value = prometheus.value(query)
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.5)
        value = prometheus.value(query)
    return value or 0.0


def test_prometheus_sees_exactly_the_traffic_of_both_workers(
    gateway: Gateway, prometheus: Prometheus
) -> None:
    sent = _send_until_both_workers_served(gateway)
    ok = sent.answers + sent.streams
    for job in ("port", "admin"):
        where = f'job="{job}",{CHAT}'
        assert (
            _settled(
                prometheus,
                f'sum(savegate_requests_total{{{where},status_class="2xx",deployment="fake"}})',
                ok,
            )
            == ok
        )
        assert (
            prometheus.value(f'sum(savegate_requests_total{{{where},status_class="5xx"}})')
            == sent.upstream_errors
        )
        assert (
            prometheus.value(f'sum(savegate_requests_total{{{where},status_class="4xx"}})')
            == sent.bad_requests
        )
        assert (
            prometheus.value(f'sum(savegate_input_tokens_total{{job="{job}",model="*"}})')
            == ok * PROMPT_TOKENS
        )
        assert (
            prometheus.value(f'sum(savegate_output_tokens_total{{job="{job}",provider="fake"}})')
            == ok * COMPLETION_TOKENS
        )
        assert (
            prometheus.value(f'sum(savegate_errors_total{{{where},type="upstream_error"}})')
            == sent.upstream_errors
        )
        assert prometheus.value(f"sum(savegate_errors_total{{{where}}})") == (
            sent.upstream_errors + sent.bad_requests
        )
        assert (
            prometheus.value(
                f'sum(savegate_upstream_latency_seconds_count{{job="{job}",deployment="fake"}})'
            )
            == ok + sent.upstream_errors
        )
        assert (
            prometheus.value(f'sum(savegate_time_to_first_token_seconds_count{{job="{job}"}})')
            == sent.streams
        )
        assert prometheus.value(f"sum(savegate_gateway_overhead_seconds_count{{{where}}})") == ok
        # Gauges of live workers: each sees the one deployment in one state (the upstream
        # errors may have cooled it down in either).
        assert prometheus.value(f'sum(savegate_deployment_state{{job="{job}"}})') == 2
    rows = ok + sent.upstream_errors  # every upstream attempt is metered
    assert _settled(prometheus, 'sum(savegate_usage_rows_written_total{job="port"})', rows) == rows


def test_metrics_on_the_main_port_need_the_admin_key(gateway: Gateway) -> None:
    url = gateway.service.url + "/metrics"
    assert httpx.get(url).status_code == 401
    user = {"Authorization": f"Bearer {gateway.service.key}"}
    assert httpx.get(url, headers=user).status_code == 403
    admin = {"Authorization": f"Bearer {gateway.service.keys['admin']}"}
    answer = httpx.get(url, headers=admin)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE savegate_requests_total counter" in answer.text
    # The metrics port serves nothing else, with or without a key.
    other = httpx.get(f"http://127.0.0.1:{gateway.metrics_port}/v1/models", headers=user)
    assert other.status_code == 404


def test_the_grafana_dashboard_uses_metrics_the_gateway_exports(gateway: Gateway) -> None:
    dashboard = orjson.loads((ROOT / "deploy" / "grafana" / "savegate.json").read_bytes())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"savegate_[a-z_]+", expr)}
    admin = {"Authorization": f"Bearer {gateway.service.keys['admin']}"}
    text = httpx.get(gateway.service.url + "/metrics", headers=admin).text
    families = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    exported = {name for name, kind in families if kind != "histogram"}
    exported |= {f"{name}_bucket" for name, kind in families if kind == "histogram"}
    exported |= {f"{name}_total" for name, kind in families if kind == "counter"}
    assert used and used <= exported, used - exported
