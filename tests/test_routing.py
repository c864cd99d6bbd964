"""Routing and resilience against fake upstreams that inject faults."""

from __future__ import annotations

import os
import secrets
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Service, start_gateway, stop

MESSAGES = [{"role": "user", "content": "hello"}]
ANSWER = "I'm unable to provide real-time weather"


def tag() -> str:
    return secrets.token_hex(4)


@pytest.fixture(scope="module")
def routed(tmp_path_factory, fake_upstream: Service) -> Iterator[Service]:
    for index in (1, 2, 3):
        os.environ[f"POOL_KEY_{index}"] = f"sk-pool-{index}"
    base = fake_upstream.base_url
    group = lambda first, fallback=None: {  # noqa: E731
        "deployments": [{"provider": "primary", "model": first}],
        "fallbacks": [fallback] if fallback else [],
    }
    config = {
        "local": {"enabled": False},
        "usage": {"flush_seconds": 0.1},
        "routing": {
            "attempt_timeout_seconds": 4,
            "backoff_seconds": 0.05,
            "failure_threshold": 2,
            "cooldown_seconds": 30,
        },
        "providers": {
            "primary": {"base_url": base, "models": []},
            "backup": {"base_url": base, "models": ["text-basic"]},
            "pool": {
                "base_url": base,
                "api_key_env": ["POOL_KEY_1", "POOL_KEY_2", "POOL_KEY_3"],
                "models": ["rpm-4"],
            },
        },
        "models": {
            "always-500": group("status-500", "text-basic"),
            "storm-429": group("status-429", "text-basic"),
            "cut": group("reset", "text-basic"),
            "stuck": group("hang", "text-basic"),
            "dead-end": {
                "deployments": [
                    {"provider": "primary", "model": "status-503"},
                    {"provider": "backup", "model": "status-503"},
                ]
            },
            "mid-failure": group("error-after-3", "text-basic"),
            "bad-request": group("status-400", "text-basic"),
            "weighted": {
                "deployments": [
                    {"provider": "primary", "model": "text-basic", "weight": 4},
                    {"provider": "backup", "model": "refusal"},
                ]
            },
        },
        "aliases": {"gpt-4": "text-basic"},
    }
    service = start_gateway(tmp_path_factory.mktemp("routed"), config)
    yield service
    stop(service.process)


def client(service: Service) -> openai.OpenAI:
    return openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)


def usage_rows(service: Service, request_model: str) -> list[dict]:
    headers = {"Authorization": f"Bearer {service.keys['admin']}"}
    rows = httpx.get(
        service.url + "/admin/usage/requests",
        headers=headers,
        params={"model": request_model, "limit": 1000},
    ).json()["data"]
    return rows


@pytest.mark.parametrize("model", ["always-500", "storm-429", "cut", "stuck"])
@pytest.mark.parametrize("stream", [False, True])
def test_failure_before_first_byte_falls_back(routed: Service, model: str, stream: bool):
    if stream:
        text = "".join(
            c.choices[0].delta.content or ""
            for c in client(routed).chat.completions.create(
                model=model, messages=MESSAGES, stream=True
            )
        )
    else:
        text = (
            client(routed)
            .chat.completions.create(model=model, messages=MESSAGES)
            .choices[0]
            .message.content
        )
    assert text.startswith(ANSWER)


def test_each_upstream_call_is_metered_once(routed: Service):
    client(routed).chat.completions.create(model="always-500", messages=MESSAGES, user="x")
    rows = usage_rows(routed, "always-500")
    statuses = Counter(row["status"] for row in rows)
    assert statuses[200] >= 1 and statuses[500] >= 1
    # Only the answering call carries tokens.
    assert all(row["completion_tokens"] == 0 for row in rows if row["status"] != 200)


def test_one_clear_error_when_everything_fails(routed: Service):
    with pytest.raises(openai.InternalServerError) as info:
        client(routed).chat.completions.create(model="dead-end", messages=MESSAGES)
    assert info.value.status_code == 503
    assert info.value.response.headers["x-should-retry"] == "false"
    assert "tried 2 deployments" in info.value.message


def test_client_errors_are_not_retried(routed: Service, fake_upstream: Service):
    before = len(httpx.get(fake_upstream.url + "/_log").json()["requests"])
    with pytest.raises(openai.BadRequestError):
        client(routed).chat.completions.create(model="bad-request", messages=MESSAGES)
    after = len(httpx.get(fake_upstream.url + "/_log").json()["requests"])
    assert after - before == 1


def test_mid_stream_failure_never_switches_silently(routed: Service):
    chunks = []
    with pytest.raises(openai.APIError):
        for chunk in client(routed).chat.completions.create(
            model="mid-failure", messages=MESSAGES, stream=True
        ):
            chunks.append(chunk)
    assert len(chunks) == 3


