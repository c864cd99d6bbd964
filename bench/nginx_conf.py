"""nginx configurations: the mock upstream and the pure reverse proxy (one worker each).

The mock chooses the answer by path, not by body (nginx cannot read bodies cheaply):
`/json/v1/chat/completions` is the chat.completion JSON, `/sse/v1/chat/completions` the
50-chunk stream. Every gateway is given two upstream base URLs (`…/json/v1`, `…/sse/v1`)
selected by the request's model name (`bench-json`, `bench-stream`), so the upstream path
follows the body's `"stream"` flag for all peers alike. POST to a static file is a 405 in
nginx; `error_page 405 =200 $uri` turns it into a GET of the same file.
"""

from __future__ import annotations

import os
from pathlib import Path


def _common(work: Path, name: str) -> str:
    tmp = work / f"{name}-tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
daemon off;
master_process on;
pid {work}/{name}.pid;
error_log {work}/{name}.error.log warn;
worker_rlimit_nofile 65536;
events {{ worker_connections 16384; multi_accept on; }}
"""


def _http_common(work: Path, name: str) -> str:
    tmp = work / f"{name}-tmp"
    return f"""  access_log off;
  tcp_nodelay on;
  keepalive_timeout 300s;
  keepalive_requests 100000000;
  client_body_buffer_size 64k;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
"""


def mock_upstream(work: Path, port: int, json_body: bytes, sse_body: bytes) -> Path:
    root = work / "mock-root"
    for sub, body in (("json", json_body), ("sse", sse_body)):
        target = root / sub / "v1" / "chat" / "completions"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    conf = work / "mock.conf"
    conf.write_text(
        _common(work, "mock")
        + f"""http {{
{_http_common(work, "mock")}  etag off;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    root {root};
    location /json/ {{ default_type application/json; error_page 405 =200 $uri; }}
    location /sse/ {{
      default_type text/event-stream;
      add_header Cache-Control no-cache;
      error_page 405 =200 $uri;
    }}
  }}
}}
"""
    )
    return conf


def reverse_proxy(work: Path, port: int, upstream: int, slow: int) -> Path:
    conf = work / "proxy.conf"
    conf.write_text(
        _common(work, "proxy")
        + f"""http {{
{_http_common(work, "proxy")}  upstream mock {{ server 127.0.0.1:{upstream}; keepalive 1024;
                  keepalive_requests 100000000; keepalive_timeout 300s; }}
  upstream slow {{ server 127.0.0.1:{slow}; keepalive 1024; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_buffering off;
    proxy_read_timeout 300s;
    location /hold/ {{ proxy_pass http://slow; }}
    location / {{ proxy_pass http://mock; }}
  }}
}}
"""
    )
    return conf


def argv(conf: Path, work: Path) -> list[str]:
    return ["nginx", "-p", str(work), "-c", str(conf), "-e", str(work / "nginx-start.log")]
