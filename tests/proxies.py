"""A real forward proxy for the tests: Debian's tinyproxy, on a free port with a config
file and a log of its own, in the foreground, stopped by its PID."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT, free_port, stop

TINYPROXY = "/usr/bin/tinyproxy"


@dataclass
class TinyProxy:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """The request lines it received, in order (`CONNECT host:port HTTP/1.1`, …)."""
        return re.findall(r"Request \(file descriptor \d+\): (.+)$", self.text(), re.M)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextmanager
def tinyproxy(
    workdir: Path, basic_auth: tuple[str, str] | None = None, connect_ports: tuple[int, ...] = ()
) -> Iterator[TinyProxy]:
    """Given `connect_ports`, it refuses CONNECT to any other port (403), as many corporate
    proxies do to all but 443."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "tinyproxy.log"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 600",
        f'LogFile "{log}"',
        "LogLevel Connect",  # a line per request, CONNECT included
        "MaxClients 200",
        "Allow 127.0.0.1",
    ]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    lines += [f"ConnectPort {port}" for port in connect_ports]
    config = workdir / "tinyproxy.conf"
    config.write_text("\n".join(lines) + "\n")
    with (workdir / "tinyproxy.out").open("wb") as out:
        process = subprocess.Popen(
            [TINYPROXY, "-d", "-c", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_port(port, process, "tinyproxy")
        yield TinyProxy(process, port, log)
    finally:
        stop(process)


@contextmanager
def tls_front(workdir: Path, target: int, cert: Path, key: Path) -> Iterator[int]:
    """A TLS listener relaying to the local port `target` (`tests.tls_relay`): tinyproxy
    behind it is an `https://` proxy. Yields its port."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.tls_relay", "--port", str(port), "--to", str(target)]
    argv += ["--certfile", str(cert), "--keyfile", str(key)]
    with (workdir / "tls-front.log").open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        wait_port(port, process, "the TLS front")
        yield port
    finally:
        stop(process)


def wait_port(port: int, process: subprocess.Popen[bytes], name: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start") from None
            time.sleep(0.05)
