"""The gateway relaying a fake OpenAI upstream that replays real recorded streams."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Service, start_process, stop
from tests.fakes.upstream import assemble, fixture_events, is_usage_event

FIXTURES = [
    "text-basic",
    "json-schema-content",
    "json-object-long",
    "n3-choices",
    "max-tokens-length",
    "refusal",
    "content-logprobs",
    "refusal-logprobs",
    "tool-call-single",
    "tool-call-strict",
    "tool-call-nonstrict",
    "tool-calls-parallel",
]
MESSAGES = [{"role": "user", "content": "hello"}]


def client(service: Service, **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0, **kwargs)


def raw_stream(service: Service, body: dict) -> bytes:
    headers = {"Authorization": f"Bearer {service.key}"}
    with httpx.stream(
        "POST", service.base_url + "/chat/completions", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["x-request-id"].startswith("req_")
        return response.read()


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_bytes_are_the_upstreams(relay_gateway: Service, name: str, include_usage: bool):
    body: dict = {"model": name, "messages": MESSAGES, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    expected = fixture_events(name)
    if not include_usage:
        expected = [event for event in expected if not is_usage_event(event)]
    assert raw_stream(relay_gateway, body) == b"".join(expected)


@pytest.mark.parametrize("framing", ["whole", "split-97", "split-1000", "crlf", "gzip"])
@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_framing_does_not_change_what_the_client_gets(
    relay_gateway: Service, framing: str, include_usage: bool
):
    """Reads holding many events, reads that cut events anywhere, and CRLF framing all
    come out as the upstream's events in OpenAI's exact framing."""
    name = "tool-calls-parallel"
    body: dict = {"model": f"{name}@{framing}", "messages": MESSAGES, "stream": True}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    expected = fixture_events(name)
    if not include_usage:
        expected = [event for event in expected if not is_usage_event(event)]
    assert raw_stream(relay_gateway, body) == b"".join(expected)


@pytest.mark.parametrize("name", FIXTURES)
def test_non_stream_answer_is_the_upstreams(relay_gateway: Service, name: str):
    completion = client(relay_gateway).chat.completions.create(model=name, messages=MESSAGES)
    assert completion.model_dump(exclude_unset=True) == assemble(fixture_events(name))


def test_sdk_stream_helper_final_completion_has_no_duplicates(relay_gateway: Service):
    with client(relay_gateway).chat.completions.stream(
        model="tool-calls-parallel", messages=MESSAGES
    ) as stream:
        final = stream.get_final_completion()
    message = final.choices[0].message
    assert message.role == "assistant"
    calls = [(call.id, call.function.name) for call in message.tool_calls]
    assert calls == [
        ("call_JMW1whyEaYG438VE1OIflxA2", "GetWeatherArgs"),
        ("call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_n3_choices_stream_through_sdk(relay_gateway: Service):
    texts: dict[int, str] = {}
    for chunk in client(relay_gateway).chat.completions.create(
        model="n3-choices", messages=MESSAGES, stream=True, n=3
    ):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert sorted(texts) == [0, 1, 2]
    assert all(texts.values())


@pytest.mark.parametrize(
    ("status", "exception"),
    [
        (400, openai.BadRequestError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (409, openai.ConflictError),
        (422, openai.UnprocessableEntityError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
def test_upstream_status_maps_to_sdk_exception(relay_gateway: Service, status: int, exception):
    with pytest.raises(exception) as info:
        client(relay_gateway).chat.completions.create(model=f"status-{status}", messages=MESSAGES)
    assert info.value.status_code == status
    assert info.value.request_id and info.value.request_id.startswith("req_")
    if status == 429:
        assert info.value.response.headers["retry-after"] == "1"


def test_upstream_refusing_our_credentials_is_not_the_clients_401(relay_gateway: Service):
    with pytest.raises(openai.InternalServerError) as info:
        client(relay_gateway).chat.completions.create(model="status-401", messages=MESSAGES)
    assert info.value.status_code == 502
    assert info.value.code == "upstream_auth_error"


def test_upstream_error_before_first_byte_is_an_http_status_when_streaming(relay_gateway: Service):
    with pytest.raises(openai.RateLimitError):
        client(relay_gateway).chat.completions.create(
            model="status-429", messages=MESSAGES, stream=True
        )


@pytest.mark.parametrize("model", ["drop-after-3", "error-after-3"])
def test_mid_stream_failure_raises_api_error(relay_gateway: Service, model: str):
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client(relay_gateway).chat.completions.create(
            model=model, messages=MESSAGES, stream=True
        ):
            received.append(chunk)
    assert len(received) == 3
    assert not isinstance(info.value, openai.APIStatusError)


def test_upstream_received_the_request_untouched(relay_gateway: Service, fake_upstream: Service):
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    client(relay_gateway).chat.completions.create(
        model="text-basic",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            }
        ],
        tools=tools,
        response_format={"type": "json_object"},
        extra_body={"custom_field": {"kept": True}},
    )
    seen = httpx.get(fake_upstream.url + "/_log").json()["requests"][-1]
    assert seen["body"]["tools"] == tools
    assert seen["body"]["response_format"] == {"type": "json_object"}
    assert seen["body"]["custom_field"] == {"kept": True}
    assert seen["body"]["messages"][0]["content"][1]["image_url"]["url"].startswith("data:")
    assert seen["authorization"] == "Bearer sk-fake-upstream-key"


def _disconnects(fake_upstream: Service, model: str) -> int:
    return httpx.get(fake_upstream.url + "/_log").json()["disconnects"].count(model)


def _wait_for_disconnect(fake_upstream: Service, model: str, before: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _disconnects(fake_upstream, model) > before:
            return
        time.sleep(0.1)
    pytest.fail(f"the upstream never saw the {model} request cancelled")


@pytest.fixture(scope="module")
def stock_uvicorn(relay_gateway: Service) -> Iterator[Service]:
    """The relay gateway's app and store under stock uvicorn: no disconnect signal from
    our server protocol, so the app watches `receive` itself."""
    workdir = relay_gateway.log.parent
    args = [sys.executable, "-m", "tests.stock_uvicorn", "--data-dir", str(workdir / "data")]
    args += ["--config", str(workdir / "gateway.yaml")]
    service = start_process(args, workdir, "stock", "/health")
    service.keys = relay_gateway.keys
    yield service
    stop(service.process)


@pytest.fixture(params=["savegate", "stock-uvicorn"])
def any_server(request: pytest.FixtureRequest) -> Service:
    name = "relay_gateway" if request.param == "savegate" else "stock_uvicorn"
    return request.getfixturevalue(name)


def test_client_disconnect_mid_stream_cancels_upstream(any_server: Service, fake_upstream):
    before = _disconnects(fake_upstream, "slow")
    stream = client(any_server).chat.completions.create(
        model="slow", messages=MESSAGES, stream=True
    )
    for index, _chunk in enumerate(stream):
        if index == 5:
            break
    stream.close()
    _wait_for_disconnect(fake_upstream, "slow", before)


def test_client_disconnect_before_answer_cancels_upstream(any_server: Service, fake_upstream):
    before = _disconnects(fake_upstream, "slow-json")
    with pytest.raises(openai.APITimeoutError):
        client(any_server, timeout=1.0).chat.completions.create(
            model="slow-json", messages=MESSAGES
        )
    _wait_for_disconnect(fake_upstream, "slow-json", before)
