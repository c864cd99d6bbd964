"""Upstream calls through a real forward proxy (tinyproxy): CONNECT tunnels to a TLS
upstream kept alive across requests, absolute-form requests to a plain one, NO_PROXY and
the per-provider `proxy` override, proxy credentials, and a proxy that fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Service, free_port, self_signed, start_fake_upstream, start_gateway, stop
from tests.fakes.upstream import assemble, fixture_events
from tests.proxies import TinyProxy, tinyproxy, tls_front

MESSAGES = [{"role": "user", "content": "hello"}]
ANSWER = assemble(fixture_events("text-basic"))["choices"][0]["message"]["content"]
NAMES = ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")


def proxy_env(**values: str) -> dict[str, str]:
    """Both spellings of every proxy variable: the given values, the others empty."""
    env = {}
    for name in NAMES:
        value = values.get(name, "")
        env[name] = env[name.lower()] = value
    return env


def client(service: Service) -> openai.OpenAI:
    return openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)


def ask(service: Service, model: str = "text-basic") -> tuple[str | None, str]:
    """The answer's text, non-stream then streamed."""
    whole = client(service).chat.completions.create(model=model, messages=MESSAGES)
    stream = client(service).chat.completions.create(model=model, messages=MESSAGES, stream=True)
    return whole.choices[0].message.content, "".join(
        c.choices[0].delta.content or "" for c in stream
    )


def as_(name: str) -> dict[str, str]:
    """A public model name the fake answers as `text-basic`."""
    return {"name": name, "upstream": "text-basic"}


def gateway(workdir: Path, providers: dict, env: dict[str, str]) -> Service:
    config = {"local": {"enabled": False}, "providers": providers}
    return start_gateway(workdir, config, env=env)


@pytest.fixture(scope="module")
def tls_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Path]]:
    """The fake upstream over HTTPS (self-signed for 127.0.0.1), keeping connections a
    minute, so a tunnel's reuse depends on the gateway alone."""
    workdir = tmp_path_factory.mktemp("tls-upstream")
    cert, key = self_signed(workdir)
    options = ("--certfile", str(cert), "--keyfile", str(key), "--keep-alive", "60")
    service = start_fake_upstream(workdir, *options, tls=True)
    yield service, cert
    stop(service.process)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyProxy]:
    with tinyproxy(tmp_path_factory.mktemp("tinyproxy")) as running:
        yield running


