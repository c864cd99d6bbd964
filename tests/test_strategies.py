"""Deployment ordering: strategies, cooldowns and upstream limits (pure, no server)."""

from __future__ import annotations

import time
from collections import Counter

import httpx

from savegate.routing.health import DeploymentHealth, parse_reset
from savegate.routing.router import Deployment, ModelGroup
from savegate.routing.strategies import cheapest, least_inflight, lowest_latency, weighted


def deployment(name: str, weight: float = 1.0) -> Deployment:
    return Deployment(
        name,
        provider=None,
        health=DeploymentHealth(2, 30.0),  # type: ignore[arg-type]
        weight=weight,
    )


def test_weighted_leads_in_proportion():
    heavy, light = deployment("heavy", 3), deployment("light", 1)
    firsts = Counter(weighted([heavy, light])[0].name for _ in range(4000))
    assert 0.7 < firsts["heavy"] / 4000 < 0.8


def test_least_inflight_prefers_the_idle():
    busy, idle = deployment("busy"), deployment("idle")
    busy.health.inflight = 5
    assert [d.name for d in least_inflight([busy, idle])] == ["idle", "busy"]


def test_lowest_latency_measures_everyone_then_prefers_the_fast():
    slow, fast, new = deployment("slow"), deployment("fast"), deployment("new")
    slow.health.latency, fast.health.latency = 0.9, 0.1
    assert [d.name for d in lowest_latency([slow, fast, new])] == ["new", "fast", "slow"]


def test_cheapest_then_fastest_then_heaviest_and_unpriced_last():
    prices = {"dear": 3.0, "cheap": 1.0, "cheap-slow": 1.0, "cheap-light": 1.0, "free?": None}
    dear, cheap, slow = deployment("dear"), deployment("cheap", 2), deployment("cheap-slow", 2)
    light, unpriced = deployment("cheap-light", 1), deployment("free?")
    cheap.health.latency, slow.health.latency, light.health.latency = 0.1, 0.5, 0.1
    ordered = cheapest([unpriced, dear, slow, light, cheap], lambda d: prices[d.name])
    assert [d.name for d in ordered] == ["cheap", "cheap-light", "cheap-slow", "dear", "free?"]


def test_cheapest_measures_an_unmeasured_deployment_of_the_same_price_first():
    known, new = deployment("known"), deployment("new")
    known.health.latency = 0.2
    assert [d.name for d in cheapest([known, new], lambda d: 1.0)] == ["new", "known"]


def test_cooldown_then_one_probe():
    health = DeploymentHealth(failure_threshold=2, cooldown_seconds=0.05)
    for _ in range(2):
        health.begin()
        health.failed(None, time.monotonic())
    assert not health.available(time.monotonic())
    time.sleep(0.06)
    assert health.available(time.monotonic())
    health.begin()  # the probe
    assert not health.available(time.monotonic())
    health.answered(0.01)
    health.released()
    assert health.available(time.monotonic()) and health.failures == 0


def test_spent_keys_go_last():
    spent, fresh = deployment("spent"), deployment("fresh")
    spent.health.observe(
        httpx.Headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "20s"})
    )
    group = ModelGroup("m", [spent, fresh], "weighted")
    assert all(group.ordered(time.monotonic())[-1] is spent for _ in range(50))


def test_reset_durations():
    now = time.time()
    assert parse_reset("6m0s", now) == 360
    assert parse_reset("12ms", now) == 0.012
    assert parse_reset("1.5s", now) == 1.5
    assert 9 < parse_reset(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 10)), now) <= 10
    assert parse_reset("soon", now) is None
