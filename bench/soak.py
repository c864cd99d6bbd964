"""A long run of mixed traffic: `python -m bench.soak [--minutes 30]` from the repository root.

SaveGate in front of the test suite's fake upstream, driven by a fixed number of clients
that loop over a mix of what real traffic holds: JSON and streamed chat, streams the client
abandons half-way, upstream failures, bad requests, the Messages and Responses APIs (stored
conversations included) and embeddings. Every answer is checked; the gateway's RSS is
sampled, and its slope after the warm-up is the figure that matters: flat means no leak.
Writes `bench/SOAK.md` and `bench/soak.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.procs import Procs, free_port, tree_rss, wait_tcp

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "hello"}]
UPSTREAM_KEY = "sk-soak-upstream"


@dataclass
class Tally:
    """What the clients saw: answers by kind, and anything that was not as expected."""

    done: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def wrong(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {detail[:300]}")


async def _chat(client: httpx.AsyncClient, tally: Tally) -> None:
    reply = await client.post(
        "/v1/chat/completions", json={"model": "text-basic", "messages": MESSAGES}
    )
    if reply.status_code != 200 or not reply.json()["choices"][0]["message"]["content"]:
        tally.wrong("chat", f"{reply.status_code} {reply.text}")


async def _stream(client: httpx.AsyncClient, tally: Tally) -> None:
    body = {"model": "text-basic", "messages": MESSAGES, "stream": True}
    async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
        text = (await reply.aread()).decode()
    if reply.status_code != 200 or not text.endswith("data: [DONE]\n\n"):
        tally.wrong("stream", f"{reply.status_code} {text[-200:]}")


async def _abandoned(client: httpx.AsyncClient, tally: Tally) -> None:
    """A stream the client leaves after two reads: the upstream call must be cancelled."""
    body = {"model": "slow", "messages": MESSAGES, "stream": True}
    async with client.stream("POST", "/v1/chat/completions", json=body) as reply:
        reads = 0
        async for _ in reply.aiter_bytes():
            reads += 1
            if reads == 2:
                break
    if reply.status_code != 200:
        tally.wrong("abandoned", str(reply.status_code))


async def _upstream_failure(client: httpx.AsyncClient, tally: Tally) -> None:
    reply = await client.post(
        "/v1/chat/completions", json={"model": "status-500", "messages": MESSAGES}
    )
    if reply.status_code != 500 or "error" not in reply.json():
        tally.wrong("upstream_failure", f"{reply.status_code} {reply.text}")


async def _bad_request(client: httpx.AsyncClient, tally: Tally) -> None:
    reply = await client.post("/v1/chat/completions", json={"model": "text-basic"})
    if reply.status_code != 400:
        tally.wrong("bad_request", f"{reply.status_code} {reply.text}")


async def _messages(client: httpx.AsyncClient, tally: Tally) -> None:
    body = {"model": "text-basic", "max_tokens": 50, "messages": MESSAGES, "stream": True}
    async with client.stream("POST", "/v1/messages", json=body) as reply:
        text = (await reply.aread()).decode()
    if reply.status_code != 200 or "event: message_stop" not in text:
        tally.wrong("messages", f"{reply.status_code} {text[-200:]}")


async def _conversation(client: httpx.AsyncClient, tally: Tally) -> None:
    first = await client.post("/v1/responses", json={"model": "text-basic", "input": "hello"})
    if first.status_code != 200:
        tally.wrong("responses", f"{first.status_code} {first.text}")
        return
    previous = first.json()["id"]
    follow = {"model": "text-basic", "input": "and then?", "previous_response_id": previous}
    second = await client.post("/v1/responses", json=follow)
    if second.status_code != 200 or second.json()["status"] != "completed":
        tally.wrong("responses", f"{second.status_code} {second.text}")


async def _embeddings(client: httpx.AsyncClient, tally: Tally) -> None:
    reply = await client.post(
        "/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["a", "b"]}
    )
    if reply.status_code != 200 or len(reply.json()["data"]) != 2:
        tally.wrong("embeddings", f"{reply.status_code} {reply.text}")


# The mix: each client picks by these weights.
MIX = (
    (_chat, 30),
    (_stream, 30),
    (_abandoned, 5),
    (_upstream_failure, 5),
    (_bad_request, 5),
    (_messages, 10),
    (_conversation, 10),
    (_embeddings, 5),
)


async def drive(base_url: str, key: str, seconds: float, clients: int, tally: Tally) -> None:
    """`clients` loops over the mix until `seconds` have passed."""
    actions = [action for action, _ in MIX]
    weights = [weight for _, weight in MIX]
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients)

    async def loop(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            action = random.choices(actions, weights)[0]
            try:
                await action(client, tally)
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                tally.wrong(action.__name__.strip("_"), f"{type(exc).__name__}: {exc}")
            else:
                tally.done[action.__name__.strip("_")] += 1

    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=60, limits=limits
    ) as client:
        await asyncio.gather(*(loop(client) for _ in range(clients)))


def slope_mb_per_hour(samples: list[tuple[float, int]]) -> float | None:
    """Least-squares slope of RSS over time."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_r = sum(r for _, r in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if not var:
        return None
    cov = sum((t - mean_t) * (r - mean_r) for t, r in samples)
    return cov / var * 3600 / 2**20


