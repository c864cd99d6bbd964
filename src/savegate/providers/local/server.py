"""The model process: the embedded model, once per data directory, for every gateway process.

`python -m savegate.providers.local.server --socket DATA/local-model.sock` takes the lock
file beside the socket (a gateway that starts it takes the lock first and hands it over),
so a second one exits at once; then it loads the model and listens. Its one queue is
fair across the keys of all gateway processes. With `--exit-when-idle S` it ends once no
gateway has been connected for S seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from savegate.config import LocalModelConfig
from savegate.core.errors import GatewayError
from savegate.core.keys import ApiKey
from savegate.core.request import ChatRequest, RequestContext
from savegate.observe import logs
from savegate.providers.local.process import take_lock
from savegate.providers.local.protocol import Connection, Message, address, error_message

log = logging.getLogger("savegate.model")

EXIT_LOST_LOCK = 3  # another model process owns the data directory
EXIT_FAILED = 2  # the model could not be loaded


class ModelServer:
    def __init__(self, config: LocalModelConfig, idle_exit: float | None) -> None:
        # Imported here: a process that lost the lock race exits without loading llama.cpp.
        from savegate.providers.local.model import EmbeddedModel

        self._model = EmbeddedModel(config)
        self._idle_exit = idle_exit
        self._peers: dict[asyncio.Task[None], int] = {}
        self._stopped = asyncio.Event()
        self._idle: asyncio.TimerHandle | None = None

    async def run(self, path: Path) -> None:
        await self._model.start()
        server = await asyncio.start_unix_server(self._connected, address(path))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopped.set)
        log.info("embedded model %s ready (pid %d)", self._model.model, os.getpid())
        self._count_idle()
        await self._stopped.wait()
        server.close()
        for task in list(self._peers):
            task.cancel()
        await asyncio.gather(*self._peers, return_exceptions=True)
        await self._model.aclose()
        log.info("embedded model stopped")

    def _count_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._idle_exit is not None and not self._peers:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self._idle_exit, self._stopped.set)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = Connection(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._peers[task] = connection.peer_pid
        self._count_idle()
        try:
            call = await connection.receive()
            if call is not None:
                await self._serve(connection, call)
        finally:
            connection.close()
            del self._peers[task]
            self._count_idle()

    async def _serve(self, connection: Connection, call: Message) -> None:
        if call.get("op") == "status":
            await connection.send(self.status())
            await connection.receive()  # held open while the gateway watches us
            return
        # The call runs until it is done, or until the gateway cancels or goes away.
        work = asyncio.create_task(self._answer(connection, call))
        gone = asyncio.create_task(connection.receive())
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        for task in (work, gone):
            task.cancel()
        await asyncio.gather(work, gone, return_exceptions=True)

    def status(self) -> Message:
        return {
            "pid": os.getpid(),
            "model": self._model.model,
            "tokens_generated": self._model.engine.tokens_generated,
            "peers": sorted(set(self._peers.values())),
        }

    async def _answer(self, connection: Connection, call: Message) -> None:
        request = _request(call)
        try:
            if call["op"] == "embed":
                answer = await self._model.embed(request, "")
            elif not call.get("stream"):
                answer = await self._model.complete(request, "")
            else:
                stream = await self._model.stream(request, "")
                try:
                    await connection.send({"ready": True})
                    async for batch in stream:
                        await connection.send({"chunks": [chunk.data for chunk in batch]})
                    await connection.send({"end": True})
                finally:
                    await stream.aclose()
                return
            await connection.send({"answer": answer.data})
        except GatewayError as exc:
            await connection.send(error_message(exc))
        except ConnectionError:
            pass  # the gateway went away: the stream's close above stopped the work
        except Exception:
            log.exception("the embedded model failed")
            failed = GatewayError("The embedded model failed while answering.")
            await connection.send(error_message(failed))


def _request(call: Message) -> ChatRequest:
    """The call as the in-process model takes it: only the body and the key's id count
    (the key's id picks the lane of the fair queue)."""
    key = str(call.get("key") or "")
    context = RequestContext(
        request_id="",
        key=ApiKey(id=key, name=key, hint="", is_admin=False, created_at=datetime.now(UTC)),
    )
    return ChatRequest(body=call["body"], raw=b"", context=context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m savegate.providers.local.server")
    parser.add_argument("--socket", type=Path, required=True, help="Unix socket to listen on")
    parser.add_argument("--lock-fd", type=int, help="the lock file, already locked for us")
    parser.add_argument("--config", default="{}", help="the `local:` settings, as JSON")
    parser.add_argument("--exit-when-idle", type=float, help="seconds with no gateway")
    logs.add_helper_options(parser)
    args = parser.parse_args(argv)
    logs.configure_helper(args, "model")  # it knows no upstream key: credentials masked
    # Whoever started us took the lock for us; started by hand, we take it ourselves.
    lock = (
        os.fdopen(args.lock_fd, "a+")
        if args.lock_fd is not None
        else take_lock(args.socket.with_suffix(".lock"))
    )
    if lock is None:
        log.info("another process serves %s", args.socket)
        return EXIT_LOST_LOCK
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")  # for operators (and tests)
    lock.flush()
    with lock:
        config = LocalModelConfig.model_validate_json(args.config)
        args.socket.unlink(missing_ok=True)  # a dead predecessor's
        try:
            uvloop.run(ModelServer(config, args.exit_when_idle).run(args.socket))
        except Exception:
            log.exception("the embedded model process failed")
            return EXIT_FAILED
        finally:
            args.socket.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
