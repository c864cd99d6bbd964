"""Embedding responses in OpenAI's shape, for providers that compute vectors themselves."""

from __future__ import annotations

import base64
import math
from typing import Any

import numpy as np


def shape(vector: list[float], dimensions: int | None) -> list[float]:
    """Shorten to `dimensions` and scale back to unit length, as OpenAI's models do."""
    if dimensions is not None and dimensions < len(vector):
        vector = vector[:dimensions]
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def encode(vector: list[float], encoding_format: str | None) -> list[float] | str:
    if encoding_format == "base64":
        # The SDKs decode a base64 string of little-endian float32.
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


def response(
    vectors: list[list[float]], model: str, prompt_tokens: int, body: dict[str, Any]
) -> dict[str, Any]:
    dimensions = body.get("dimensions")
    data = [
        {
            "object": "embedding",
            "index": index,
            "embedding": encode(shape(vector, dimensions), body.get("encoding_format")),
        }
        for index, vector in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
