"""The upstream HTTP client (`savegate.httpclient`) against real servers: TLS, keep-alive
connections the upstream closes, compression, read timeouts and the connection limit."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.conftest import Service, self_signed, start_fake_upstream, start_gateway, stop
from tests.fakes.upstream import assemble, fixture_events

MESSAGES = [{"role": "user", "content": "hello"}]
ANSWER = assemble(fixture_events("text-basic"))["choices"][0]["message"]["content"]


def client(service: Service) -> openai.OpenAI:
    return openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)


def gateway_for(workdir: Path, upstream: Service, env: dict[str, str] | None = None, **provider):
    config = {
        "local": {"enabled": False},
        "providers": {"fake": {"base_url": upstream.base_url, "models": ["*"], **provider}},
    }
    return start_gateway(workdir, config, env=env)


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Path]]:
    """The fake upstream over HTTPS, with a self-signed certificate for 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("tls-upstream")
    cert, key = self_signed(workdir)
    service = start_fake_upstream(workdir, "--certfile", str(cert), "--keyfile", str(key), tls=True)
    yield service, cert
    stop(service.process)


def test_https_upstream_with_a_trusted_certificate(tmp_path: Path, tls_upstream):
    upstream, cert = tls_upstream
    gateway = gateway_for(tmp_path, upstream, env={"SSL_CERT_FILE": str(cert)})
    try:
        answer = client(gateway).chat.completions.create(model="text-basic", messages=MESSAGES)
        assert answer.choices[0].message.content == ANSWER
        stream = client(gateway).chat.completions.create(
            model="text-basic", messages=MESSAGES, stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream) == ANSWER
    finally:
        stop(gateway.process)


def test_https_upstream_with_an_untrusted_certificate_is_refused(tmp_path: Path, tls_upstream):
    upstream, _ = tls_upstream
    gateway = gateway_for(tmp_path, upstream)
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            client(gateway).chat.completions.create(model="text-basic", messages=MESSAGES)
        assert caught.value.status_code == 502
        assert caught.value.body["code"] == "upstream_unavailable"
    finally:
        stop(gateway.process)


def test_connection_the_upstream_closed_while_idle_is_replaced(tmp_path: Path):
    upstream = start_fake_upstream(tmp_path / "upstream", "--keep-alive", "0.3")
    gateway = gateway_for(tmp_path / "gateway", upstream)
    try:
        for _ in range(3):
            answer = client(gateway).chat.completions.create(model="text-basic", messages=MESSAGES)
            assert answer.choices[0].message.content == ANSWER
            time.sleep(0.6)  # the upstream has closed the kept-alive connection by now
    finally:
        stop(gateway.process)
        stop(upstream.process)


def test_gzip_encoded_answer_is_decoded(relay_gateway: Service):
    answer = client(relay_gateway).chat.completions.create(
        model="text-basic@gzip", messages=MESSAGES
    )
    assert answer.choices[0].message.content == ANSWER


def test_read_timeout_ends_a_silent_upstream(tmp_path: Path, fake_upstream: Service):
    gateway = gateway_for(tmp_path, fake_upstream, timeout_seconds=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as caught:
            client(gateway).chat.completions.create(model="hang", messages=MESSAGES)
        assert caught.value.status_code == 504
        assert caught.value.body["code"] == "upstream_timeout"
        assert time.monotonic() - started < 10  # retried, but never waits for the hang
    finally:
        stop(gateway.process)


def test_connection_limit_queues_requests_rather_than_failing(
    tmp_path: Path, fake_upstream: Service
):
    gateway = gateway_for(tmp_path, fake_upstream, max_connections=2)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            answers = list(
                pool.map(
                    lambda _: client(gateway).chat.completions.create(
                        model="slow-first-300", messages=MESSAGES
                    ),
                    range(8),
                )
            )
        assert all(a.choices[0].message.content == ANSWER for a in answers)
        # Two connections serve 8 answers of 0.3 s each: four rounds at least.
        assert time.monotonic() - started >= 1.2
    finally:
        stop(gateway.process)
