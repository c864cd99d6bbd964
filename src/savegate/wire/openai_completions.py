"""Legacy text completions in terms of chat: for providers that only speak chat."""

from __future__ import annotations

from typing import Any

from savegate.core.errors import InvalidRequest

_CARRIED = (
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "stream",
    "stream_options",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
)
LEGACY_DEFAULT_MAX_TOKENS = 16  # the legacy endpoint's documented default


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """A validated `/v1/completions` body as a chat request with one user message."""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise InvalidRequest(
                "This model serves one text prompt per request; send prompts one at a time.",
                param="prompt",
            )
        prompt = prompt[0]
    for name in ("suffix", "echo"):
        if body.get(name):
            raise InvalidRequest(f"'{name}' is not supported by this model.", param=name)
    chat = {name: body[name] for name in _CARRIED if body.get(name) is not None}
    chat.setdefault("max_tokens", LEGACY_DEFAULT_MAX_TOKENS)
    chat["messages"] = [{"role": "user", "content": prompt or ""}]
    return chat


def _id(chat_id: str) -> str:
    return "cmpl-" + chat_id.removeprefix("chatcmpl-")


def _choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def completion(chat: dict[str, Any]) -> dict[str, Any]:
    choices = [
        _choice(
            choice["index"],
            (choice.get("message") or {}).get("content") or "",
            choice.get("finish_reason"),
        )
        for choice in chat.get("choices") or []
    ]
    return {
        "id": _id(chat.get("id", "")),
        "object": "text_completion",
        "created": chat.get("created"),
        "model": chat.get("model"),
        "choices": choices,
        "usage": chat.get("usage"),
    }


def chunk(chat_chunk: dict[str, Any]) -> dict[str, Any] | None:
    """A chat chunk as a text completion chunk; None for chunks with nothing to say."""
    result: dict[str, Any] = {
        "id": _id(chat_chunk.get("id", "")),
        "object": "text_completion",
        "created": chat_chunk.get("created"),
        "model": chat_chunk.get("model"),
        "choices": [],
    }
    for choice in chat_chunk.get("choices") or []:
        text = (choice.get("delta") or {}).get("content") or ""
        if text or choice.get("finish_reason"):
            result["choices"].append(_choice(choice["index"], text, choice.get("finish_reason")))
    if chat_chunk.get("usage"):
        result["usage"] = chat_chunk["usage"]
    elif not result["choices"]:
        return None
    return result
