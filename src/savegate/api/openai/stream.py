"""OpenAI's stream framing: `data:` events as the upstream sent them, then `[DONE]`."""

from __future__ import annotations

from savegate.core.errors import GatewayError
from savegate.wire import sse
from savegate.wire.chunks import Chunks


class OpenAIFramer:
    def start(self) -> bytes:
        return b""

    def feed(self, batch: Chunks) -> bytes:
        return batch.sse

    async def finish(self) -> bytes:
        return sse.DONE

    def fail(self, error: GatewayError) -> bytes:
        return sse.error_event(error)
