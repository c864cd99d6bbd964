"""The web pages' fixtures: the shared Chromium, and a gateway to point it at."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.conftest import Service, start_gateway, stop
from tests.web.browser import browser, page  # noqa: F401  (fixtures)

# The models the web gateway lists: the fake upstream replays `text-basic` and
# `tool-call-single`, `slow` ticks every 50 ms for a minute, and `gpt-image-1` draws.
MODELS = ["text-basic", "slow", "tool-call-single", "gpt-image-1"]


@pytest.fixture(scope="session")
def web_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service
) -> Iterator[Service]:
    """The gateway in front of the fake upstream, with a discount so that savings show."""
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    config = {
        "local": {"enabled": False},
        "providers": {
            "fake": {
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": MODELS,
                "discount": 0.25,
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("web"), config, name="web-gateway")
    yield service
    stop(service.process)
