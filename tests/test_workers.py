"""`savegate serve --workers N`: workers share the port, connections opened together are
spread over them, a dead one is replaced, and SIGTERM drains them all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai

from tests.conftest import Service, start_gateway, stop

MESSAGES = [{"role": "user", "content": "hello"}]


def _workers(service: Service) -> dict[int, int]:
    """Worker number → pid, as the supervisor last logged them."""
    found: dict[int, int] = {}
    for number, pid in re.findall(r"worker (\d+) started \(pid (\d+)\)", service.output()):
        found[int(number)] = int(pid)
    return found


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _sockets(pid: int, port: int, state: str) -> int:
    """How many of `pid`'s TCP sockets on local `port` are in `state` (/proc/net/tcp:
    01 established, 0A listening)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        count += local_port == port and fields[3] == state and fields[9] in inodes
    return count


def _two_workers(tmp_path: Path, fake_upstream: Service) -> Service:
    config = {
        "local": {"enabled": False},
        "server": {"workers": 2},
        "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["*"]}},
    }
    return start_gateway(tmp_path, config)


def test_connections_opened_at_once_are_spread_over_the_workers(tmp_path, fake_upstream: Service):
    """A client opening its keep-alive connections together (a load balancer, wrk) has
    them served by every worker, not all by whichever woke first."""
    service = _two_workers(tmp_path, fake_upstream)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pids = list(_workers(service).values())
            if len(pids) == 2 and all(_sockets(pid, service.port, "0A") for pid in pids):
                break
            time.sleep(0.1)
        conns = [socket.create_connection(("127.0.0.1", service.port)) for _ in range(16)]
        try:
            for conn in conns:
                conn.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            for conn in conns:
                assert conn.recv(65536).startswith(b"HTTP/1.1 200")
            served = [_sockets(pid, service.port, "01") for pid in pids]
        finally:
            for conn in conns:
                conn.close()
        assert sum(served) == 16
        assert min(served) >= 1, served  # all on one worker: 2 in 65,536 when spread
        # The port is this run's: another run's workers are not let in beside these.
        config_file = tmp_path / "gateway.yaml"
        second = [sys.executable, "-m", "savegate", "serve", "--config", str(config_file)]
        second += ["--data-dir", str(tmp_path / "second"), "--port", str(service.port)]
        done = subprocess.run(second, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "Address already in use" in done.stdout + done.stderr
    finally:
        stop(service.process)


def test_workers_share_the_port_and_one_that_dies_is_replaced(tmp_path, fake_upstream: Service):
    service = _two_workers(tmp_path, fake_upstream)
    try:
        deadline = time.monotonic() + 60
        while len(_workers(service)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        first = _workers(service)
        assert set(first) == {1, 2}
        client = openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)
        for _ in range(20):
            assert client.chat.completions.create(model="text-basic", messages=MESSAGES).choices
        os.kill(first[1], signal.SIGKILL)
        while _workers(service).get(1) == first[1] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _workers(service)[1] != first[1]
        # Meanwhile, and after, every request is answered by the other worker: a connection
        # the dead one held is gone with it, and the SDK's retry opens a new one.
        client = openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=2)
        for _ in range(20):
            assert client.chat.completions.create(model="text-basic", messages=MESSAGES).choices
        assert "worker 1 exited (signal SIGKILL)" in service.output()
    finally:
        stop(service.process)
    assert not any(_alive(pid) for pid in _workers(service).values())


def test_sigterm_drains_every_worker(tmp_path, fake_upstream: Service):
    service = _two_workers(tmp_path, fake_upstream)
    headers = {"Authorization": f"Bearer {service.key}"}
    body = {"model": "ticks-40", "messages": MESSAGES, "stream": True}  # 2 s each
    bodies: list[bytes] = []
    started = threading.Barrier(5, timeout=30)

    def one() -> None:
        with httpx.stream(
            "POST", service.base_url + "/chat/completions", json=body, headers=headers, timeout=30
        ) as response:
            chunks = response.iter_bytes()
            received = next(chunks)
            started.wait()
            bodies.append(received + b"".join(chunks))

    threads = [threading.Thread(target=one) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        started.wait()
        service.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        try:
            httpx.get(service.url + "/health", timeout=2)
            refused = False
        except httpx.ConnectError:
            refused = True
        for thread in threads:
            thread.join(timeout=30)
        assert service.process.wait(timeout=30) == 0
    finally:
        stop(service.process)
    assert refused  # no new connection once the drain began
    assert len(bodies) == 4
    assert all(b.endswith(b"data: [DONE]\n\n") and b.count(b"tick") == 40 for b in bodies)
    assert not any(_alive(pid) for pid in _workers(service).values())
