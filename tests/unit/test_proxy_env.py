"""Which proxy an upstream URL goes through: the proxy URL and NO_PROXY's forms."""

from __future__ import annotations

import base64

import pytest

from savegate.httpclient.proxy import NoProxy, environment_secrets, from_environment, parse_proxy


def test_proxy_url_with_credentials():
    proxy = parse_proxy("http://us%40er:p%3Ass@proxy.corp:3128")
    assert (proxy.scheme, proxy.host, proxy.port) == ("http", "proxy.corp", 3128)
    assert proxy.authorization == "Basic " + base64.b64encode(b"us@er:p:ss").decode()
    assert "p:ss" not in repr(proxy) and "p:ss" not in proxy.label


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("proxy.corp:8080", ("http", 8080)),
        ("https://proxy.corp", ("https", 443)),
        ("http://proxy.corp", ("http", 80)),
    ],
)
def test_proxy_url_defaults(url, expected):
    proxy = parse_proxy(url)
    assert (proxy.scheme, proxy.port) == expected and proxy.authorization is None


@pytest.mark.parametrize("url", ["socks5://proxy:1080", "http://", "http://proxy:99999"])
def test_bad_proxy_urls(url):
    with pytest.raises(ValueError):
        parse_proxy(url)


@pytest.mark.parametrize(
    ("value", "host", "port", "bypassed"),
    [
        ("*", "api.openai.com", 443, True),
        ("api.openai.com", "api.openai.com", 443, True),
        ("openai.com", "api.openai.com", 443, True),
        (".openai.com", "api.openai.com", 443, True),
        ("*.openai.com", "api.openai.com", 443, True),
        ("openai.com", "notopenai.com", 443, False),
        ("API.OpenAI.com", "api.openai.com.", 443, True),
        ("api.openai.com:443", "api.openai.com", 443, True),
        ("api.openai.com:8443", "api.openai.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 80, True),
        ("10.0.0.0/8", "11.1.2.3", 80, False),
        ("10.0.0.0/8", "ten.example", 80, False),
        ("192.168.1.5", "192.168.1.5", 80, True),
        ("::1", "::1", 80, True),
        ("[::1]:8080", "::1", 8080, True),
        ("fd00::/8", "fd12::1", 80, True),
        (" localhost , 127.0.0.1 ", "localhost", 80, True),
        ("", "localhost", 80, False),
    ],
)
def test_no_proxy(value, host, port, bypassed):
    assert NoProxy(value).matches(host, port) is bypassed


def test_environment_lowercase_first_and_no_proxy():
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "NO_PROXY": "internal"}
    assert from_environment("https", "api.openai.com", 443, env).host == "lower"
    assert from_environment("https", "llm.internal", 443, env) is None
    assert from_environment("http", "api.openai.com", 80, env) is None  # no HTTP_PROXY


def test_environment_secrets_are_the_credentials():
    env = {"HTTP_PROXY": "http://alice:long-password@proxy:3128", "https_proxy": "nonsense://x"}
    secrets = environment_secrets(env)
    assert "long-password" in secrets
    assert any(s.startswith("Basic ") for s in secrets)


def test_a_malformed_environment_proxy_is_a_config_error(tmp_path, monkeypatch):
    from savegate.config import ConfigError, load_config

    path = tmp_path / "savegate.yaml"
    path.write_text("providers:\n  p: {base_url: 'https://api.example/v1', models: ['*']}\n")
    monkeypatch.setenv("https_proxy", "socks5://proxy:1080")
    with pytest.raises(ConfigError, match="socks5"):
        load_config(str(path))
    monkeypatch.setenv("no_proxy", "api.example")
    assert load_config(str(path)).providers["p"].proxy_server() is None
