"""The gateway serves its own pages and their files: types, caching, no way out of the folder."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page

from tests.conftest import Service
from tests.web.browser import screenshot


@pytest.mark.parametrize(
    ("path", "content_type", "marker"),
    [
        ("/", "text/html; charset=utf-8", b"SaveGate \xc2\xb7 Playground"),
        ("/playground", "text/html; charset=utf-8", b"SaveGate \xc2\xb7 Playground"),
        ("/dashboard", "text/html; charset=utf-8", b"SaveGate \xc2\xb7 Dashboard"),
        ("/static/app.css", "text/css; charset=utf-8", b":root"),
        ("/static/common.js", "text/javascript; charset=utf-8", b"export async function* sseData"),
        ("/static/vendor/chart.umd.js", "text/javascript; charset=utf-8", b"Chart.js v4"),
    ],
)
def test_files_are_served_without_a_key(
    web_gateway: Service, path: str, content_type: str, marker: bytes
):
    response = httpx.get(web_gateway.url + path)
    assert response.status_code == 200
    assert response.headers.get_list("content-type") == [content_type]
    assert marker in response.content
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'self'" in response.headers["content-security-policy"]
    etag = response.headers["etag"]
    again = httpx.get(web_gateway.url + path, headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/static/",
        "/static/../app.py",
        "/static/%2e%2e/routes.py",
        "/static/..%2fstatic.py",
        "/static/vendor",
        "/static/static.py",
        "/static/missing.js",
        "/static//etc/passwd",
        "/dashboard/",
    ],
)
def test_nothing_else_is_reachable(web_gateway: Service, path: str):
    response = httpx.get(web_gateway.url + path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_pages_load_only_their_own_files(page: Page, web_gateway: Service):
    """No CDN: every request a page makes goes to the gateway, and no script fails."""
    origins: set[str] = set()
    errors: list[str] = []
    page.on("request", lambda request: origins.add(request.url.split("/")[2]))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    for path, name in (("/", "playground-empty"), ("/dashboard", "dashboard-empty")):
        page.goto(web_gateway.url + path)
        page.wait_for_load_state("networkidle")
        screenshot(page, name)
    assert origins == {f"127.0.0.1:{web_gateway.port}"}
    assert errors == []
