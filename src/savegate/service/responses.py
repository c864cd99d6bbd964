"""The Responses API use case: a conversation the gateway keeps, answered through chat.

A turn loads the conversation named by `previous_response_id` (only the key that made it
can see it), adds this turn's input, and is answered by the chat pipeline. A finished
response is stored with the input that led to it, unless the request said `store: false`.
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
from savegate.service.pipeline import Reply
from savegate.store.responses import ResponseStore, StoredResponse
from savegate.wire.responses import chat_body, from_chat, input_items, new_id
from savegate.wire.validate import validate_chat_request


def not_found(response_id: str, param: str | None = None) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param=param, code="not_found")


@dataclass(slots=True)
class Turn:
    """One `POST /v1/responses`: the Responses request, its chat request, and what to
    store once it is answered."""

    response_id: str
    body: dict[str, Any]
    chat: ChatRequest
    key_id: str
    conversation: list[dict[str, Any]]  # the stored history and this turn's input
    store: ResponseStore | None

    def remember(self, response: dict[str, Any]) -> None:
        if self.store is not None:
            self.store.save(self.key_id, response, self.conversation)


class ResponsesService:
    def __init__(self, chat: ChatService, store: ResponseStore) -> None:
        self._chat = chat
        self._store = store

    async def start(self, body: dict[str, Any], context: RequestContext) -> Turn:
        key_id = context.key.id
        history: list[dict[str, Any]] = []
        previous = body.get("previous_response_id")
        if previous is not None:
            stored = await self._store.load(key_id, str(previous))
            if stored is None:
                raise not_found(str(previous), "previous_response_id")
            history = stored.conversation()
        items = [*history, *input_items(body)]
        chat = validate_chat_request(chat_body(body, items))
        keep = body.get("store", True) is not False
        return Turn(
            new_id("resp"),
            body,
            ChatRequest(chat, orjson.dumps(chat), context),
            key_id,
            items,
            self._store if keep else None,
        )

    async def complete(self, turn: Turn) -> Reply[Json]:
        reply = await self._chat.complete(turn.chat)
        response = from_chat(turn.response_id, turn.body, reply.value.data)
        turn.remember(response)
        return Reply(Json.of(response), reply.headers)

    async def stream(self, turn: Turn) -> Reply[ChatStream]:
        return await self._chat.stream(turn.chat)

    async def load(self, key_id: str, response_id: str) -> StoredResponse:
        stored = await self._store.load(key_id, response_id)
        if stored is None:
            raise not_found(response_id)
        return stored

    async def delete(self, key_id: str, response_id: str) -> None:
        if not await self._store.delete(key_id, response_id):
            raise not_found(response_id)
