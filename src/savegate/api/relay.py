"""The one stream relay: a neutral chunk stream, framed in the client's dialect.

Each dialect supplies a framer (OpenAI SSE, Anthropic Messages events, Responses
events); the relay loop and its single error path are shared. Its caller closes the
stream however the relay ended (the end of the answer, a failure, the client going
away), which releases the upstream connection at once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Protocol

from savegate.core.errors import GatewayError
from savegate.providers.base import ChatStream
from savegate.wire.chunks import Chunks

log = logging.getLogger(__name__)

_BROKEN = "The server had an error while streaming the answer."


class Framer(Protocol):
    def start(self) -> bytes:
        """What goes out before the first chunk (may be empty)."""
        ...

    def feed(self, batch: Chunks) -> bytes:
        """A batch of chunks in the dialect's framing (may be empty)."""
        ...

    async def finish(self) -> bytes:
        """The end of a complete answer (a framer may store it first)."""
        ...

    def fail(self, error: GatewayError) -> bytes:
        """The dialect's in-stream error: the answer is cut, and the client must know."""
        ...


async def relay(stream: ChatStream, framer: Framer, request_id: str) -> AsyncGenerator[bytes, None]:
    try:
        head = framer.start()
        if head:
            yield head
        async for batch in stream:
            framed = framer.feed(batch)
            if framed:
                yield framed
        yield await framer.finish()
    except GatewayError as exc:
        log.warning("stream %s failed mid-way: %s", request_id, exc.message)
        yield framer.fail(exc)
    except Exception:
        log.exception("stream %s failed", request_id)
        yield framer.fail(GatewayError(_BROKEN))