def test_failing_deployment_cools_down(routed: Service, fake_upstream: Service):
    # "always-500" fails every time: after 2 failures its deployment cools down and
    # requests go straight to the fallback.
    for _ in range(4):
        client(routed).chat.completions.create(model="always-500", messages=MESSAGES)
    log = httpx.get(fake_upstream.url + "/_log").json()["requests"]
    assert [r["body"].get("model") for r in log[-2:]] == ["text-basic", "text-basic"]


def test_recovering_deployment_is_probed_and_back(tmp_path, fake_upstream: Service):
    flaky = f"flaky-{tag()}-2"
    config = {
        "local": {"enabled": False},
        "routing": {"backoff_seconds": 0, "failure_threshold": 2, "cooldown_seconds": 1},
        "providers": {
            "a": {"base_url": fake_upstream.base_url, "models": []},
            "b": {"base_url": fake_upstream.base_url, "models": ["text-basic"]},
        },
        "models": {
            "m": {"deployments": [{"provider": "a", "model": flaky}], "fallbacks": ["text-basic"]}
        },
    }
    service = start_gateway(tmp_path, config)
    try:
        for _ in range(3):  # two failures open the circuit; the third skips it
            client(service).chat.completions.create(model="m", messages=MESSAGES)
        time.sleep(1.2)  # cooldown over: the next request probes and succeeds
        client(service).chat.completions.create(model="m", messages=MESSAGES)
        log = httpx.get(fake_upstream.url + "/_log").json()["requests"]
        assert [r["body"].get("model") for r in log[-1:]] == [flaky]
    finally:
        stop(service.process)


def test_pooled_keys_multiply_the_upstream_limit(routed: Service, fake_upstream: Service):
    answers = [
        client(routed).chat.completions.create(model="rpm-4", messages=MESSAGES) for _ in range(12)
    ]
    assert len(answers) == 12  # 3 keys x 4 RPM, no 429 reached the client
    log = httpx.get(fake_upstream.url + "/_log").json()["requests"]
    used = Counter(r["authorization"] for r in log if r["body"].get("model") == "rpm-4")
    assert set(used) == {"Bearer sk-pool-1", "Bearer sk-pool-2", "Bearer sk-pool-3"}
    with pytest.raises(openai.RateLimitError):
        client(routed).chat.completions.create(model="rpm-4", messages=MESSAGES)


def test_weighted_strategy_follows_weights(routed: Service):
    models = Counter(
        client(routed)
        .chat.completions.create(model="weighted", messages=MESSAGES)
        .choices[0]
        .message.refusal
        is None
        for _ in range(100)
    )
    assert 65 <= models[True] <= 95  # weight 4 : 1 → about 80 %


def test_alias(routed: Service):
    answer = client(routed).chat.completions.create(model="gpt-4", messages=MESSAGES)
    assert answer.choices[0].message.content.startswith(ANSWER)
    assert "gpt-4" in [m.id for m in client(routed).models.list()]


def test_attempt_timeout_bounds_a_hang(routed: Service):
    started = time.monotonic()
    client(routed).chat.completions.create(model="stuck", messages=MESSAGES)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("continue_streams", [False, True])
def test_mid_stream_continuation_on_a_fallback(
    tmp_path, fake_upstream: Service, continue_streams: bool
):
    config = {
        "local": {"enabled": False},
        "routing": {"continue_streams": continue_streams},
        "providers": {
            "a": {"base_url": fake_upstream.base_url, "models": []},
            "b": {"base_url": fake_upstream.base_url, "models": ["text-basic"]},
        },
        "models": {
            "m": {
                "deployments": [{"provider": "a", "model": "drop-after-6"}],
                "fallbacks": ["text-basic"],
            }
        },
    }
    service = start_gateway(tmp_path, config)
    try:
        chunks = []
        stream = client(service).chat.completions.create(model="m", messages=MESSAGES, stream=True)
        if not continue_streams:
            with pytest.raises(openai.APIError):
                chunks.extend(stream)
            return
        chunks.extend(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        partial = "I'm unable to provide real"
        assert text.startswith(partial + ANSWER)  # the fake answers the same text again
        assert len({(c.id, c.created, c.model) for c in chunks}) == 1
        assert sum(1 for c in chunks if c.choices[0].delta.role) == 1
        assert chunks[-1].choices[0].finish_reason == "stop"
        sent = httpx.get(fake_upstream.url + "/_log").json()["requests"][-1]["body"]
        assert sent["model"] == "text-basic"
        assert sent["messages"][-2] == {"role": "assistant", "content": partial}
        assert "Continue it exactly" in sent["messages"][-1]["content"]
    finally:
        stop(service.process)
