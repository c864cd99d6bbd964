"""Instructions per request, this tree against another revision: `python -m bench.instructions
--base REV [--requests 200] [--rounds 1] [--cache]` from the repository root.

Wall-clock A/B runs on a shared 2-core VM move by ±25 % between rounds; instruction counts do
not. Each gateway runs under `valgrind --tool=callgrind` with instrumentation off until it has
served a warm-up, then counts every instruction of the process (all its threads: the usage
writer's share included) over sequential requests to the bench's mock upstream, non-stream
and 50-chunk stream, the two gateways in turn (the median of `--rounds`: what the writer
threads do a request depends on how fast requests come). Writes `bench/INSTRUCTIONS.md`;
with `--cache`, also counts response cache hits of both (`bench-json-hit`,
`bench-stream-hit`) and only prints the counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import client, targets
from bench.fixtures import canned, request_body
from bench.procs import Proc, Procs, free_port, wait_tcp

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / ".work" / "instructions"
WARM_UP = 30
MODES = ("json", "stream")
HITS = ("json-hit", "stream-hit")


def _totals(dump: Path) -> int:
    lines = [line for line in dump.read_text().splitlines() if line.startswith("totals:")]
    return int(lines[-1].split()[1])


def gateway(
    procs: Procs,
    name: str,
    ups: targets.Upstreams,
    source: Path | None,
    extra: dict[str, object] | None = None,
    cache: bool = False,
) -> tuple[Proc, int]:
    """A gateway under callgrind: this tree or `source`'s, with `extra` config sections;
    with `cache`, also serving `bench-json-hit` and `bench-stream-hit` from its response
    cache."""
    providers = {
        mode: {
            "base_url": ups.prefix(mode),
            "api_key_env": "MOCK_KEY",
            "models": [f"bench-{mode}", *([f"bench-{mode}-hit"] if cache else [])],
        }
        for mode in MODES
    }
    config = WORK / f"{name}.yaml"
    sections: dict[str, object] = {"local": {"enabled": False}, "providers": providers}
    if cache:
        sections["cache"] = {"models": ["bench-*-hit"], "cache_all": True}
    sections.update(extra or {})
    config.write_text(json.dumps(sections))
    data = WORK / f"{name}-data"
    data.mkdir()
    port = free_port()
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
    argv += [f"--callgrind-out-file={WORK / name}.%p", sys.executable, "-m", "savegate"]
    argv += ["serve", "--port", str(port), "--data-dir", str(data), "--config", str(config)]
    # This tree's own sources, not the virtualenv's (installed from another worktree).
    env = {"MOCK_KEY": "sk-mock", "PYTHONPATH": str((source or ROOT) / "src")}
    proc = procs.start(name, argv, WORK / f"{name}.log", env=env, cwd=ROOT)
    wait_tcp(port, proc, timeout=600)
    return proc, port


def banner_key(proc: Proc) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"default key:\s+(\S+)", proc.log.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.2)
    raise RuntimeError(f"no key in the banner:\n{proc.log_tail()}")


def count(proc: Proc, route: client.Route, requests: int, label: str) -> float:
    """Instructions per request over `requests` sequential requests on `route`."""
    asyncio.run(client.sequential(route, WARM_UP))
    control = ["callgrind_control"]
    subprocess.run([*control, "--zero", str(proc.pid)], check=True, capture_output=True)
    subprocess.run([*control, "--instr=on", str(proc.pid)], check=True, capture_output=True)
    results = asyncio.run(client.sequential(route, requests))
    subprocess.run([*control, "--instr=off", str(proc.pid)], check=True, capture_output=True)
    subprocess.run([*control, f"--dump={label}", str(proc.pid)], check=True, capture_output=True)
    errors = [e for r in results if (e := client.check(r, stream="stream" in label))]
    if errors:
        raise RuntimeError(f"{label}: {errors[0]}")
    time.sleep(1)
    dumps = sorted(WORK.glob(f"{proc.name}.{proc.pid}.*"), key=lambda p: p.stat().st_mtime)
    return _totals(dumps[-1]) / requests


def _checkout(rev: str) -> Path:
    tree = WORK / f"base-{rev}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--force", str(tree), rev],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return tree


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, metavar="REV")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--cache", action="store_true", help="response cache hits too")
    parser.add_argument("--rounds", type=int, default=1, help="the median of this many")
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=ROOT)
    WORK.mkdir(parents=True)
    procs = Procs()
    base = _checkout(args.base)
    try:
        json_body, sse = canned()
        _, mock_port = targets.start_mock(procs, WORK, json_body, sse)
        ups = targets.Upstreams(mock_port, mock_port)
        gateways = {}
        for name, source in (("new", None), ("base", base)):
            proc, port = gateway(procs, name, ups, source, cache=args.cache)
            gateways[name] = proc, port, {"Authorization": f"Bearer {banner_key(proc)}"}
        runs: dict[tuple[str, str], list[float]] = {}
        for turn in range(args.rounds):  # in turn, so that the machine's load moves both alike
            for mode in MODES + (HITS if args.cache else ()):
                body = request_body(f"bench-{mode}", stream=mode.startswith("stream"))
                for name in ("new", "base") if turn % 2 == 0 else ("base", "new"):
                    proc, port, headers = gateways[name]
                    route = client.Route(port, "/v1/chat/completions", headers, body)
                    runs.setdefault((name, mode), []).append(
                        count(proc, route, args.requests, f"{name}-{mode}")
                    )
                    print(f"{name} {mode}: {runs[(name, mode)][-1]:,.0f} instructions a request")
        counts = {run: statistics.median(values) for run, values in runs.items()}
    finally:
        procs.stop_all()
        subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT)
    if args.cache:
        for (name, mode), value in sorted(counts.items()):
            print(f"median {name} {mode}: {value:,.0f} instructions a request")
        return 0
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    rows = [
        f"| {label} | {counts[('base', mode)]:,.0f} | {counts[('new', mode)]:,.0f} | "
        f"{100 * (counts[('new', mode)] / counts[('base', mode)] - 1):+.1f} % |"
        for mode, label in (("json", "non-stream"), ("stream", "stream of 50 chunks"))
    ]
    report = "\n".join(
        [
            "# Instructions per request",
            "",
            f"`python -m bench.instructions --base {args.base} --requests {args.requests}` on "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {head} against "
            f"{args.base}, each under callgrind, {args.requests} sequential requests after "
            f"{WARM_UP} of warm-up, every instruction of the gateway process counted.",
            "",
            "| request | base | new | change |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )
    (ROOT / "bench" / "INSTRUCTIONS.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
