"""The embedded model as a chat provider, served by the data directory's model process.

Nothing here loads llama.cpp: the calls go over the model process's socket
(`protocol.py`), and the model process is started on first use (`process.py`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

from savegate.config import LocalModelConfig
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.local.process import ModelProcess, unavailable
from savegate.providers.local.protocol import Connection, Message, error_from
from savegate.wire.chunks import Chunks


class LocalProvider:
    """`eager`: start the model process with the gateway (it answers every model name, so
    the first request should not wait for it); otherwise on the first call."""

    def __init__(
        self,
        config: LocalModelConfig | None = None,
        *,
        data_dir: Path = Path(".savegate"),
        eager: bool = True,
        log_level: str = "info",
        log_format: str = "text",
        name: str = "local",
    ) -> None:
        self.name = name
        self._config = config or LocalModelConfig()
        self.eager = eager
        self.process = ModelProcess(self._config, data_dir, log_level, log_format)

    async def start(self) -> None:
        if self.eager:
            await self.process.ready()

    async def aclose(self) -> None:
        await self.process.aclose()

    async def complete(self, request: ChatRequest, model: str) -> Json:
        return await self._answer({"op": "chat", "stream": False}, request)

    async def embed(self, request: ChatRequest, model: str) -> Json:
        return await self._answer({"op": "embed"}, request)

    async def stream(self, request: ChatRequest, model: str) -> LocalStream:
        """Refusals (context too long, bad tool choice) raise here, before any chunk."""
        connection = await self._call({"op": "chat", "stream": True}, request)
        try:
            self._check(await connection.receive())
        except BaseException:
            connection.close()
            raise
        return LocalStream(connection, self._config.name)

    async def _answer(self, call: Message, request: ChatRequest) -> Json:
        connection = await self._call(call, request)
        try:  # cancelled here (the client left): closing the connection stops the work
            return Json.of(self._check(await connection.receive())["answer"])
        finally:
            connection.close()

    async def _call(self, call: Message, request: ChatRequest) -> Connection:
        connection = await self.process.connect()
        try:
            await connection.send({**call, "key": request.context.key.id, "body": request.body})
        except BaseException:
            connection.close()
            raise
        return connection

    def _check(self, message: Message | None) -> Message:
        if message is None:
            raise unavailable(self._config.name, "its process ended while answering")
        if "error" in message:
            raise error_from(message["error"])
        return message


class LocalStream:
    """The chunks of one streamed answer; `aclose()` cancels its generation."""

    def __init__(self, connection: Connection, model: str) -> None:
        self._connection = connection
        self._model = model
        self._chunks = self._read()

    def __aiter__(self) -> AsyncIterator[Chunks]:
        return self._chunks

    async def _read(self) -> AsyncGenerator[Chunks, None]:
        while (message := await self._connection.receive()) is not None:
            if "chunks" in message:
                yield Chunks([Json.of(chunk) for chunk in message["chunks"]])
            elif "end" in message:
                return
            elif "error" in message:
                raise error_from(message["error"])
        raise unavailable(self._model, "its process ended in the middle of this answer")

    async def aclose(self) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):  # gone: closing is enough
            await self._connection.send({"op": "cancel"})
        self._connection.close()
        await self._chunks.aclose()
