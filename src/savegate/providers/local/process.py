"""A gateway process's hold on the model process of its data directory.

Whichever gateway process needs the model first starts it; the lock file makes sure
exactly one serves a data directory, however many gateways start it at once. Each
gateway that has used it keeps a `status` connection open: when that connection drops,
the model process died, and the gateway starts a new one at once. The model process
is no gateway's child in any way that matters: a gateway's crash leaves it serving, and
it ends by itself once no gateway has been connected for a few seconds.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from savegate.config import LocalModelConfig
from savegate.core.errors import ProviderError
from savegate.providers.local.protocol import Connection

log = logging.getLogger(__name__)

SOCKET_NAME = "local-model.sock"
# Loading takes about a second, much longer on a busy machine; a request waits that long.
START_TIMEOUT = 120.0
IDLE_EXIT = 3.0  # seconds the model process outlives its last gateway
_POLL = 0.05


def unavailable(model: str, why: str) -> ProviderError:
    return ProviderError(
        f"The embedded model {model} is unavailable: {why}. Please retry the request.",
        status=503,
        code="local_model_unavailable",
        retryable=True,
    )


class ModelProcess:
    def __init__(
        self, config: LocalModelConfig, data_dir: Path, log_level: str, log_format: str
    ) -> None:
        self._config = config
        self.socket = data_dir.resolve() / SOCKET_NAME
        self._lock = self.socket.with_suffix(".lock")
        self._logging = ["--log-level", log_level, "--log-format", log_format]  # the gateway's
        self._starting: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._child: subprocess.Popen[bytes] | None = None  # spawned, not up yet
        self._closed = False
        self.pid: int | None = None  # the model process's, once seen

    async def connect(self) -> Connection:
        """A connection for one call, starting the model process if it is not running."""
        await self.ready()
        try:
            return await Connection.open(self.socket)
        except OSError:
            await self._started()  # it just died: the watch may not have seen it yet
        try:
            return await Connection.open(self.socket)
        except OSError as exc:
            raise unavailable(self._config.name, f"its process cannot be reached ({exc})") from exc

    @property
    def serving(self) -> bool:
        """Up, as far as this gateway knows: connected to it and watching it."""
        return self._watch is not None and not self._watch.done()

    async def ready(self) -> None:
        """Wait until the model process serves (starting it if need be), or raise a 503."""
        if self._watch is None or self._watch.done():
            await self._started()

    async def _started(self) -> None:
        if self._closed:
            raise unavailable(self._config.name, "the gateway is shutting down")
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start())
        await asyncio.shield(self._starting)

    async def aclose(self) -> None:
        """Let go of the model process (it ends by itself once no gateway holds it)."""
        self._closed = True
        tasks = [task for task in (self._starting, self._watch) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _start(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                watch = await Connection.open(self.socket)
            except OSError:
                self._spawn_unless_owned()
                if time.monotonic() > deadline:
                    raise unavailable(
                        self._config.name, f"its process did not start in {START_TIMEOUT:.0f} s"
                    ) from None
                await asyncio.sleep(_POLL)
                continue
            await watch.send({"op": "status"})
            status = await watch.receive()
            if status is None:  # it was on its way out
                watch.close()
                continue
            if self.pid != status["pid"]:
                log.info("embedded model process: pid %d", status["pid"])
            self.pid = int(status["pid"])
            # Up: what we spawned is no longer starting. (Dropped, a child still running is
            # reaped by the subprocess module once it ends.)
            self._child = None
            previous, self._watch = self._watch, asyncio.create_task(self._watching(watch))
            if previous is not None:
                previous.cancel()
            return

    def _spawn_unless_owned(self) -> None:
        if self._child is not None:
            code = self._child.poll()
            if code is None:
                return  # ours is still loading
            self._child = None
            if code != 0:  # 0: stopped on purpose before it served; start another
                raise unavailable(
                    self._config.name,
                    f"its process failed to start (exit code {code}; see the log)",
                )
        lock = take_lock(self._lock)
        if lock is None:
            return  # another gateway's is loading, or on its way out
        # We hold the lock and hand it over: no other gateway can start one meanwhile.
        with lock:
            self._child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "savegate.providers.local.server",
                    "--socket",
                    str(self.socket),
                    "--lock-fd",
                    str(lock.fileno()),
                    "--config",
                    self._config.model_dump_json(),
                    "--exit-when-idle",
                    str(IDLE_EXIT),
                    *self._logging,
                ],
                pass_fds=(lock.fileno(),),
                stdin=subprocess.DEVNULL,
                # Its own process group, so that a Ctrl-C (or a signal to our group) reaches
                # the gateway alone, which drains first; the same session, so that the
                # scheduler gives it the CPU share the gateway would have (autogroups).
                process_group=0,
            )

    async def _watching(self, watch: Connection) -> None:
        try:
            await watch.receive()  # returns only when the model process is gone
        finally:
            watch.close()
        log.warning("the embedded model process (pid %s) ended: starting it again", self.pid)
        try:
            await self._started()
        except ProviderError as exc:
            log.error("%s", exc.message)


def take_lock(path: Path) -> IO[str] | None:
    """The lock file, open and locked; None if another process holds it. A lock lasts
    while any process holds the open file (the kernel drops it however they end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    file = path.open("a+")
    try:
        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        file.close()
        return None
    return file
