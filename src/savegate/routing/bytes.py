"""A routed byte stream: an upstream body relayed as it arrives, after the executor's
peek at its first read. Its attempt is billed by the units fixed at admission (the
characters spoken, the audio heard) whenever it ends: the upstream has done the work.
An event stream's reported token usage is noted on the way and recorded beside them."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator

from savegate.core.errors import GatewayError, interruption
from savegate.core.media import MediaUse
from savegate.providers.base import ByteStream
from savegate.routing.health import DeploymentHealth
from savegate.routing.hooks import AttemptHook
from savegate.wire.media_use import EventUsage


class RoutedBytes:
    def __init__(
        self,
        upstream: ByteStream,
        rest: AsyncIterator[bytes],
        first: bytes,
        hook: AttemptHook,
        health: DeploymentHealth,
        use: MediaUse,
    ) -> None:
        self.content_type = upstream.content_type
        self._upstream = upstream
        self._rest = rest
        self._first = first
        self._hook = hook
        self._health = health
        self._use = use
        self._events = EventUsage() if self.content_type.startswith("text/event-stream") else None
        self._reads: AsyncGenerator[bytes, None] | None = None
        self._over = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self._reads is None:
            self._reads = self._relay()
        return self._reads

    async def _relay(self) -> AsyncGenerator[bytes, None]:
        events = self._events
        try:
            if self._first:
                if events is not None:
                    events.feed(self._first)
                yield self._first
            self._first = b""
            async for read in self._rest:
                if events is not None:
                    events.feed(read)
                yield read
        except GatewayError as exc:
            self._end(error=exc)
            raise
        except asyncio.CancelledError as exc:
            cut = interruption(exc)
            if cut is not None:
                self._end(error=cut)
            raise
        except Exception:
            self._end(error=GatewayError("The server had an error while relaying the answer."))
            raise
        self._end()

    def _end(self, error: GatewayError | None = None, cancelled: bool = False) -> None:
        if not self._over:
            self._over = True
            self._health.released()
            use = self._use
            if self._events is not None and self._events.tokens is not None:
                use = dataclasses.replace(use, tokens=self._events.tokens)
            self._hook.ended(use=use, error=error, cancelled=cancelled)

    async def aclose(self) -> None:
        if self._reads is not None:
            await self._reads.aclose()
        self._end(cancelled=True)  # closed before its end: the client went away
        await self._upstream.aclose()
