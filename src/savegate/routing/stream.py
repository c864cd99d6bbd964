"""The routed stream: a stream's chunks after the executor's peek at the first batch.

The one stage between the provider's reader and the client's framer: each batch goes
through the attempt's hook (metering), and the deployment counts as in flight until the
stream ends, so `least_inflight` and the upstream-limit check see long streams.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from savegate.core.errors import GatewayError, interruption
from savegate.providers.base import ChatStream
from savegate.routing.health import DeploymentHealth
from savegate.routing.hooks import AttemptHook
from savegate.wire.chunks import Chunks


class RoutedStream:
    def __init__(
        self,
        upstream: ChatStream,
        rest: AsyncIterator[Chunks],
        first: Chunks | None,
        hook: AttemptHook,
        health: DeploymentHealth,
    ) -> None:
        self._upstream = upstream
        self._rest = rest
        self._first = first
        self._hook = hook
        self._health = health
        self._batches: AsyncGenerator[Chunks, None] | None = None
        self._over = False

    def __aiter__(self) -> AsyncIterator[Chunks]:
        if self._batches is None:
            self._batches = self._relay()
        return self._batches

    async def _relay(self) -> AsyncGenerator[Chunks, None]:
        hook = self._hook
        try:
            if self._first is None:
                self._end()
                return
            kept = hook.chunks(self._first)
            self._first = None
            if kept is not None:
                yield kept
            async for batch in self._rest:
                kept = hook.chunks(batch)
                if kept is not None:
                    yield kept
        except GatewayError as exc:
            self._end(error=exc)
            raise
        except asyncio.CancelledError as exc:
            cut = interruption(exc)
            if cut is not None:  # the server cut it (shutdown), not the client
                self._end(error=cut)
            raise
        except Exception:
            self._end(error=GatewayError("The server had an error while streaming the answer."))
            raise
        self._end()

    def _end(self, **outcome: Any) -> None:
        if not self._over:
            self._over = True
            self._health.released()
            self._hook.ended(**outcome)

    async def aclose(self) -> None:
        if self._batches is not None:
            await self._batches.aclose()
        self._end(cancelled=True)  # closed before its end: the client went away
        await self._upstream.aclose()
