"""OpenTelemetry traces, received by an OTLP/HTTP receiver started here and decoded with
the protocol's own messages (`opentelemetry-proto`).

A request's SERVER span continues the caller's `traceparent`; each upstream attempt is
a CLIENT span under it, with the GenAI attributes, and the upstream receives a
`traceparent` naming that span. Prompts and answers appear only with `record_content`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from savegate.observe.export import SpanExporter
from savegate.observe.otlp import SPAN_KIND_SERVER
from savegate.observe.sidecar_process import scope_encoder
from tests.conftest import ROOT, Service, free_port, gone, sidecar_pid, start_gateway, stop

MESSAGES = [{"role": "user", "content": "Say hello, secret-prompt-words"}]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP trace receiver: what it was sent, decoded; taking `delay` seconds
    over each export, as a collector across a network would."""

    def __init__(self, delay: float = 0.0) -> None:
        self.spans: list[Span] = []
        self.resources: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []
        self.content_types: list[str] = []
        self.arrived = threading.Event()  # an export's body came, answered or not yet
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.arrived.set()
                time.sleep(delay)
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver.bodies.append(body)
                receiver.content_types.append(self.headers["content-type"])
                for resource_spans in request.resource_spans:
                    receiver.resources.append(_attributes(resource_spans.resource.attributes))
                    for scope_spans in resource_spans.scope_spans:
                        receiver.spans.extend(scope_spans.spans)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1/traces"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def of_trace(self, trace_id: str, count: int, timeout: float = 20) -> list[Span]:
        """The spans of `trace_id`, once `count` of them came."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [s for s in self.spans if s.trace_id.hex() == trace_id]
            if len(found) >= count:
                return found
            time.sleep(0.1)
        return [s for s in self.spans if s.trace_id.hex() == trace_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind)


def _attributes(attributes: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in attributes}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def _gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: Service,
    receiver: Receiver,
    models: dict[str, Any] | None = None,
    **tracing: Any,
) -> Service:
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    config = {
        "local": {"enabled": False},
        "tracing": {"enabled": True, "endpoint": receiver.url, **tracing},
        "providers": {
            "fake": {
                "base_url": upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": ["*"],
            }
        },
        **({"models": models} if models else {}),
    }
    return start_gateway(tmp_path_factory.mktemp("tracing"), config)


@pytest.fixture(scope="module")
def traced(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service, receiver: Receiver
) -> Iterator[Service]:
    service = _gateway(tmp_path_factory, fake_upstream, receiver)
    yield service
    stop(service.process)


def _upstream_requests(upstream: Service) -> list[dict[str, Any]]:
    return list(httpx.get(upstream.url + "/_log").json()["requests"])


def _client(service: Service, traceparent: str | None = None) -> openai.OpenAI:
    headers = {"traceparent": traceparent} if traceparent else {}
    return openai.OpenAI(
        api_key=service.key, base_url=service.base_url, max_retries=0, default_headers=headers
    )


def test_a_request_continues_the_callers_trace_to_the_upstream(
    traced: Service, receiver: Receiver, fake_upstream: Service
) -> None:
    client = _client(traced, f"00-{TRACE}-{CALLER}-01")
    answer = client.chat.completions.create(model="text-basic", messages=MESSAGES, max_tokens=50)
    server, attempt = _server_and_client(receiver.of_trace(TRACE, 2))
    assert server.parent_span_id.hex() == CALLER
    assert attempt.parent_span_id == server.span_id
    assert server.name == "POST /v1/chat/completions"

    sent = [
        r for r in _upstream_requests(fake_upstream) if TRACE in r["headers"].get("traceparent", "")
    ]
    assert [r["headers"]["traceparent"] for r in sent] == [f"00-{TRACE}-{attempt.span_id.hex()}-01"]

    attributes = _attributes(attempt.attributes)
    assert attempt.name == "chat text-basic"
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.request.model"] == "text-basic"
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.response.model"] == answer.model
    assert attributes["gen_ai.response.id"] == answer.id
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens  # type: ignore[union-attr]
    assert attributes["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens  # type: ignore[union-attr]
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == fake_upstream.port
    top = _attributes(server.attributes)
    assert top["http.response.status_code"] == 200
    assert top["gen_ai.request.model"] == "text-basic"
    assert top["gen_ai.usage.output_tokens"] == answer.usage.completion_tokens  # type: ignore[union-attr]
    assert server.start_time_unix_nano <= attempt.start_time_unix_nano
    assert attempt.end_time_unix_nano <= server.end_time_unix_nano
    assert receiver.resources[-1]["service.name"] == "savegate"
    assert set(receiver.content_types) == {"application/x-protobuf"}


def test_streams_and_failed_attempts_have_their_spans(
    traced: Service, receiver: Receiver, fake_upstream: Service
) -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    client = _client(traced, f"00-{trace}-{CALLER}-01")
    chunks = list(
        client.chat.completions.create(model="text-basic", messages=MESSAGES, stream=True)
    )
    assert chunks
    server, attempt = _server_and_client(receiver.of_trace(trace, 2))
    attributes = _attributes(attempt.attributes)
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["gen_ai.usage.output_tokens"] == 30
    assert attempt.parent_span_id == server.span_id

    failing = "11111111111111111111111111111111"
    with pytest.raises(openai.InternalServerError):
        _client(traced, f"00-{failing}-{CALLER}-01").chat.completions.create(
            model="status-500", messages=MESSAGES
        )
    server, attempt = _server_and_client(receiver.of_trace(failing, 2))
    assert _attributes(attempt.attributes)["error.type"] == "upstream_error"
    assert attempt.status.code == 2  # ERROR
    assert _attributes(server.attributes)["http.response.status_code"] == 500


def test_each_attempt_has_its_own_span_and_the_times_are_the_wall_clocks(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver, fake_upstream: Service
) -> None:
    """A failed deployment, then its fallback: two CLIENT spans of distinct ids under the
    request's, each named in the `traceparent` its upstream got."""
    group = {"deployments": [{"provider": "fake", "model": "status-500"}], "fallbacks": ["m2"]}
    models = {"m": group, "m2": {"deployments": [{"provider": "fake", "model": "text-basic"}]}}
    service = _gateway(tmp_path_factory, fake_upstream, receiver, models=models)
    trace = "55555555555555555555555555555555"
    before = time.time_ns()
    try:
        _client(service, f"00-{trace}-{CALLER}-01").chat.completions.create(
            model="m", messages=MESSAGES
        )
        spans = receiver.of_trace(trace, 3)
    finally:
        stop(service.process)
    after = time.time_ns()
    server = next(s for s in spans if s.kind == Span.SPAN_KIND_SERVER)
    attempts = sorted(
        (s for s in spans if s.kind == Span.SPAN_KIND_CLIENT), key=lambda s: s.start_time_unix_nano
    )
    assert [a.name for a in attempts] == ["chat status-500", "chat text-basic"]
    assert len({server.span_id, *(a.span_id for a in attempts)}) == 3
    assert all(a.parent_span_id == server.span_id for a in attempts)
    sent = [
        r["headers"]["traceparent"]
        for r in _upstream_requests(fake_upstream)
        if trace in r["headers"].get("traceparent", "")
    ]
    assert sent == [f"00-{trace}-{a.span_id.hex()}-01" for a in attempts]
    assert before <= server.start_time_unix_nano <= attempts[0].start_time_unix_nano
    assert attempts[0].end_time_unix_nano <= attempts[1].start_time_unix_nano
    assert attempts[1].end_time_unix_nano <= server.end_time_unix_nano <= after


