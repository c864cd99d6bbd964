"""`savegate serve --workers N`: N worker processes sharing one port.

The supervisor forks the workers (each a whole gateway), restarts one that dies, and on
SIGTERM or SIGINT has every worker stop accepting at once and drain: their in-flight
requests and streams finish within the shutdown grace, and whatever outlives it ends
with an error its client can see. SIGHUP (sent by an operator, or by the worker that was
asked `POST /admin/reload`) has every worker reload the config file, and the workers
started from then on run it too.

Each worker listens on a socket of its own, all bound to the port with SO_REUSEPORT: the
kernel spreads new connections over the workers evenly. (On one socket shared by all,
whichever worker wakes first accepts every connection then waiting: a client that opens
its keep-alive connections at once, as a load balancer or a load generator does, could
have them all served by one worker while the others idle.) The supervisor binds a
worker's socket before forking it; the worker listens once it is ready to serve, so no
connection waits on a worker still starting, and a dead worker's socket is gone with it:
the other workers take the new connections until its replacement listens.
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


BACKLOG = 4096  # connections the kernel queues for a listening socket


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, which every worker may share (the metrics' own port)."""
    # Not inheritable (workers are forked, which shares it anyway): a process a worker
    # starts must not hold the port open once the workers have closed it.
    return socket.create_server((host, port), family=_family(host), backlog=BACKLOG)


def reserve(host: str, port: int) -> socket.socket:
    """A socket bound to the port beside the other workers' (SO_REUSEPORT), not listening
    yet: the worker's server listens on it when it starts serving."""
    family = _family(host)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _free(host: str, port: int) -> int:
    """`port` (for 0, one the kernel picks) once a plain bind shows nothing has it: a port
    in use fails the start at once, even by another run's workers, which SO_REUSEPORT
    alone would let this run's join."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        return int(probe.getsockname()[1])


class Supervisor:
    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        worker: Worker,
        grace: float,
        reload: Callable[[], None] | None = None,
        exited: Callable[[int], None] | None = None,
    ) -> None:
        """`exited` is told the PID of each worker that is gone (its metrics are marked dead)."""
        # Held for the whole run: the port stays this run's while no worker is listening.
        self._anchor = reserve(host, _free(host, port))
        self._address = (host, self._anchor.getsockname()[1])
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
        sock = reserve(*self._address)
        pid = os.fork()
        if pid == 0:  # the worker: it never returns into the supervisor's loop
            code = 0
            try:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the worker's loop handles it
                _follow_parent()
                self._anchor.close()
                self._worker(sock, number)
            except BaseException:
                log.exception("worker %d failed", number)
                code = 1
            finally:
                os._exit(code)
        sock.close()  # the worker's alone: it closes with the worker
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
        self._anchor.close()
        for pid in self._pids:  # each stops listening: new connections are refused
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
