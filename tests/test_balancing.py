"""`least_inflight` over long streams: a stream counts as in flight until it ends, so
concurrent streams spread evenly over a group's deployments."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections import Counter

import httpx
import openai

from tests.conftest import Service, start_gateway, stop

STREAMS = 10


def test_least_inflight_spreads_long_streams_evenly(tmp_path, fake_upstream: Service):
    tag = secrets.token_hex(4)
    keys = {f"BALANCE_KEY_{i}": f"sk-balance-{tag}-{i}" for i in (1, 2)}
    os.environ.update(keys)
    config = {
        "local": {"enabled": False},
        "providers": {
            "pair": {"base_url": fake_upstream.base_url, "api_key_env": list(keys), "models": []}
        },
        # Each stream lasts 2 s (40 chunks, 50 ms apart): they all overlap.
        "models": {
            "long": {
                "strategy": "least_inflight",
                "deployments": [{"provider": "pair", "model": "ticks-40"}],
            }
        },
    }
    gateway = start_gateway(tmp_path, config)
    try:
        asyncio.run(_overlapping_streams(gateway))
    finally:
        stop(gateway.process)
    seen = httpx.get(fake_upstream.url + "/_log").json()["requests"]
    spread = Counter(
        request["authorization"]
        for request in seen
        if (request["authorization"] or "").startswith(f"Bearer sk-balance-{tag}-")
    )
    assert sorted(spread.values()) == [STREAMS // 2, STREAMS // 2], spread


async def _overlapping_streams(gateway: Service) -> None:
    client = openai.AsyncOpenAI(api_key=gateway.key, base_url=gateway.base_url)
    streams = []
    for _ in range(STREAMS):
        stream = await client.chat.completions.create(
            model="long", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        await anext(aiter(stream))  # started: the next one sees this one in flight
        streams.append(stream)

    async def drain(stream: openai.AsyncStream) -> None:  # type: ignore[type-arg]
        async for _ in stream:
            pass

    await asyncio.gather(*(drain(stream) for stream in streams))
    await client.close()
