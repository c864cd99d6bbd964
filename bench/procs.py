"""Processes the harness starts: free ports, start, wait, stop by PID, and /proc figures."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """A process this harness started; `stop` ends it and the descendants it had."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        family = tree_pids(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.popen.wait(5)
        deadline = time.monotonic() + 5
        for pid in family[1:]:  # descendants recorded before the stop
            while _exists(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _exists(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Procs:
    """Everything started, so that all of it is stopped at the end (newest first)."""

    started: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        argv: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        proc = Proc(name, popen, log)
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.started:
            self.started.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self.started)):
            self.stop(proc)


def wait_tcp(port: int, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(
        f"{proc.name} did not listen on {port} in {timeout:.0f}s:\n{proc.log_tail()}"
    )


def tree_pids(root: int) -> list[int]:
    """`root` and its descendants, from /proc/<pid>/task/<tid>/children."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                text = Path(f"/proc/{pid}/task/{tid}/children").read_text()
            except OSError:
                continue
            todo.extend(int(child) for child in text.split())
    return pids


def tree_rss(root: int) -> int:
    """Resident bytes summed over the process tree (shared pages count once per process)."""
    total = 0
    for pid in tree_pids(root):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    return total


def process_cpu(root: int) -> dict[int, float]:
    """User + system CPU seconds of each process of the tree, threads included."""
    found = {}
    for pid in tree_pids(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return found


def tree_cpu(root: int) -> float:
    """User + system CPU seconds of the process tree, threads included."""
    return sum(process_cpu(root).values())


def busiest_share(before: dict[int, float], after: dict[int, float]) -> float | None:
    """The busiest process's share of the tree's CPU between two `process_cpu` readings:
    1 / N when N workers shared the work evenly, 1 when one did it all."""
    used = [after[pid] - before.get(pid, 0.0) for pid in after]
    return max(used) / sum(used) if sum(used) > 0 else None


def wait_quiet(root: int, limit: float = 20.0, busy: float = 0.05) -> None:
    """Wait until the tree uses under `busy` of a core (work left from a run is done)."""
    deadline = time.monotonic() + limit
    last = tree_cpu(root)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = tree_cpu(root)
        if now - last < busy * 0.2:
            return
        last = now


class PeakSampler:
    """Samples each watched tree's RSS every `period` s and keeps the peak per phase."""

    def __init__(self, period: float = 0.1) -> None:
        self.period = period
        self.roots: dict[str, int] = {}
        self.phase = "load"
        self.peaks: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def watch(self, name: str, root: int) -> None:
        self.roots[name] = root

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for name, root in list(self.roots.items()):
                rss = tree_rss(root)
                phases = self.peaks.setdefault(name, {})
                phases[self.phase] = max(phases.get(self.phase, 0), rss)


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def children_cpu() -> float:
    """CPU seconds of this process's children that have been waited for (a finished wrk)."""
    times = os.times()
    return times.children_user + times.children_system


def own_cpu() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system
