"""Builders for OpenAI chat completion payloads, for adapters that produce answers
themselves (the embedded model) or translate them from another dialect."""

from __future__ import annotations

import time
from typing import Any

from savegate.core.ids import completion_id
from savegate.core.payload import Json


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens},
    }


def completion(
    model: str,
    choices: list[dict[str, Any]],
    usage: dict[str, Any],
    *,
    id: str | None = None,
    created: int | None = None,
) -> Json:
    return Json.of(
        {
            "id": id or completion_id(),
            "object": "chat.completion",
            "created": created if created is not None else int(time.time()),
            "model": model,
            "choices": choices,
            "usage": usage,
        }
    )


def choice(
    index: int,
    message: dict[str, Any],
    finish_reason: str,
    logprobs: Any = None,
) -> dict[str, Any]:
    full = {"role": "assistant", "content": None, "refusal": None}
    full.update(message)
    return {"index": index, "message": full, "logprobs": logprobs, "finish_reason": finish_reason}


class ChunkBuilder:
    """Chunks of one streamed completion: same id, created and model on every chunk."""

    __slots__ = ("created", "id", "model")

    def __init__(self, model: str, *, id: str | None = None, created: int | None = None) -> None:
        self.id = id or completion_id()
        self.created = created if created is not None else int(time.time())
        self.model = model

    def chunk(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: Any = None,
    ) -> Json:
        return Json.of(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {
                        "index": index,
                        "delta": delta,
                        "logprobs": logprobs,
                        "finish_reason": finish_reason,
                    }
                ],
            }
        )

    def usage_chunk(self, usage: dict[str, Any]) -> Json:
        return Json.of(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage,
            }
        )
