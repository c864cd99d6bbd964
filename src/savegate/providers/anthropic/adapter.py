"""Anthropic's Messages API behind the OpenAI chat dialect."""

from __future__ import annotations

from collections.abc import Callable

import orjson

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.anthropic.caching import add_breakpoints
from savegate.providers.anthropic.convert import from_anthropic, to_anthropic
from savegate.providers.anthropic.stream import StreamTranslator
from savegate.providers.http import Headers, HttpUpstream, Response
from savegate.providers.remote import RemoteAdapter, TranslatedStream

API_VERSION = "2023-06-01"


class AnthropicProvider(RemoteAdapter):
    """`prompt_cache`: add caching breakpoints to long system prompts and tool lists."""

    def __init__(
        self,
        name: str,
        http: HttpUpstream,
        key: str | None,
        observe: Callable[[Headers], None] | None = None,
        *,
        prompt_cache: bool = False,
    ) -> None:
        super().__init__(name, http, key, observe)
        self._prompt_cache = prompt_cache

    async def _open(self, request: ChatRequest, model: str) -> Response:
        headers = {"content-type": "application/json", "anthropic-version": API_VERSION}
        if self._key:
            headers["x-api-key"] = self._key
        translated = to_anthropic(request.body, model)
        if self._prompt_cache:
            add_breakpoints(translated)
        body = orjson.dumps(translated)
        return await self._http.open("/messages", body, headers, self._observe)

    async def complete(self, request: ChatRequest, model: str) -> Json:
        message = await self._read_json(await self._open(request, model))
        return Json.of(from_anthropic(message, request.legacy_functions))

    async def stream(self, request: ChatRequest, model: str) -> TranslatedStream:
        response = await self._open(request, model)
        translator = StreamTranslator(request.include_usage, request.legacy_functions)
        return TranslatedStream(self._http, response, translator)
