"""Google Gemini (`generateContent`) behind the OpenAI chat dialect."""

from __future__ import annotations

import asyncio

import orjson

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.base import Relayed
from savegate.providers.gemini.convert import from_gemini, to_gemini
from savegate.providers.gemini.images import from_gemini_images, to_gemini_image
from savegate.providers.gemini.stream import StreamTranslator
from savegate.providers.http import Response
from savegate.providers.remote import RemoteAdapter, TranslatedStream


class GeminiProvider(RemoteAdapter):
    async def _open(
        self, request: ChatRequest, model: str, method: str, body: bytes | None = None
    ) -> Response:
        headers = {"content-type": "application/json"}
        if self._key:
            headers["x-goog-api-key"] = self._key
        if body is None:
            body = orjson.dumps(to_gemini(request.body))
        return await self._http.open(f"/models/{model}:{method}", body, headers, self._observe)

    async def complete(self, request: ChatRequest, model: str) -> Json:
        response = await self._read_json(await self._open(request, model, "generateContent"))
        return Json.of(from_gemini(response, model, request.legacy_functions))

    async def stream(self, request: ChatRequest, model: str) -> TranslatedStream:
        response = await self._open(request, model, "streamGenerateContent?alt=sse")
        translator = StreamTranslator(model, request.include_usage, request.legacy_functions)
        return TranslatedStream(self._http, response, translator)

    async def generate_images(self, request: ChatRequest, model: str) -> Relayed:
        """`n` images, one call each, made together (the first failure cancels the rest)."""
        body = orjson.dumps(to_gemini_image(request.body))

        async def one() -> dict[str, object]:
            answer = await self._read_json(
                await self._open(request, model, "generateContent", body)
            )
            return answer if isinstance(answer, dict) else {}

        calls = [asyncio.ensure_future(one()) for _ in range(int(request.body.get("n") or 1))]
        try:
            answers = await asyncio.gather(*calls)
        except BaseException:
            for call in calls:
                call.cancel()
            raise
        images = from_gemini_images(answers, model, request.body.get("response_format"))
        return Relayed(orjson.dumps(images), "application/json")
