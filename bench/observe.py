"""What observability costs: SaveGate with metrics on and tracing at 100 % sampling (to a
local OTLP receiver) against both off, in one interleaved run. `python -m bench.observe
[--quick] [--rounds N] [--instructions]` from the repository root.

Peak throughput is wrk's best concurrency, non-stream and 50-chunk stream, each target
taking turns round after round (the medians over rounds are compared). With
`--instructions` it also counts instructions per request under callgrind, which a busy
machine does not move. Writes the table to `bench/OBSERVE.md`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import client, install, instructions, targets, wrk
from bench.fixtures import canned
from bench.procs import Procs, free_port, wait_tcp

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "observe"
MODES = ("json", "stream")
OFF: dict[str, object] = {"metrics": {"enabled": False}}
METRICS: dict[str, object] = {"metrics": {"enabled": True}}


def _configs(receiver_port: int) -> dict[str, dict[str, object]]:
    """off: neither; metrics: metrics alone; on: metrics and tracing at 100 %."""
    endpoint = f"http://127.0.0.1:{receiver_port}/v1/traces"
    tracing = {"enabled": True, "endpoint": endpoint, "sample_ratio": 1.0}
    return {"off": OFF, "metrics": METRICS, "on": {**METRICS, "tracing": tracing}}


def _throughput(
    procs: Procs, ups: targets.Upstreams, receiver: int, plan: dict[str, Any]
) -> dict[str, dict[str, float]]:
    """Peak req/s per target and mode: the best concurrency's median over rounds."""
    savegate = str(Path(sys.executable).with_name("savegate"))
    gateways = {
        name: targets.start_savegate(procs, WORK, ups, savegate, name=name, extra=extra)
        for name, extra in _configs(receiver).items()
    }
    lua = {
        (name, mode): wrk.script(target.routes[mode], WORK / f"{name}-{mode}.lua")
        for name, target in gateways.items()
        for mode in MODES
    }
    for (name, mode), script in lua.items():  # warm-up
        wrk.run(gateways[name].routes[mode], script, 16, 1)
    runs: dict[tuple[str, str, int], list[float]] = {}
    for round_ in range(plan["rounds"]):
        order = list(gateways)[round_ % 3 :] + list(gateways)[: round_ % 3]
        for mode in MODES:
            for conc in plan["concurrency"]:
                for name in order:
                    result = wrk.run(
                        gateways[name].routes[mode], lua[(name, mode)], conc, plan["seconds"]
                    )
                    if result.errors:
                        raise RuntimeError(f"{name} {mode} c={conc}: {result.errors} errors")
                    runs.setdefault((name, mode, conc), []).append(result.rps)
                    print(f"round {round_ + 1} {name} {mode} c={conc}: {result.rps:,.0f} req/s")
    for target in gateways.values():
        procs.stop(target.proc)
    return {
        name: {
            mode: max(statistics.median(runs[(name, mode, conc)]) for conc in plan["concurrency"])
            for mode in MODES
        }
        for name in gateways
    }


def _instructions(
    procs: Procs, direct: targets.Target, ups: targets.Upstreams, receiver: int, requests: int
) -> dict[str, dict[str, float]]:
    shutil.rmtree(instructions.WORK, ignore_errors=True)
    instructions.WORK.mkdir(parents=True)
    counts: dict[str, dict[str, float]] = {}
    for name, extra in _configs(receiver).items():
        proc, port = instructions.gateway(procs, name, ups, None, extra)
        headers = {"Authorization": f"Bearer {instructions.banner_key(proc)}"}
        counts[name] = {}
        for mode in MODES:
            body = direct.routes[mode].body
            route = client.Route(port, "/v1/chat/completions", headers, body)
            counts[name][mode] = instructions.count(proc, route, requests, f"{name}-{mode}")
            print(f"{name} {mode}: {counts[name][mode]:,.0f} instructions a request")
        procs.stop(proc)
    return counts


def _change(off: float, on: float) -> str:
    return f"{100 * (on / off - 1):+.1f} %"


def _report(
    args: argparse.Namespace,
    plan: dict[str, Any],
    peak: dict[str, Any],
    counts: dict[str, Any] | None,
    spans: dict[str, int],
) -> str:
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    options = " --quick" if args.quick else ""
    options += f" --rounds {args.rounds}" if args.rounds else ""
    options += " --instructions" if args.instructions else ""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [
        "# What observability costs",
        "",
        f"`python -m bench.observe{options}` on {when} at {head}: one SaveGate process with "
        "metrics and tracing off (`off`) against one with metrics alone (`metrics`) and one "
        "with metrics on and every request traced (`on`: sample_ratio 1.0, spans exported "
        "to a local OTLP/HTTP receiver, "
        f"which got {spans['exports']:,} exports, {spans['bytes']:,} bytes), "
        f"{plan['rounds']} interleaved round(s) of {plan['seconds']} s per wrk run at "
        f"concurrency {plan['concurrency']}; peak = the best concurrency's median over rounds.",
        "",
        "| measure | off | metrics | change | on | change |",
        "|---|---|---|---|---|---|",
    ]
    tables = [("peak req/s", peak)] + ([("instructions a request", counts)] if counts else [])
    for measure, figures in tables:
        for mode, label in (("json", "non-stream"), ("stream", "stream of 50 chunks")):
            off, metrics, on = (figures[name][mode] for name in ("off", "metrics", "on"))
            lines.append(
                f"| {measure}, {label} | {off:,.0f} | {metrics:,.0f} | {_change(off, metrics)} "
                f"| {on:,.0f} | {_change(off, on)} |"
            )
    return "\n".join([*lines, ""])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--requests", type=int, default=200, help="for --instructions")
    args = parser.parse_args()
    plan = (
        {"rounds": 2, "seconds": 2, "concurrency": [16, 64]}
        if args.quick
        else {"rounds": 4, "seconds": 5, "concurrency": [16, 64]}
    )
    if args.rounds:
        plan["rounds"] = args.rounds
    install.ensure_apt()  # wrk and nginx
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    procs = Procs()
    try:
        json_body, sse = canned()
        mock, mock_port = targets.start_mock(procs, WORK, json_body, sse)
        ups = targets.Upstreams(mock_port, mock_port)
        direct = targets.direct(mock, ups)
        receiver = free_port()
        sink = procs.start(
            "otlp-sink",
            [sys.executable, "-m", "bench.otlp_sink", str(receiver)],
            WORK / "sink.log",
            cwd=ROOT,
        )
        wait_tcp(receiver, sink)
        peak = _throughput(procs, ups, receiver, plan)
        counts = (
            _instructions(procs, direct, ups, receiver, args.requests)
            if args.instructions
            else None
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{receiver}/") as answer:
            spans = json.loads(answer.read())
    finally:
        procs.stop_all()
    report = _report(args, plan, peak, counts, spans)
    (ROOT / "bench" / "OBSERVE.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
