"""The Responses API use case: passed through to upstreams that speak it, else a
conversation the gateway keeps, answered through chat.

When every deployment of the model serves the Responses API natively (`responses:
native`), the request goes upstream as the client sent it, through the same pipeline,
and the conversation is the upstream's to keep. Otherwise a turn loads the conversation
named by `previous_response_id` (only the key that made it can see it), adds this
turn's input, and is answered through chat. A finished response is stored with the
input that led to it, unless the request said `store: false`. Either kind is read back,
deleted and continued by the key that made it only: one kept here from the database, a
native one at the upstream that keeps it (`responses_native`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from savegate.core.errors import NotFound
from savegate.core.payload import Json
from savegate.core.request import ChatRequest, RequestContext
from savegate.providers.base import ChatStream
from savegate.service.chat import ChatService
from savegate.service.pipeline import Pipeline, Reply
from savegate.service.responses_native import (
    NATIVE,
    NativeCall,
    NativeResponses,
    deleted,
    previous_not_found,
)
from savegate.store.responses import NativeResponse, ResponseStore, StoredResponse
from savegate.wire.responses import chat_body, from_chat, input_items, new_id
from savegate.wire.validate import validate_chat_request


def not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", code="not_found")


@dataclass(slots=True)
class Turn:
    """One `POST /v1/responses`: the Responses request, the request that goes upstream
    (the same, when `native`; else its chat form), and what to store once answered."""

    response_id: str
    body: dict[str, Any]
    request: ChatRequest
    key_id: str
    conversation: list[dict[str, Any]]  # the stored history and this turn's input
    store: ResponseStore | None
    native: NativeCall | None = None

    async def remember(self, response: dict[str, Any]) -> None:
        if self.store is not None:
            await self.store.save(self.key_id, response, self.conversation)


class ResponsesService:
    def __init__(
        self,
        pipeline: Pipeline,
        chat: ChatService,
        store: ResponseStore,
        native: NativeResponses,
    ) -> None:
        self._pipeline = pipeline
        self._chat = chat
        self._store = store
        self._native = native

    async def start(self, body: dict[str, Any], raw: bytes, context: RequestContext) -> Turn:
        """The turn for the request `body` (`raw`: its bytes, as the client sent them)."""
        key_id = context.key.id
        keep = body.get("store", True) is not False
        previous = body.get("previous_response_id")
        if self._pipeline.served_with(body["model"], NATIVE):
            request = ChatRequest(body, raw, context)
            call = await self._native.call(key_id, keep, previous)
            return Turn(new_id("resp"), body, request, key_id, [], None, native=call)
        history: list[dict[str, Any]] = []
        if previous is not None:
            stored = await self._store.load(key_id, previous)
            if stored is None:
                raise previous_not_found(previous)
            history = stored.conversation()
        items = [*history, *input_items(body)]
        chat = validate_chat_request(chat_body(body, items))
        return Turn(
            new_id("resp"),
            body,
            ChatRequest(chat, orjson.dumps(chat), context),
            key_id,
            items,
            self._store if keep else None,
        )

    async def complete(self, turn: Turn) -> Reply[Json]:
        call = turn.native
        if call is not None:
            reply = await self._pipeline.call(
                turn.request, "responses", call.respond, call.supports, call.written
            )
            await call.answered(reply.value)
            return reply
        reply = await self._chat.complete(turn.request)
        response = from_chat(turn.response_id, turn.body, reply.value.data)
        await turn.remember(response)
        return Reply(Json.of(response), reply.headers)

    async def stream(self, turn: Turn) -> Reply[ChatStream]:
        """Chat chunks, or the upstream's Responses events when the turn is native."""
        call = turn.native
        if call is not None:
            reply = await self._pipeline.stream(
                turn.request, "responses", call.open, call.supports, reports_usage=True
            )
            return Reply(call.remembering(reply.value), reply.headers)
        return await self._chat.stream(turn.request)

    async def retrieve(self, key_id: str, response_id: str, query: bytes) -> Json:
        """`GET /v1/responses/{id}`: kept here, else by the upstream that made it."""
        stored = await self._store.load(key_id, response_id)
        if stored is not None:
            return Json.of(stored.response)
        found = await self._upstream(key_id, response_id)
        return await self._native.retrieve(found, response_id, query)

    async def input_items(self, key_id: str, response_id: str, query: bytes) -> Json:
        stored = await self._store.load(key_id, response_id)
        if stored is not None:
            return Json.of(_item_list(stored))
        found = await self._upstream(key_id, response_id)
        return await self._native.input_items(found, response_id, query)

    async def delete(self, key_id: str, response_id: str) -> Json:
        if await self._store.delete(key_id, response_id):
            return deleted(response_id)
        found = await self._upstream(key_id, response_id)
        return await self._native.delete(key_id, found, response_id)

    async def _upstream(self, key_id: str, response_id: str) -> NativeResponse:
        """Where a native response the key made lives; not found for any other (the
        upstream is not asked)."""
        found = await self._native.find(key_id, response_id)
        if found is None:
            raise not_found(response_id)
        return found


def _item_list(stored: StoredResponse) -> dict[str, Any]:
    """A stored response's input items, as OpenAI lists them (in one page)."""
    items = [{"id": item.get("id") or new_id("msg"), **item} for item in stored.input_items]
    return {
        "object": "list",
        "data": items,
        "has_more": False,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
    }
