"""The provider adapter contract.

An adapter turns a neutral chat request (OpenAI dialect) into one upstream call and
returns OpenAI-shaped answers. It knows nothing of keys, limits, retries, metering or
SSE framing. Any failure before the first chunk is raised by `stream()` itself, before
the caller writes a byte, so a router can still fall back; later failures are raised
from the iterator as `ProviderError`. Closing the stream cancels the upstream work.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.wire.chunks import Chunks
from savegate.wire.multipart import Form


@runtime_checkable
class ChatStream(Protocol):
    """OpenAI `chat.completion.chunk` payloads, exactly as the client should see them,
    in batches: the chunks that became ready together (see `wire.chunks`)."""

    def __aiter__(self) -> AsyncIterator[Chunks]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ChatProvider(Protocol):
    name: str

    async def complete(self, request: ChatRequest, model: str) -> Json:
        """One whole `chat.completion` for `model` (the provider's own model name)."""
        ...

    async def stream(self, request: ChatRequest, model: str) -> ChatStream:
        """Open a stream; raise `ProviderError` here if the upstream refuses."""
        ...

    async def aclose(self) -> None:
        """Release connections, threads and models."""
        ...


@runtime_checkable
class TextCompletionProvider(Protocol):
    """Optional: legacy `/v1/completions` natively. Chat-only providers are served through
    a translation to chat instead."""

    async def complete_text(self, request: ChatRequest, model: str) -> Json: ...

    async def stream_text(self, request: ChatRequest, model: str) -> ChatStream: ...


@runtime_checkable
class EmbeddingProvider(Protocol):
    """Optional: `/v1/embeddings`. Answers in OpenAI's shape, honouring `encoding_format`."""

    async def embed(self, request: ChatRequest, model: str) -> Json: ...


@runtime_checkable
class ResponsesProvider(Protocol):
    """Optional: `/v1/responses` natively, the request passed through as the client sent
    it. Others are served through a translation to chat instead. The stream's batches are
    the upstream's Responses events (items and bytes), not chat chunks. What it made and
    stored is read back and deleted there too, with the same upstream key."""

    name: str
    account: str | None  # which upstream key it calls with, as a digest (None: it has none)

    async def respond(self, request: ChatRequest, model: str) -> Json: ...

    async def stream_response(self, request: ChatRequest, model: str) -> ChatStream: ...

    async def stored(self, method: str, path: str) -> Json:
        """`GET` or `DELETE /responses/<path>` upstream (`path`: the response's id, maybe
        `/input_items`, and a query string)."""
        ...


@runtime_checkable
class ByteStream(Protocol):
    """An upstream body relayed as it arrives (audio, or events relayed as the upstream's
    own bytes), with its content type. Closing it cancels the upstream work."""

    content_type: str

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Relayed:
    """A whole upstream body, as it came."""

    raw: bytes
    content_type: str


@runtime_checkable
class ImageProvider(Protocol):
    """Optional: `/v1/images/generations`, answered in OpenAI's `ImagesResponse` shape."""

    async def generate_images(self, request: ChatRequest, model: str) -> Relayed: ...


@runtime_checkable
class PassThroughProvider(Protocol):
    """Optional: OpenAI's other endpoints (audio, image edits, moderations) passed
    through to `path` as the client sent them, only `model` renamed: a JSON body
    (`form` None) or a multipart form."""

    async def relay(
        self, path: str, request: ChatRequest, model: str, form: Form | None
    ) -> Relayed: ...

    async def relay_stream(
        self, path: str, request: ChatRequest, model: str, form: Form | None
    ) -> ByteStream: ...
