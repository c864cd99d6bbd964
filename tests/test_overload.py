"""`server.max_inflight`: past it a worker refuses new requests at once, 503 with
`retry-after` in OpenAI's error shape, rather than queueing them; probes still answer."""

from __future__ import annotations

import threading

import httpx
import openai

from tests.conftest import Service, start_gateway, stop

MESSAGES = [{"role": "user", "content": "hello"}]


def test_requests_past_max_inflight_get_503_at_once(tmp_path, fake_upstream: Service):
    config = {
        "local": {"enabled": False},
        "server": {"max_inflight": 2},
        "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["*"]}},
    }
    service = start_gateway(tmp_path, config)
    headers = {"Authorization": f"Bearer {service.key}"}
    url = service.base_url + "/chat/completions"
    streaming = threading.Barrier(3, timeout=30)
    release = threading.Event()
    bodies: list[bytes] = []

    def slow_stream() -> None:
        body = {"model": "slow", "messages": MESSAGES, "stream": True}  # a minute of ticks
        with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
            chunks = response.iter_bytes()
            bodies.append(next(chunks))
            streaming.wait()
            release.wait(timeout=60)

    threads = [threading.Thread(target=slow_stream) for _ in range(2)]
    try:
        for thread in threads:
            thread.start()
        streaming.wait()  # both slots held by streams
        sdk = openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)
        for _ in range(5):
            refused = httpx.post(
                url, json={"model": "text-basic", "messages": MESSAGES}, headers=headers, timeout=5
            )
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "1"
            assert refused.headers["x-request-id"].startswith("req_")
            error = refused.json()["error"]
            assert error["code"] == "server_overloaded" and error["type"] == "server_error"
        try:
            sdk.chat.completions.create(model="text-basic", messages=MESSAGES)
            raise AssertionError("not refused")
        except openai.InternalServerError as exc:
            assert exc.status_code == 503
        # The Messages API is refused in its own dialect, as Anthropic's SDK expects.
        messages = httpx.post(
            service.base_url + "/messages",
            json={"model": "text-basic", "max_tokens": 5, "messages": MESSAGES},
            headers={"x-api-key": service.key},
        )
        assert messages.status_code == 503 and messages.headers["retry-after"] == "1"
        assert messages.json()["error"]["type"] == "overloaded_error"
        # A body the worker never reads: refused before it is sent.
        big = httpx.post(url, content=b"x" * 5_000_000, headers=headers, timeout=10)
        assert big.status_code == 503
        for probe in ("/health", "/health/live", "/health/ready"):
            assert httpx.get(service.url + probe).status_code == 200, probe
        release.set()
        for thread in threads:
            thread.join(timeout=60)
        # The slots are free again (once the worker has seen the streams' clients go: the
        # SDK's retries, which honour retry-after, cover the moment until it has).
        sdk = openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=5)
        answer = sdk.chat.completions.create(model="text-basic", messages=MESSAGES)
        assert answer.choices[0].message.content
    finally:
        release.set()
        stop(service.process)
    assert len(bodies) == 2 and all(b.startswith(b"data: ") for b in bodies)
