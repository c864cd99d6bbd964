"""The deployment topology, for real: nginx (with `deploy/nginx/savegate.conf` itself) in
front of two `savegate serve` replicas of two workers each, on the machine's PostgreSQL
and Redis, in a database and a key prefix of the test's own."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.conftest import ROOT, Service, free_port, start_gateway, stop, wait_http
from tests.stores import database

NGINX_CONF = ROOT / "deploy" / "nginx" / "savegate.conf"
REDIS_URL = "redis://127.0.0.1:6379/0"


def nginx_config(work: Path, listen: int, replicas: list[int]) -> Path:
    """The deploy file with this test's addresses, in an nginx.conf of its own."""
    site = NGINX_CONF.read_text()
    for number, port in enumerate(replicas, start=1):
        site = site.replace(f"server savegate-{number}:8000", f"server 127.0.0.1:{port}")
    assert "savegate-" not in site, "the deploy file names more replicas than the test runs"
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    tmp = work / "nginx-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = work / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx.error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
{site}
}}
"""
    )
    return conf


@dataclass
class Cluster:
    work: Path
    config: dict
    ports: list[int]
    replicas: list[Service] = field(default_factory=list)
    nginx: subprocess.Popen[bytes] | None = None
    nginx_port: int = 0
    keys: dict[str, str] = field(default_factory=dict)
    generation: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}/v1"

    def start_replica(self, index: int) -> Service:
        self.generation += 1
        replica = start_gateway(
            self.work / f"replica-{index}",
            self.config,
            name=f"replica-{index}-{self.generation}",
            port=self.ports[index],
            args=("--workers", "2"),
        )
        self.keys = self.keys or replica.keys
        if index < len(self.replicas):
            self.replicas[index] = replica
        else:
            self.replicas.append(replica)
        return replica

    def restart(self, index: int) -> None:
        """SIGTERM (the replica drains), then the same replica again on its port."""
        stop(self.replicas[index].process)
        self.start_replica(index)

    def start_nginx(self) -> None:
        self.nginx_port = free_port()
        conf = nginx_config(self.work, self.nginx_port, self.ports)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        log = (self.work / "nginx.log").open("wb")
        self.nginx = subprocess.Popen(
            [nginx, "-c", str(conf), "-e", str(self.work / "nginx.error.log")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_http(f"http://127.0.0.1:{self.nginx_port}/health", self.nginx, self.work / "nginx.log")

    def stop(self) -> None:
        if self.nginx is not None:
            stop(self.nginx)
        for replica in self.replicas:
            stop(replica.process)


@dataclass
class PrivateRedis:
    """A Redis server of the test's own (nothing on disk), to restart at will."""

    work: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    password: str | None = None  # then clients must AUTH with it

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(self.work)]
        argv += ["--requirepass", self.password] if self.password else []
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        wait_for(lambda: _answers(self.url), timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def _answers(url: str) -> bool:
    client = redis.Redis.from_url(url)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


@contextmanager
def cluster(
    work: Path, upstream_url: str, redis_url: str = REDIS_URL, **extra: object
) -> Iterator[Cluster]:
    """Two replicas behind nginx, sharing PostgreSQL and a Redis prefix of their own."""
    prefix = f"savegate-test-{secrets.token_hex(4)}:"
    with database("postgres", work) as url:
        config = {
            "database_url": url,
            "redis_url": redis_url,
            "redis_prefix": prefix,
            "local": {"enabled": False},
            "usage": {"flush_seconds": 0.2},
            "prices": {"text-basic": {"input": 1.0, "output": 2.0}},
            "providers": {"fake": {"base_url": upstream_url, "models": ["*"]}},
            **extra,
        }
        running = Cluster(work, config, [free_port(), free_port()])
        try:
            running.start_replica(0)
            running.start_replica(1)
            running.start_nginx()
            yield running
        finally:
            running.stop()
            if _answers(redis_url):
                client = redis.Redis.from_url(redis_url)
                for key in client.scan_iter(f"{prefix}*"):
                    client.delete(key)
                client.close()


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