class Soak:
    """The upstream and the gateway, started on free ports and stopped by PID."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs = Procs()
        self.gateway_pid = 0
        self.base_url = ""
        self.key = ""

    def start(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        python = sys.executable
        fake_port = free_port()
        fake = self.procs.start(
            "fake-upstream",
            [python, "-m", "tests.fakes.upstream", "--port", str(fake_port)],
            self.work / "fake.log",
            cwd=ROOT,
        )
        wait_tcp(fake_port, fake)
        config = {
            "local": {"enabled": False},
            "providers": {
                "fake": {
                    "base_url": f"http://127.0.0.1:{fake_port}/v1",
                    "api_key_env": "SOAK_UPSTREAM_KEY",
                    "models": ["*"],
                }
            },
        }
        config_file = self.work / "savegate.yaml"
        config_file.write_text(json.dumps(config))
        port = free_port()
        argv = [python, "-m", "savegate", "serve", "--port", str(port)]
        argv += ["--data-dir", str(self.work / "data"), "--config", str(config_file)]
        gateway = self.procs.start(
            "savegate",
            argv,
            self.work / "savegate.log",
            env={"SOAK_UPSTREAM_KEY": UPSTREAM_KEY},
            cwd=ROOT,
        )
        wait_tcp(port, gateway, timeout=120)
        deadline = time.monotonic() + 20
        while not self.key and time.monotonic() < deadline:
            found = re.search(r"default key:\s+(\S+)", gateway.log.read_text(errors="replace"))
            self.key = found.group(1) if found else ""
            time.sleep(0.1)
        self.gateway_pid = gateway.pid
        self.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.procs.stop_all()

    def run(self, seconds: float, clients: int, warm_up: float, every: float) -> dict[str, Any]:
        """Drive the mix for `seconds`, sampling RSS every `every` seconds."""
        tally = Tally()
        samples: list[tuple[float, int]] = []
        started = time.monotonic()

        async def sample() -> None:
            while time.monotonic() - started < seconds:
                samples.append((time.monotonic() - started, tree_rss(self.gateway_pid)))
                await asyncio.sleep(every)

        async def both() -> None:
            await asyncio.gather(drive(self.base_url, self.key, seconds, clients, tally), sample())

        asyncio.run(both())
        after_warm_up = [(t, rss) for t, rss in samples if t >= warm_up]
        return {
            "seconds": round(time.monotonic() - started, 1),
            "clients": clients,
            "requests": sum(tally.done.values()),
            "by_kind": dict(tally.done),
            "errors": sum(tally.errors.values()),
            "errors_by_kind": dict(tally.errors),
            "error_examples": tally.examples,
            "rss_start_mb": round(samples[0][1] / 2**20, 1) if samples else None,
            "rss_after_warm_up_mb": round(after_warm_up[0][1] / 2**20, 1)
            if after_warm_up
            else None,
            "rss_end_mb": round(samples[-1][1] / 2**20, 1) if samples else None,
            "rss_slope_mb_per_hour": slope_mb_per_hour(after_warm_up),
            "warm_up_seconds": warm_up,
            "samples": [(round(t, 1), rss) for t, rss in samples],
        }


def _markdown(result: dict[str, Any], command: str) -> str:
    slope = result["rss_slope_mb_per_hour"]
    lines = [
        "# SaveGate soak",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{result['seconds']} s of mixed traffic from {result['clients']} clients "
        f"against the test suite's fake upstream.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| requests | {result['requests']:,} |",
        f"| errors (answers not as expected) | {result['errors']} |",
        f"| RSS at start / after {result['warm_up_seconds']:.0f} s warm-up / at end, MB | "
        f"{result['rss_start_mb']} / {result['rss_after_warm_up_mb']} / {result['rss_end_mb']} |",
        f"| RSS slope after warm-up, MB per hour | {'-' if slope is None else f'{slope:+.2f}'} |",
        "",
        "Requests by kind: "
        + ", ".join(f"{kind} {count:,}" for kind, count in sorted(result["by_kind"].items()))
        + ".",
        "",
    ]
    if result["error_examples"]:
        lines += ["Errors:", "", *[f"- {e}" for e in result["error_examples"]], ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "bench")
    args = parser.parse_args()
    seconds = args.minutes * 60
    soak = Soak(ROOT / "bench" / ".work" / "soak")
    try:
        soak.start()
        result = soak.run(seconds, args.clients, warm_up=min(300.0, seconds / 5), every=5.0)
    finally:
        soak.stop()
    command = " ".join(["python -m bench.soak", *sys.argv[1:]])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "SOAK.md").write_text(_markdown(result, command))
    print(_markdown(result, command))
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
