"""`savegate chat`: chat with a model in the terminal through a running gateway.

Answers stream as they are written; the conversation is kept until `/reset`; Ctrl-C during
an answer stops it (the connection is closed, so the gateway cancels the upstream call);
`/exit`, Ctrl-D or Ctrl-C at the prompt quit.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import httpx
import orjson

from savegate.config import Config
from savegate.wire.sse import SSEDecoder

EXIT = ("/exit", "/quit")
RESET = "/reset"


def register(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    parser = commands.add_parser("chat", help="chat with a model in the terminal, streaming")
    common(parser)
    parser.add_argument("--model", help="model name (default: the first the key may use)")
    parser.add_argument(
        "--base-url",
        help="the gateway's API (default: $SAVEGATE_BASE_URL, else the configured server's /v1)",
    )
    parser.add_argument("--api-key", help="API key (default: $SAVEGATE_API_KEY)")
    parser.set_defaults(run=run)


class ChatError(Exception):
    """The gateway refused or failed the request; the message says why."""


@dataclass
class Reply:
    text: str = ""
    usage: dict[str, Any] | None = None
    request_id: str | None = None
    stopped: bool = False


def _error(response: httpx.Response) -> ChatError:
    try:
        error = orjson.loads(response.read())["error"]
        where = " ".join(str(part) for part in (response.status_code, error.get("code")) if part)
        return ChatError(f"{where}: {error['message']}")
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ChatError(f"{response.status_code} {response.reason_phrase}")


def first_model(client: httpx.Client) -> str:
    response = client.get("models")
    if response.status_code != 200:
        raise _error(response)
    models = response.json()["data"]
    if not models:
        raise ChatError("this key may use no model: pass --model")
    return str(models[0]["id"])


def stream_reply(
    client: httpx.Client, model: str, messages: list[dict[str, str]], out: TextIO
) -> Reply:
    """Print the answer as it streams; Ctrl-C stops it and keeps what came so far."""
    reply = Reply()
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    try:
        with client.stream("POST", "chat/completions", json=body) as response:
            reply.request_id = response.headers.get("x-request-id")
            if response.status_code != 200:
                raise _error(response)
            decoder = SSEDecoder()
            for chunk in response.iter_bytes():
                for event in decoder.decode(chunk):
                    if event.data == b"[DONE]":
                        return reply
                    _apply(reply, orjson.loads(event.data), out)
    except KeyboardInterrupt:
        reply.stopped = True
    return reply


def _apply(reply: Reply, chunk: dict[str, Any], out: TextIO) -> None:
    if "error" in chunk:
        raise ChatError(chunk["error"].get("message", "the stream failed"))
    if chunk.get("usage"):
        reply.usage = chunk["usage"]
    for choice in chunk.get("choices") or []:
        text = (choice.get("delta") or {}).get("content")
        if text:
            reply.text += text
            out.write(text)
            out.flush()


def _summary(reply: Reply) -> str:
    parts = ["stopped"] if reply.stopped else []
    if reply.usage:
        usage = reply.usage
        parts.append(
            f"{usage['prompt_tokens']} prompt + {usage['completion_tokens']} completion tokens"
        )
    if reply.request_id:
        parts.append(reply.request_id)
    return f"[{' · '.join(parts)}]"


def converse(client: httpx.Client, model: str, out: TextIO) -> None:
    history: list[dict[str, str]] = []
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return
        if line in EXIT:
            return
        if line == RESET:
            history.clear()
            out.write("(new conversation)\n")
            continue
        if not line:
            continue
        history.append({"role": "user", "content": line})
        out.write(f"{model}> ")
        out.flush()
        try:
            reply = stream_reply(client, model, history, out)
        except (ChatError, httpx.HTTPError) as exc:
            out.write(f"\nerror: {exc}\n")
            history.pop()
            continue
        # What was shown is what the conversation goes on from, a stopped answer too.
        if reply.text:
            history.append({"role": "assistant", "content": reply.text})
        else:
            history.pop()
        out.write(f"\n{_summary(reply)}\n")


def _base_url(args: argparse.Namespace, config: Config) -> str:
    if args.base_url or os.environ.get("SAVEGATE_BASE_URL"):
        return str(args.base_url or os.environ["SAVEGATE_BASE_URL"])
    host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
    return f"http://{host}:{config.server.port}/v1"


def run(args: argparse.Namespace, config: Config) -> int:
    key = args.api_key or os.environ.get("SAVEGATE_API_KEY")
    if not key:
        print("savegate chat: give --api-key or set SAVEGATE_API_KEY", file=sys.stderr)
        return 2
    import readline  # noqa: F401  (line editing and history for input() in a terminal)

    base_url = _base_url(args, config)
    headers = {"Authorization": f"Bearer {key}"}
    timeout = httpx.Timeout(600, connect=10)
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout) as client:
        try:
            model = args.model or first_model(client)
        except (ChatError, httpx.HTTPError) as exc:
            print(f"savegate chat: {base_url}: {exc}", file=sys.stderr)
            return 1
        print(
            f"Chatting with {model} at {base_url}. /reset starts over, /exit quits; "
            "Ctrl-C stops an answer."
        )
        converse(client, model, sys.stdout)
    return 0
