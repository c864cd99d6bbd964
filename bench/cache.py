"""Response cache hits against the uncached gateway, in one interleaved run:
`python -m bench.cache [--quick]` from the repository root.

One SaveGate serves the bench's request both uncached (`bench-json`, `bench-stream`, the
mock upstream behind them) and from its response cache (`bench-json-hit`,
`bench-stream-hit`, filled by one request each before the load). Each concurrency runs
the direct upstream, the uncached route and the hit route in turn, so that the machine's
load moves all three alike. Reported: peak throughput of each (hits against uncached:
the goal is 2x or more) and latency at concurrency 1 added over the direct upstream (the
goal for a hit: 0.3 ms or less). Writes `bench/CACHE.md` and `bench/cache.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import client, install, semantic, targets, wrk
from bench.fixtures import canned
from bench.meta import machine_and_versions
from bench.procs import Procs, wait_quiet

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work" / "cache"
SAVEGATE = str(Path(sys.executable).parent / "savegate")
ROUTES = {  # what is measured: (target, route)
    "direct": ("direct", "{mode}"),
    "uncached": ("savegate", "{mode}"),
    "hit": ("savegate", "{mode}-hit"),
}


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--out", type=Path, default=BENCH, help="where the results go")
    parser.add_argument(
        "--semantic", action="store_true", help="the semantic cache's latency instead"
    )
    return parser.parse_args()


def _measure(
    chosen: dict[str, targets.Target], plan: dict[str, Any], lua: dict[tuple[str, str], Path]
) -> list[dict[str, Any]]:
    runs = []
    for rnd in range(plan["rounds"]):
        for mode in ("json", "stream"):
            for conc in plan["conc"]:
                names = list(ROUTES)
                names = names[rnd % len(names) :] + names[: rnd % len(names)]
                for name in names:
                    target, route = ROUTES[name]
                    key = route.format(mode=mode)
                    result = wrk.run(
                        chosen[target].routes[key], lua[(target, key)], conc, plan["seconds"]
                    )
                    wait_quiet(chosen[target].proc.pid)  # its usage rows are written
                    run = {"round": rnd, "route": name, "mode": mode, "conc": conc}
                    runs.append({**run, **result.as_dict()})
                    print(
                        f"  {name:9} {mode:6} c={conc:<3} {result.rps:>9.1f} req/s"
                        f"  p50 {result.p50_us / 1000:.3f} ms  err {result.errors}",
                        flush=True,
                    )
    return runs


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def median(name: str, mode: str, conc: int, field: str) -> float:
        values = [
            r[field]
            for r in runs
            if (r["route"], r["mode"], r["conc"]) == (name, mode, conc) and not r["errors"]
        ]
        return statistics.median(values) if values else float("nan")

    out: dict[str, Any] = {}
    concs = sorted({r["conc"] for r in runs})
    for mode in ("json", "stream"):
        peak = {name: max(median(name, mode, c, "rps") for c in concs) for name in ROUTES}
        p50 = {name: median(name, mode, 1, "p50_us") / 1000 for name in ROUTES}
        out[mode] = {
            "peak_rps": {name: round(value, 1) for name, value in peak.items()},
            "hit_over_uncached_peak": round(peak["hit"] / peak["uncached"], 2),
            "c1_p50_ms": {name: round(value, 3) for name, value in p50.items()},
            "c1_added_ms": {
                "hit": round(p50["hit"] - p50["direct"], 3),
                "uncached": round(p50["uncached"] - p50["direct"], 3),
            },
            "errors": sum(r["errors"] for r in runs if r["mode"] == mode),
        }
    return out


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Response cache: hits against the uncached gateway",
        "",
        f"`{result['meta']['command']}`, {result['meta']['started']}, "
        f"{result['plan']['rounds']} round(s) of {result['plan']['seconds']} s per point, "
        f"concurrency {', '.join(map(str, result['plan']['conc']))}; the same SaveGate "
        "process serves both routes. Goals: a hit at 2x the uncached peak throughput or "
        "more, and 0.3 ms or less added at concurrency 1 (over the direct upstream, nginx "
        "serving the canned answer).",
        "",
        "| mode | peak req/s direct | uncached | hit | hit / uncached | c=1 p50 ms direct "
        "| uncached (+added) | hit (+added) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode in ("json", "stream"):
        s = result["summary"][mode]
        peak, p50, added = s["peak_rps"], s["c1_p50_ms"], s["c1_added_ms"]
        lines.append(
            f"| {mode} | {peak['direct']:.0f} | {peak['uncached']:.0f} | {peak['hit']:.0f} "
            f"| {s['hit_over_uncached_peak']:.2f}x | {p50['direct']:.3f} "
            f"| {p50['uncached']:.3f} (+{added['uncached']:.3f}) "
            f"| {p50['hit']:.3f} (+{added['hit']:.3f}) |"
        )
    lines += ["", f"Machine: {json.dumps(result['meta'].get('machine', {}))}", ""]
    return "\n".join(lines)


def main() -> int:
    args = _args()
    if args.semantic:
        return semantic.run(args)
    plan = (
        {"rounds": 1, "seconds": 2, "conc": [1, 16, 64]}
        if args.quick
        else {"rounds": 3, "seconds": 5, "conc": [1, 16, 64, 256]}
    )
    install.ensure_apt()
    WORK.mkdir(parents=True, exist_ok=True)
    procs = Procs()
    started = time.time()
    try:
        json_body, sse = canned()
        mock, mock_port = targets.start_mock(procs, WORK, json_body, sse)
        ups = targets.Upstreams(mock_port, 0)
        chosen = {
            "direct": targets.direct(mock, ups),
            "savegate": targets.start_savegate(procs, WORK, ups, SAVEGATE, cache=True),
        }
        lua = {
            (name, route): wrk.script(target.routes[route], WORK / f"{name}-{route}.lua")
            for name, target in chosen.items()
            for route in target.routes
            if route.startswith(("json", "stream"))
        }
        for mode in ("json", "stream"):  # fill the cache, and check every route answers
            for target, route in ROUTES.values():
                key = route.format(mode=mode)
                result = asyncio.run(client.sequential(chosen[target].routes[key], 2))[-1]
                error = client.check(result, stream=mode == "stream")
                if error:
                    raise SystemExit(f"{target} {key}: {error}")
        runs = _measure(chosen, plan, lua)
    finally:
        procs.stop_all()
    meta = machine_and_versions()
    meta.update(
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        seconds=round(time.time() - started, 1),
        command=" ".join(["python -m bench.cache", *sys.argv[1:]]),
    )
    result = {"plan": plan, "runs": runs, "summary": _summary(runs), "meta": meta}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cache.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "CACHE.md").write_text(_markdown(result))
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
