"""`savegate serve --workers N`: N worker processes sharing one listening socket.

The supervisor binds the socket, forks the workers (each a whole gateway on the shared
socket), restarts one that dies, and on SIGTERM or SIGINT stops accepting at once and
lets every worker drain: their in-flight requests and streams finish within the
shutdown grace, and whatever outlives it ends with an error its client can see. SIGHUP
(sent by an operator, or by the worker that was asked `POST /admin/reload`) has every
worker reload the config file, and the workers started from then on run it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType

log = logging.getLogger("savegate.supervisor")

RESTART_BACKOFF_MAX = 10.0  # seconds between restarts of a worker that keeps dying
PR_SET_PDEATHSIG = 1  # prctl(2)
HEALTHY_AFTER = 5.0  # a worker that ran this long before dying is restarted at once

Worker = Callable[[socket.socket, int], None]


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=4096)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(
        self,
        sock: socket.socket,
        count: int,
        worker: Worker,
        grace: float,
        reload: Callable[[], None] | None = None,
        exited: Callable[[int], None] | None = None,
    ) -> None:
        """`exited` is told the PID of each worker that is gone (its metrics are marked dead)."""
        self._sock = sock
        self._reload = reload
        self._count = count
        self._worker = worker
        self._grace = grace
        self._exited = exited
        self._pids: dict[int, int] = {}  # pid → worker number
        self._started: dict[int, float] = {}  # worker number → when it last started
        self._failures: dict[int, int] = {}  # worker number → quick deaths in a row
        self._stopping = False

    def run(self) -> int:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._stop)
        signal.signal(signal.SIGHUP, self._hangup)
        for number in range(1, self._count + 1):
            self._spawn(number)
        while self._pids:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            number = self._pids.pop(pid, 0)
            if number and self._exited is not None:
                self._exited(pid)
            if not number or self._stopping:
                continue
            self._restart(number, status)
        return 0

    def _spawn(self, number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: it never returns into the supervisor's loop
            code = 0
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the worker's loop handles it
                _follow_parent()
                self._worker(self._sock, number)
            except BaseException:
                log.exception("worker %d failed", number)
                code = 1
            finally:
                os._exit(code)
        self._pids[pid] = number
        self._started[number] = time.monotonic()
        log.info("worker %d started (pid %d)", number, pid)

    def _restart(self, number: int, status: int) -> None:
        ran = time.monotonic() - self._started.get(number, 0.0)
        quick = self._failures.get(number, 0) + 1 if ran < HEALTHY_AFTER else 0
        self._failures[number] = quick
        wait = min(RESTART_BACKOFF_MAX, 0.5 * 2 ** (quick - 1)) if quick else 0.0
        log.warning(
            "worker %d exited (%s) after %.1f s; restarting%s",
            number,
            _describe(status),
            ran,
            f" in {wait:.1f} s" if wait else "",
        )
        deadline = time.monotonic() + wait
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.1, wait))
        if not self._stopping:
            self._spawn(number)

    def _hangup(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return
        if self._reload is not None:
            self._reload()
        log.info("SIGHUP: every worker reloads the config")
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.info("%s: draining %d worker(s)", signal.Signals(signum).name, len(self._pids))
        self._sock.close()  # new connections are refused from now on
        for pid in self._pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        # A worker still running well after its own grace is stopped for good.
        signal.signal(signal.SIGALRM, self._kill)
        signal.alarm(int(self._grace) + 15)

    def _kill(self, signum: int, frame: FrameType | None) -> None:
        for pid, number in self._pids.items():
            log.error("worker %d did not stop in time: killing it", number)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _follow_parent() -> None:
    """Leave the terminal's process group, so that a Ctrl-C reaches the supervisor alone
    (it drains the workers with one SIGTERM each), and get a SIGTERM of one's own should
    the supervisor die without doing so."""
    os.setpgid(0, 0)
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"code {os.waitstatus_to_exitcode(status)}"
