"""Bad input gets a clear OpenAI-style error with the right status; the server keeps serving."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import Service

MESSAGES = [{"role": "user", "content": "hello"}]


def post(service: Service, content: bytes | str, key: str | None = None, **headers: str):
    headers = {"Authorization": f"Bearer {key or service.key}", **headers}
    return httpx.post(
        service.base_url + "/chat/completions", content=content, headers=headers, timeout=30
    )


def assert_error(
    response: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ("{", None, None),
        ("", None, None),
        ("[1, 2]", None, None),
        ('"text"', None, None),
        ('{"messages": [{"role": "user", "content": "x"}]}', None, "model"),
        ('{"model": 42, "messages": []}', "invalid_type", "model"),
        ('{"model": "m"}', "missing_required_parameter", "messages"),
        ('{"model": "m", "messages": "hi"}', "invalid_type", "messages"),
        ('{"model": "m", "messages": []}', "empty_array", "messages"),
        ('{"model": "m", "messages": ["hi"]}', "invalid_type", "messages[0]"),
        (
            '{"model": "m", "messages": [{"content": "x"}]}',
            "missing_required_parameter",
            "messages[0].role",
        ),
        (
            '{"model": "m", "messages": [{"role": "robot", "content": "x"}]}',
            "invalid_value",
            "messages[0].role",
        ),
        (
            '{"model": "m", "messages": [{"role": "user"}]}',
            "missing_required_parameter",
            "messages[0].content",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": 5}]}',
            "invalid_type",
            "messages[0].content",
        ),
        (
            '{"model": "m", "messages": [{"role": "tool", "content": "x"}]}',
            "missing_required_parameter",
            "messages[0].tool_call_id",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}',
            "invalid_type",
            "stream",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], '
            '"stream_options": {"include_usage": true}}',
            "invalid_value",
            "stream_options",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}',
            "invalid_value",
            "temperature",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            "invalid_type",
            "temperature",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}',
            "invalid_value",
            "max_tokens",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 1.5}',
            "invalid_type",
            "n",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": [1]}',
            "invalid_value",
            "stop",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": {}}',
            "invalid_type",
            "tools",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}',
            "missing_required_parameter",
            "tools[0].function.name",
        ),
        (
            '{"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "any"}',
            "invalid_value",
            "tool_choice",
        ),
    ],
)
def test_malformed_requests_get_400(relay_gateway: Service, body: str, code, param):
    error = assert_error(post(relay_gateway, body), 400, code, param)
    assert error["type"] == "invalid_request_error"


def test_oversized_body_gets_413(relay_gateway: Service):
    filler = "x" * (2 * 1024 * 1024)
    body = f'{{"model": "text-basic", "messages": [{{"role": "user", "content": "{filler}"}}]}}'
    assert_error(post(relay_gateway, body), 413)


def test_oversized_body_without_content_length_gets_413(relay_gateway: Service):
    def chunks():
        yield b'{"model": "text-basic", "messages": [{"role": "user", "content": "'
        for _ in range(64):
            yield b"y" * 65536
        yield b'"}]}'

    headers = {"Authorization": f"Bearer {relay_gateway.key}"}
    response = httpx.post(
        relay_gateway.base_url + "/chat/completions", content=chunks(), headers=headers, timeout=30
    )
    assert_error(response, 413)


def test_unknown_model_gets_404_once_providers_are_configured(tmp_path, fake_upstream: Service):
    from tests.conftest import start_gateway, stop

    config = {
        "local": {"enabled": False},
        "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["text-*"]}},
    }
    service = start_gateway(tmp_path, config)
    try:
        client = openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="gpt-nothing", messages=MESSAGES)
        assert info.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("gpt-nothing")
        assert client.models.retrieve("text-basic").id == "text-basic"
        assert client.chat.completions.create(model="text-basic", messages=MESSAGES).choices
    finally:
        stop(service.process)


@pytest.mark.parametrize("path", ["/v1/foo", "/v1/chat/completion", "/nothing"])
def test_unknown_paths_get_openais_404(relay_gateway: Service, path: str):
    response = httpx.post(
        relay_gateway.url + path, json={}, headers={"Authorization": f"Bearer {relay_gateway.key}"}
    )
    error = assert_error(response, 404)
    assert error["message"] == f"Invalid URL (POST {path})"


def test_wrong_method_gets_404(relay_gateway: Service):
    response = httpx.get(relay_gateway.base_url + "/chat/completions")
    assert assert_error(response, 404)["message"] == "Invalid URL (GET /v1/chat/completions)"


def test_server_keeps_serving_after_bad_input(relay_gateway: Service):
    for body in ["{", "[]", '{"model": 1}', "\x00\xff"]:
        post(relay_gateway, body)
    client = openai.OpenAI(api_key=relay_gateway.key, base_url=relay_gateway.base_url)
    assert client.chat.completions.create(model="text-basic", messages=MESSAGES).choices
    assert "Traceback" not in relay_gateway.output()