def test_no_content_is_recorded_unless_asked(
    tmp_path_factory: pytest.TempPathFactory,
    traced: Service,
    receiver: Receiver,
    fake_upstream: Service,
) -> None:
    trace = "22222222222222222222222222222222"
    _client(traced, f"00-{trace}-{CALLER}-01").chat.completions.create(
        model="text-basic", messages=MESSAGES
    )
    spans = receiver.of_trace(trace, 2)
    assert len(spans) == 2
    assert not any(b"secret-prompt-words" in body for body in receiver.bodies)
    assert not any("gen_ai.input.messages" in _attributes(s.attributes) for s in receiver.spans)

    recording = _gateway(tmp_path_factory, fake_upstream, receiver, record_content=True)
    try:
        trace = "33333333333333333333333333333333"
        answer = _client(recording, f"00-{trace}-{CALLER}-01").chat.completions.create(
            model="text-basic", messages=MESSAGES
        )
        _, attempt = _server_and_client(receiver.of_trace(trace, 2))
    finally:
        stop(recording.process)
    attributes = _attributes(attempt.attributes)
    assert "secret-prompt-words" in attributes["gen_ai.input.messages"]
    assert answer.choices[0].message.content in attributes["gen_ai.output.messages"]


def test_an_unsampled_caller_is_followed_and_new_traces_are_sampled(
    traced: Service, receiver: Receiver, fake_upstream: Service
) -> None:
    trace = "44444444444444444444444444444444"
    _client(traced, f"00-{trace}-{CALLER}-00").chat.completions.create(
        model="text-basic", messages=MESSAGES
    )
    _client(traced).chat.completions.create(model="text-basic", messages=MESSAGES)
    sent = _upstream_requests(fake_upstream)[-2:]
    # The caller's unsampled trace goes on upstream, unrecorded here.
    assert sent[0]["headers"]["traceparent"] == f"00-{trace}-{CALLER}-00"
    # A request without a trace starts one (sample_ratio 1.0), and the upstream joins it.
    version, new_trace, span_id, flags = sent[1]["headers"]["traceparent"].split("-")
    assert (version, flags) == ("00", "01")
    server, attempt = _server_and_client(receiver.of_trace(new_trace, 2))
    assert attempt.span_id.hex() == span_id
    assert server.parent_span_id == b""
    time.sleep(1.5)  # an export interval: nothing of the unsampled trace comes
    assert receiver.of_trace(trace, 1, timeout=0) == []


