"""OpenAI image generation on Gemini's image models: `generateContent` with image output.

Each image is one call (Gemini's image models make one image a call); its `inlineData`
becomes OpenAI's `b64_json`, or a `data:` URL when the client asked for `url` (Gemini
hosts no images). The size becomes an aspect ratio where OpenAI's sizes name one.
"""

from __future__ import annotations

import time
from typing import Any

from savegate.core.errors import ProviderError

_ASPECT_RATIOS = {
    "1024x1024": "1:1",
    "256x256": "1:1",
    "512x512": "1:1",
    "1536x1024": "3:2",
    "1024x1536": "2:3",
    "1792x1024": "16:9",
    "1024x1792": "9:16",
}


def to_gemini_image(body: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {"responseModalities": ["IMAGE"]}
    ratio = _ASPECT_RATIOS.get(str(body.get("size")))
    if ratio is not None:
        config["imageConfig"] = {"aspectRatio": ratio}
    return {
        "contents": [{"role": "user", "parts": [{"text": body["prompt"]}]}],
        "generationConfig": config,
    }


def _images(response: dict[str, Any], model: str) -> list[dict[str, str]]:
    found = [
        part["inlineData"]
        for candidate in response.get("candidates") or []
        for part in (candidate.get("content") or {}).get("parts") or []
        if isinstance(part.get("inlineData"), dict) and part["inlineData"].get("data")
    ]
    if found:
        return found
    reasons = [c.get("finishReason") for c in response.get("candidates") or []]
    blocked = (response.get("promptFeedback") or {}).get("blockReason")
    why = blocked or ", ".join(map(str, reasons)) or "no candidates"
    raise ProviderError(
        f"The model `{model}` made no image ({why}).",
        status=400,
        type="invalid_request_error",
        code="content_policy_violation" if blocked or "SAFETY" in str(reasons) else "no_image",
    )


def from_gemini_images(
    responses: list[dict[str, Any]], model: str, response_format: str | None
) -> dict[str, Any]:
    """The OpenAI `ImagesResponse` of one Gemini response per image."""
    data: list[dict[str, str]] = []
    prompt_tokens = output_tokens = 0
    for response in responses:
        for image in _images(response, model):
            if response_format == "url":
                mime = image.get("mimeType", "image/png")
                data.append({"url": f"data:{mime};base64,{image['data']}"})
            else:
                data.append({"b64_json": image["data"]})
        usage = response.get("usageMetadata") or {}
        prompt_tokens += int(usage.get("promptTokenCount") or 0)
        output_tokens += int(usage.get("candidatesTokenCount") or 0)
    return {
        "created": int(time.time()),
        "data": data,
        "usage": {
            "input_tokens": prompt_tokens,
            "output_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens,
        },
    }