def test_https_upstream_through_a_connect_tunnel_kept_alive(tmp_path, tls_upstream, proxy):
    upstream, cert = tls_upstream
    provider = {"base_url": upstream.base_url, "models": ["*"], "ca_bundle": str(cert)}
    service = gateway(tmp_path, {"fake": provider}, proxy_env(HTTPS_PROXY=proxy.url()))
    try:
        before = len(proxy.requests())
        for _ in range(3):
            assert ask(service) == (ANSWER, ANSWER)
        assert f"through the proxy http://127.0.0.1:{proxy.port}" in service.output()
        # One tunnel carried all six calls, streams included.
        assert proxy.requests()[before:] == [f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1"]
    finally:
        stop(service.process)


def test_no_proxy_and_the_per_provider_override(tmp_path, tls_upstream, proxy, fake_upstream):
    """NO_PROXY bypasses the proxy the environment names; `proxy: none` ignores it, and a
    provider's own `proxy` URL is used whatever the environment says."""
    upstream, cert = tls_upstream
    dead = f"http://127.0.0.1:{free_port()}"
    tls = {"base_url": upstream.base_url, "ca_bundle": str(cert)}
    providers = {
        "bypassed": {**tls, "models": ["text-basic"]},
        "direct": {**tls, "models": [as_("direct")], "proxy": "none"},
        "proxied": {
            "base_url": fake_upstream.base_url,
            "models": [as_("proxied")],
            "proxy": proxy.url(),
        },
    }
    env = proxy_env(HTTPS_PROXY=dead, HTTP_PROXY=dead, NO_PROXY="localhost,127.0.0.0/8")
    env["https_proxy"] = ""  # the uppercase spelling alone still counts
    service = gateway(tmp_path, providers, env)
    try:
        before = len(proxy.requests())
        assert ask(service) == (ANSWER, ANSWER)
        assert proxy.requests()[before:] == []
        assert ask(service, "direct") == (ANSWER, ANSWER)
        assert proxy.requests()[before:] == []
        assert ask(service, "proxied") == (ANSWER, ANSWER)
        target = f"POST http://127.0.0.1:{fake_upstream.port}/v1/chat/completions HTTP/1.1"
        assert proxy.requests()[before:] == [target, target]
    finally:
        stop(service.process)


def test_plain_http_upstream_through_the_proxy(tmp_path, fake_upstream, proxy):
    provider = {"base_url": fake_upstream.base_url, "models": ["*"]}
    service = gateway(tmp_path, {"fake": provider}, proxy_env(HTTP_PROXY=proxy.url()))
    try:
        before = len(proxy.requests())
        assert ask(service) == (ANSWER, ANSWER)
        target = f"POST http://127.0.0.1:{fake_upstream.port}/v1/chat/completions HTTP/1.1"
        assert proxy.requests()[before:] == [target, target]
    finally:
        stop(service.process)


def test_an_https_proxy(tmp_path, tls_upstream, proxy, fake_upstream):
    """TLS to the proxy (verified with the provider's ca_bundle), then TLS to the upstream
    inside the CONNECT tunnel; and plain http upstreams through the same TLS proxy."""
    upstream, cert = tls_upstream
    with tls_front(tmp_path, proxy.port, cert, cert.with_name("key.pem")) as port:
        via = {"proxy": f"https://127.0.0.1:{port}", "ca_bundle": str(cert)}
        providers = {
            "tls": {"base_url": upstream.base_url, "models": [as_("tls")], **via},
            "plain": {"base_url": fake_upstream.base_url, "models": [as_("plain")], **via},
        }
        service = gateway(tmp_path / "gw", providers, proxy_env())
        try:
            before = len(proxy.requests())
            assert ask(service, "tls") == (ANSWER, ANSWER)
            assert ask(service, "plain") == (ANSWER, ANSWER)
            target = f"POST http://127.0.0.1:{fake_upstream.port}/v1/chat/completions HTTP/1.1"
            connect = f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1"
            assert proxy.requests()[before:] == [connect, target, target]
        finally:
            stop(service.process)


def test_proxy_credentials_right_and_wrong(tmp_path, tls_upstream, fake_upstream):
    """Right credentials open the tunnel; none or wrong ones are a clear 502, and the
    password is never logged."""
    upstream, cert = tls_upstream
    with tinyproxy(tmp_path / "proxy", basic_auth=("alice", "s3cret-proxy-pass")) as guarded:
        tls = {"base_url": upstream.base_url, "models": [as_("tls")], "ca_bundle": str(cert)}
        plain = {"base_url": fake_upstream.base_url, "models": [as_("plain")]}
        good = guarded.url("alice:s3cret-proxy-pass")
        env = proxy_env(HTTPS_PROXY=good, HTTP_PROXY=good)
        service = gateway(tmp_path / "good", {"tls": tls, "plain": plain}, env)
        try:
            assert ask(service, "plain") == (ANSWER, ANSWER)
            assert ask(service, "tls") == (ANSWER, ANSWER)
            assert "s3cret-proxy-pass" not in service.output()
        finally:
            stop(service.process)
        assert f"CONNECT 127.0.0.1:{upstream.port} HTTP/1.1" in guarded.requests()

        # No credentials: the proxy's 407, to a CONNECT and to an absolute-form request.
        # Wrong ones: tinyproxy answers 401 instead, which to a CONNECT is the proxy's own.
        cases = {"": ("plain", "tls"), "alice:wrong-password": ("tls",)}
        for credentials, models in cases.items():
            env = proxy_env(
                HTTPS_PROXY=guarded.url(credentials), HTTP_PROXY=guarded.url(credentials)
            )
            service = gateway(
                tmp_path / f"bad{len(credentials)}", {"tls": tls, "plain": plain}, env
            )
            try:
                for model in models:
                    for stream in (False, True):
                        with pytest.raises(openai.APIStatusError) as caught:
                            client(service).chat.completions.create(
                                model=model, messages=MESSAGES, stream=stream
                            )
                        assert caught.value.status_code == 502
                        assert caught.value.body["code"] == "upstream_proxy_auth_error"
                        assert "proxy credentials" in caught.value.message
                assert "wrong-password" not in service.output()
            finally:
                stop(service.process)


def test_a_refused_tunnel(tmp_path, tls_upstream):
    upstream, cert = tls_upstream
    with tinyproxy(tmp_path / "proxy", connect_ports=(443,)) as strict:
        provider = {"base_url": upstream.base_url, "models": ["*"], "ca_bundle": str(cert)}
        service = gateway(tmp_path / "gw", {"fake": provider}, proxy_env(HTTPS_PROXY=strict.url()))
        try:
            for stream in (False, True):
                with pytest.raises(openai.APIStatusError) as caught:
                    client(service).chat.completions.create(
                        model="text-basic", messages=MESSAGES, stream=stream
                    )
                assert caught.value.status_code == 502
                assert caught.value.body["code"] == "upstream_proxy_error"
                assert "refused the tunnel (HTTP 403" in caught.value.message
        finally:
            stop(service.process)


def test_a_proxy_that_is_down_fails_over(tmp_path, tls_upstream):
    """A dead proxy is a 502 naming it as the cause, never a 500; a model group with a
    deployment that goes direct is served by it."""
    upstream, cert = tls_upstream
    dead = f"http://127.0.0.1:{free_port()}"
    tls = {"base_url": upstream.base_url, "ca_bundle": str(cert)}
    providers = {
        "behind": {**tls, "models": ["text-basic"], "proxy": dead},
        "direct": {**tls, "models": [], "proxy": "none"},  # only in the group below
    }
    config = {
        "local": {"enabled": False},
        "providers": providers,
        "models": {
            "both": {
                "strategy": "weighted",
                "deployments": [
                    {"provider": "behind", "model": "text-basic", "weight": 1000},
                    {"provider": "direct", "model": "text-basic", "weight": 0.001},
                ],
            }
        },
        "routing": {"backoff_seconds": 0},
    }
    service = start_gateway(tmp_path, config, env=proxy_env())
    try:
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as caught:
                client(service).chat.completions.create(
                    model="text-basic", messages=MESSAGES, stream=stream
                )
            assert caught.value.status_code == 502
            assert caught.value.body["code"] == "upstream_proxy_error"
            assert "proxy cannot be reached" in caught.value.message
        warned = service.logged("provider behind: proxy", 2)
        assert ask(service, "both") == (ANSWER, ANSWER)
        # Tried first (1000 to 0.001), failed, then served by the direct deployment.
        assert service.logged("provider behind: proxy", warned + 2) == warned + 2
    finally:
        stop(service.process)
