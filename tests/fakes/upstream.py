"""A fake upstream that replays real recorded streams byte for byte: OpenAI chat
completions here, Anthropic Messages in `anthropic.py`, Gemini in `gemini.py`, the
Responses API in `responses.py`.

Run as `python -m tests.fakes.upstream --port N`. The requested model picks the
behaviour:
- `<fixture name>` (e.g. `text-basic`): replay `tests/fixtures/openai-chat-streams/<name>.sse`
  when streaming (without the usage chunk unless `stream_options.include_usage`), or the
  same answer assembled into one `chat.completion` when not;
- `status-<code>`: answer that HTTP status with an OpenAI error body;
- `drop-after-<n>`: stream n chunks of `text-basic`, then cut the connection;
- `error-after-<n>`: stream n chunks, then an in-stream error object;
- `slow`: one chunk every 50 ms for a minute, for disconnect tests;
- `ticks-<n>`: like `slow` but n chunks, then the finish and `[DONE]` (not streaming:
  `text-basic`'s answer after as long);
- `slow-json`: answer a non-streaming request only after 30 s;
- `tool-call-first`: `tool-call-single`, calling the request's first tool by its name;
- `<fixture>@cached-<n>`: the fixture, n of its prompt tokens reported as cached.
Images, audio and moderations are answered by `media.py`, stored Responses API
responses by `responses.py`.
`GET /_log` returns what it received and saw (requests, disconnects).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gzip
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from tests.fakes import anthropic, batches, faults, gemini, media, openai_extra, responses
from tests.fakes.recordings import sse_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openai-chat-streams"
LOG: dict[str, list[Any]] = {
    "requests": [],
    "disconnects": [],
    "completed": [],
    "webhooks": [],
    "stored": [],  # calls on stored responses (`responses.stored`)
}


def fixture_events(name: str) -> list[bytes]:
    return sse_events(FIXTURES / f"{name}.sse")


def is_usage_event(event: bytes) -> bool:
    return event.startswith(b"data: {") and b'"choices":[]' in event


def assemble(events: list[bytes]) -> dict[str, Any]:
    """Fold a recorded stream into the non-streaming answer it stands for."""
    choices: dict[int, dict[str, Any]] = {}
    head: dict[str, Any] = {}
    usage = None
    for event in events:
        payload = event[len(b"data: ") :].strip()
        if payload == b"[DONE]":
            continue
        chunk = orjson.loads(payload)
        head = head or chunk
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk["choices"]:
            state = choices.setdefault(
                choice["index"],
                {
                    "index": choice["index"],
                    "message": {"role": "assistant", "content": None, "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                },
            )
            delta = choice["delta"]
            message = state["message"]
            for field in ("content", "refusal"):
                if delta.get(field):
                    message[field] = (message[field] or "") + delta[field]
            for call in delta.get("tool_calls") or []:
                calls = message.setdefault("tool_calls", [])
                if call["index"] >= len(calls):
                    calls.append(
                        {
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    )
                calls[call["index"]]["function"]["arguments"] += call["function"].get(
                    "arguments", ""
                )
            if choice.get("finish_reason"):
                state["finish_reason"] = choice["finish_reason"]
    return {
        "id": head["id"],
        "object": "chat.completion",
        "created": head["created"],
        "model": head["model"],
        "choices": [choices[i] for i in sorted(choices)],
        "usage": usage,
    }


async def send_json(
    send: Any, status: int, body: Any, headers: list[tuple[bytes, bytes]] = ()
) -> None:  # type: ignore[assignment]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    raw = orjson.dumps(body)
    if (b"content-encoding", b"gzip") in headers:
        raw = gzip.compress(raw)
    await send({"type": "http.response.body", "body": raw})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["path"] == "/_log":
        await send_json(send, 200, LOG)
        return
    if scope["path"] == "/_release":  # a held stream (`*-hold`) may go on
        media.RELEASE.set()
        await send_json(send, 200, {})
        return
    parts = []  # joined once: an upload may be large
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(parts)
    if scope["path"].startswith(("/v1/files", "/v1/batches", "/_batches")):
        await batches.handle(scope, body, send)
        return
    if scope["path"].startswith(("/v1/images/", "/v1/audio/", "/v1/moderations")):
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        await media.handle(scope["path"], headers, body, send, LOG)
        return
    if scope["path"].startswith("/v1/responses/"):
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        await responses.stored(scope, headers.get("authorization"), send, LOG)
        return
    request = orjson.loads(body)
    if scope["path"] == "/_webhook":
        LOG["webhooks"].append(request)
        await send_json(send, 200, {})
        return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    LOG["requests"].append(
        {
            "path": scope["path"],
            "body": request,
            "raw": body.decode(),
            "headers": headers,
            "authorization": headers.get("authorization"),
        }
    )
    if ":" in scope["path"]:
        await gemini.handle(scope["path"], scope["query_string"], send)
        return
    if scope["path"].endswith("/messages"):
        await anthropic.handle(request, send)
        return
    model: str = request["model"]
    if model.startswith("status-"):
        status = int(model.removeprefix("status-"))
        extra = [(b"retry-after", b"1")] if status == 429 else []
        await send_json(
            send,
            status,
            {
                "error": {
                    "message": f"fake upstream says {status}",
                    "type": "fake_error",
                    "param": None,
                    "code": f"fake_{status}",
                }
            },
            extra,
        )
        return
    echoed = faults.echo(model, headers)
    if echoed is not None:
        status, raw, response_headers = echoed
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": raw})
        return
    fault = await faults.inject(model, headers.get("authorization"))
    if fault is not None:
        await send_json(send, *fault)
        return
    if model == "slow-json":
        await hold_until_disconnect(model, receive)
        return
    if scope["path"].endswith("/responses"):
        await responses.handle(request, headers.get("authorization"), send)
        return
    if scope["path"].endswith("/embeddings"):
        await send_json(send, 200, openai_extra.embeddings_body(request))
        return
    if scope["path"].endswith("/v1/completions"):
        await legacy(request, send)
        return
    name = faults.replay_name(model)
    if model.startswith(("drop-after-", "error-after-", "echo-", "slow", "ticks-")):
        name = "text-basic"
    if model == "tool-call-first":
        name = "tool-call-single"
    events = fixture_events(name)
    if model == "echo-ok":
        events = faults.echo_events(events, headers.get("authorization") or "")
    if model == "tool-call-first":
        events = openai_extra.call_first_tool(events, request)
    if "@cached-" in model:
        events = openai_extra.with_cached_tokens(events, model)
    extra = faults.rate_headers(model, headers.get("authorization"))
    if model.endswith("@gzip"):
        extra.append((b"content-encoding", b"gzip"))
    if not request.get("stream"):
        if model.startswith("ticks-"):  # as long as its stream would take
            await asyncio.sleep(0.05 * int(model.removeprefix("ticks-")))
        await send_json(send, 200, assemble(events), extra)
        return
    if not (request.get("stream_options") or {}).get("include_usage"):
        events = [event for event in events if not is_usage_event(event)]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), *extra],
        }
    )
    await stream(model, events, receive, send, headers)


async def legacy(request: dict[str, Any], send: Any) -> None:
    events = fixture_events(request["model"])
    if not request.get("stream"):
        await send_json(send, 200, openai_extra.legacy_completion(assemble(events)))
        return
    include_usage = (request.get("stream_options") or {}).get("include_usage", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream; charset=utf-8")],
        }
    )
    for event in openai_extra.legacy_events(events, include_usage):
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def hold_until_disconnect(model: str, receive: Any) -> None:
    try:
        message = await asyncio.wait_for(receive(), timeout=30)
    except TimeoutError:
        return
    if message["type"] == "http.disconnect":
        LOG["disconnects"].append(model)


async def stream(
    model: str, events: list[bytes], receive: Any, send: Any, headers: dict[str, str]
) -> None:
    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.create_task(watch())
    try:
        if model.startswith("drop-after-"):
            for event in events[: int(model.removeprefix("drop-after-"))]:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            raise ConnectionAbortedError("cut on purpose")
        if model.startswith(("error-after-", "echo-after-")):
            for event in events[: int(model.rpartition("-")[2])]:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            error = {
                "error": {
                    "message": "fake upstream failed mid-stream",
                    "type": "server_error",
                    "param": None,
                    "code": "fake_mid",
                }
            }
            if model.startswith("echo-"):
                error = faults.echoed_error(headers)
            await send(
                {"type": "http.response.body", "body": b"data: " + orjson.dumps(error) + b"\n\n"}
            )
            return
        if model == "slow" or model.startswith("ticks-"):
            template = orjson.loads(events[1][len(b"data: ") :])
            ticks = int(model.removeprefix("ticks-")) if model != "slow" else 1200
            await send({"type": "http.response.body", "body": events[0], "more_body": True})
            for i in range(ticks):
                if watcher.done():
                    LOG["disconnects"].append(model)
                    return
                chunk = copy.deepcopy(template)
                chunk["choices"][0]["delta"] = {"content": f" tick{i}"}
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + orjson.dumps(chunk) + b"\n\n",
                        "more_body": True,
                    }
                )
                await asyncio.sleep(0.05)
            events = [
                event
                for event in events
                if b'"finish_reason":"' in event
                or event.startswith(b"data: [DONE]")
                or is_usage_event(event)
            ]
        for write in faults.reframe(model, events):
            await send({"type": "http.response.body", "body": write, "more_body": True})
            if "@split-" in model:
                await asyncio.sleep(0.001)  # apart, so that the gateway reads them apart
        await send({"type": "http.response.body", "body": b""})
        LOG["completed"].append(model)
    finally:
        watcher.cancel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--certfile", help="serve HTTPS with this certificate")
    parser.add_argument("--keyfile")
    parser.add_argument("--keep-alive", type=float, default=5, help="idle seconds before closing")
    args = parser.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        lifespan="on",
        ssl_certfile=args.certfile,
        ssl_keyfile=args.keyfile,
        timeout_keep_alive=args.keep_alive,
    )


if __name__ == "__main__":
    main()
