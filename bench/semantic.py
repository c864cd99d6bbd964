"""Semantic cache latency at concurrency 1: `python -m bench.cache --semantic [--quick]`.

One SaveGate, its semantic cache on for `bench-json-sem` and `bench-stream-sem` (the
embedded model embeds), the nginx mock upstream behind every route. Sequential requests,
each phase interleaved with the others so that the machine's load moves them alike:

- uncached: a new prompt on a route without the semantic cache (the baseline);
- embedding: a new prompt to `/v1/embeddings` of the embedded model (what a miss adds);
- miss: a new prompt on a semantic route: embedding, search, upstream call, kept;
- hit, same text: a kept prompt again, case changed (the same once normalised: found
  without an embedding);
- hit, near: a kept prompt with a word added (embedded, then found by similarity).

Prompts are random sentences of common words (seeded). Reported: p50 and p90 of each, the
p50 added over uncached, how many near-duplicates hit and how many new prompts hit by
mistake, and the in-process search alone (`VectorIndex.nearest`) at 1,000 and 10,000
rows of SmolLM2's 576 dimensions. Writes `bench/SEMANTIC.md` and `bench/semantic.json`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench import install, targets
from bench.client import Route
from bench.fixtures import canned
from bench.meta import machine_and_versions
from bench.procs import Procs
from savegate.cache.entry import Entry
from savegate.cache.vectors import VectorIndex, text_key

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work" / "semantic"
SAVEGATE = str(Path(sys.executable).parent / "savegate")
PHASES = ("uncached", "embedding", "miss", "hit_same", "hit_near")
EMBEDDED = "SmolLM2-135M-Instruct"
_VOCABULARY = """river stone garden window coffee planet music winter dragon yellow market
engine forest silver travel orange doctor castle paper school summer bridge mountain ocean
letter rocket island camera pillow violin tiger bottle lemon candle desert harbor basket
puzzle shadow thunder velvet wizard anchor meadow falcon copper"""
WORDS = tuple(_VOCABULARY.split())


_EMBED_BODY = json.dumps({"model": EMBEDDED, "input": ""}).encode()


def _prompt(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(8)).capitalize() + "?"


def _post(http: httpx.Client, route: Route, prompt: str) -> tuple[float, str]:
    body = json.loads(route.body)
    if "input" in body:
        body["input"] = prompt
    else:
        body["messages"][-1]["content"] = prompt
    started = time.perf_counter()
    answer = http.post(route.url(), json=body, headers=route.headers)
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise SystemExit(f"{route.url()}: {answer.status_code} {answer.text[:200]}")
    return elapsed, answer.headers.get("x-savegate-cache", "-")


def _measure(gateway: targets.Target, count: int) -> dict[str, Any]:
    rng = random.Random(16)
    runs: dict[str, Any] = {}
    with httpx.Client(timeout=300) as http:
        _post(http, gateway.routes["json-sem"], "Warm up the embedded model.")
        for mode in ("json", "stream"):
            plain, sem = gateway.routes[mode], gateway.routes[f"{mode}-sem"]
            times: dict[str, list[float]] = {phase: [] for phase in PHASES}
            kept, false_hits, near_hits = [], 0, 0
            embed = Route(plain.port, "/v1/embeddings", plain.headers, _EMBED_BODY)
            for _ in range(count):
                times["uncached"].append(_post(http, plain, _prompt(rng))[0])
                times["embedding"].append(_post(http, embed, _prompt(rng))[0])
                prompt = _prompt(rng)
                elapsed, state = _post(http, sem, prompt)
                if state == "miss":
                    times["miss"].append(elapsed)
                    kept.append(prompt)
                else:
                    false_hits += 1
            for index in range(count):
                times["uncached"].append(_post(http, plain, _prompt(rng))[0])
                prompt = kept[index % len(kept)]
                elapsed, state = _post(http, sem, prompt.upper())
                assert state == "hit", state
                times["hit_same"].append(elapsed)
                elapsed, state = _post(http, sem, prompt[:-1] + " please?")
                if state == "hit":
                    near_hits += 1
                    times["hit_near"].append(elapsed)
            runs[mode] = {"times_ms": times, "false_hits": false_hits, "near_hits": near_hits}
            print(f"  {mode}: " + _line(times), flush=True)
    return runs


def _line(times: dict[str, list[float]]) -> str:
    return "  ".join(
        f"{phase} p50 {statistics.median(values):.2f} ms"
        for phase, values in times.items()
        if values
    )


def _search(rows: int, dimensions: int = 576, repeat: int = 200) -> float:
    """Median µs of one search among `rows` rows of one scope."""
    rng = np.random.default_rng(1)
    index = VectorIndex(rows)
    entry = Entry({"choices": []}, None, 0.0)
    for row in range(rows):
        vector = rng.standard_normal(dimensions).astype(np.float32)
        index.add("scope", vector / np.linalg.norm(vector), text_key(str(row)), entry, 1e12)
    query = rng.standard_normal(dimensions).astype(np.float32)
    query /= np.linalg.norm(query)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        index.nearest("scope", query, 0.0)
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def _summary(runs: dict[str, Any], count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for mode, run in runs.items():
        times = run["times_ms"]
        p50 = {phase: statistics.median(v) for phase, v in times.items() if v}
        p90 = {
            phase: statistics.quantiles(v, n=10)[-1] if len(v) > 1 else v[0]
            for phase, v in times.items()
            if v
        }
        out[mode] = {
            "p50_ms": {k: round(v, 2) for k, v in p50.items()},
            "p90_ms": {k: round(v, 2) for k, v in p90.items()},
            "added_p50_ms": {
                k: round(v - p50["uncached"], 2) for k, v in p50.items() if k != "uncached"
            },
            "near_duplicates_hit": f"{run['near_hits']}/{count}",
            "new_prompts_hit": f"{run['false_hits']}/{count}",
        }
    out["search_us"] = {str(rows): round(_search(rows), 1) for rows in (1000, 10000)}
    return out


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Semantic cache: added latency at concurrency 1",
        "",
        f"`{result['meta']['command']}`, {result['meta']['started']}, "
        f"{result['plan']['requests']} requests per phase and mode, sequential; embeddings "
        "by the embedded model (SmolLM2-135M, its model process), threshold 0.9. Added: "
        "p50 over the uncached route of the same gateway (the nginx mock upstream behind "
        "both).",
        "",
        "| mode | uncached p50 ms | embedding alone | miss p50 (+added) "
        "| hit, same text (+added) | hit, near (+added) | near-duplicates hit "
        "| new prompts hit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode in ("json", "stream"):
        s = result["summary"][mode]
        p50, added = s["p50_ms"], s["added_p50_ms"]

        def cell(phase: str, p50: dict[str, float] = p50, added: dict[str, float] = added) -> str:
            return f"{p50[phase]:.2f} ({added[phase]:+.2f})" if phase in p50 else "-"

        lines.append(
            f"| {mode} | {p50['uncached']:.2f} | {p50['embedding']:.2f} | {cell('miss')} "
            f"| {cell('hit_same')} "
            f"| {cell('hit_near')} | {s['near_duplicates_hit']} | {s['new_prompts_hit']} |"
        )
    search = result["summary"]["search_us"]
    lines += [
        "",
        f"Search alone (`VectorIndex.nearest`, one scope, 576 dimensions): "
        f"{search['1000']} µs at 1,000 rows, {search['10000']} µs at 10,000.",
        "",
        f"Machine: {json.dumps(result['meta'].get('machine', {}))}",
        "",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    plan = {"requests": 20 if args.quick else 100}
    install.ensure_apt()
    WORK.mkdir(parents=True, exist_ok=True)
    procs = Procs()
    started = time.time()
    try:
        json_body, sse = canned()
        _, mock_port = targets.start_mock(procs, WORK, json_body, sse)
        ups = targets.Upstreams(mock_port, 0)
        gateway = targets.start_savegate(procs, WORK, ups, SAVEGATE, semantic=True)
        runs = _measure(gateway, plan["requests"])
    finally:
        procs.stop_all()
    meta = machine_and_versions()
    meta.update(
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        seconds=round(time.time() - started, 1),
        command=" ".join(["python -m bench.cache", *sys.argv[1:]]),
    )
    result = {"plan": plan, "runs": runs, "summary": _summary(runs, plan["requests"]), "meta": meta}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "semantic.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "SEMANTIC.md").write_text(_markdown(result))
    print(json.dumps(result["summary"], indent=1))
    return 0