def test_spans_go_in_few_exports_while_requests_keep_coming(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service
) -> None:
    """Spans that come while an export is on its way wait for the next interval (or a
    full batch): one export a second or so, not one after another of a few spans."""
    receiver = Receiver(delay=0.02)
    service = _gateway(tmp_path_factory, fake_upstream, receiver)
    try:
        client = _client(service)
        began = time.monotonic()
        sent = [0] * 8

        def requests(index: int) -> None:  # for 3 s: past a few intervals
            while time.monotonic() < began + 3:
                client.chat.completions.create(model="text-basic", messages=MESSAGES)
                sent[index] += 1

        threads = [threading.Thread(target=requests, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        deadline = time.monotonic() + 20
        while len(receiver.spans) < 2 * sum(sent) and time.monotonic() < deadline:
            time.sleep(0.05)
        seconds = time.monotonic() - began
    finally:
        stop(service.process)
        receiver.close()
    spans = len(receiver.spans)
    assert spans >= 2 * sum(sent) > 1000
    # An export an interval (1 s) and one a full batch (512 spans), and the last at stop.
    assert len(receiver.bodies) <= seconds + 2 + spans // 512, (len(receiver.bodies), seconds)


def test_an_export_on_its_way_at_shutdown_is_let_finish() -> None:
    """Closing the exporter while an export is on its way waits for its answer rather
    than cutting it: its spans are counted exported, and the collector has each once."""
    receiver = Receiver(delay=0.5)
    try:
        exported, dropped = asyncio.run(_export_then_close(receiver, spans=3))
    finally:
        receiver.close()
    assert (exported, dropped) == (3, 0)
    assert len(receiver.spans) == 3


async def _export_then_close(receiver: Receiver, spans: int) -> tuple[int, int]:
    encoder = scope_encoder("savegate-test")
    exporter = SpanExporter(receiver.url, {}, encoder)
    kind = encoder.kind("POST /v1/chat/completions", SPAN_KIND_SERVER, {}, ())
    for index in range(spans):
        ids = index.to_bytes(16, "big")
        exporter.add((ids, ids[8:], None, kind, 1.0, 2.0, (), None, None, None))
    exporter.start()  # its first export goes after its interval
    assert await asyncio.to_thread(receiver.arrived.wait, 10), "no export came"
    await exporter.close()
    return exporter.exported, exporter.dropped


def test_without_tracing_nothing_of_opentelemetry_is_loaded(tmp_path) -> None:
    script = (
        "import sys\n"
        "from savegate.api.asgi import ApiApp\n"
        "from savegate.app import Gateway\n"
        "from savegate.config import Config\n"
        f"ApiApp(Gateway(Config(data_dir={str(tmp_path)!r})))\n"
        "loaded = [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=ROOT, timeout=60)


def _server_and_client(spans: list[Span]) -> tuple[Span, Span]:
    assert sorted(s.kind for s in spans) == [Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT], spans
    server = next(s for s in spans if s.kind == Span.SPAN_KIND_SERVER)
    attempt = next(s for s in spans if s.kind == Span.SPAN_KIND_CLIENT)
    return server, attempt


def test_a_sidecar_that_dies_is_replaced(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service
) -> None:
    """Spans are encoded and exported by the gateway's sidecar process. Killed, it is
    started again, and the next requests' spans arrive as before; the gateway serves meanwhile."""
    receiver = Receiver()
    service = _gateway(tmp_path_factory, fake_upstream, receiver)
    try:
        client = _client(service, f"00-{TRACE}-{CALLER}-01")
        first = sidecar_pid(service)
        client.chat.completions.create(model="text-basic", messages=MESSAGES)
        assert len(receiver.of_trace(TRACE, 2)) == 2
        os.kill(first, signal.SIGKILL)
        assert gone(first, 10)
        client.chat.completions.create(model="text-basic", messages=MESSAGES)  # served
        second = sidecar_pid(service, 2)
        assert second != first
        assert "the sidecar process ended" in service.output()
        client.chat.completions.create(model="text-basic", messages=MESSAGES)
        assert len(receiver.of_trace(TRACE, 4)) >= 4
    finally:
        stop(service.process)
        receiver.close()
    assert gone(second, 10)


def test_a_gateway_that_stops_sends_its_last_spans_and_leaves_no_process(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service
) -> None:
    """SIGTERM: the last requests' spans are handed over and exported before the sidecar
    ends. SIGKILL: the sidecar ends by itself (its pipe closed)."""
    receiver = Receiver()
    service = _gateway(tmp_path_factory, fake_upstream, receiver)
    try:
        client = _client(service, f"00-{TRACE}-{CALLER}-01")
        pid = sidecar_pid(service)
        for _ in range(5):
            client.chat.completions.create(model="text-basic", messages=MESSAGES)
    finally:
        stop(service.process)
    assert gone(pid, 10)
    assert len(receiver.of_trace(TRACE, 10, timeout=0)) == 10
    killed = _gateway(tmp_path_factory, fake_upstream, receiver)
    try:
        pid = sidecar_pid(killed)
        killed.process.kill()
        killed.process.wait(timeout=10)
        assert gone(pid, 10)
    finally:
        stop(killed.process)
        receiver.close()
