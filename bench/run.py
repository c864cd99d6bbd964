"""One command: `python -m bench.run [--quick]` from the repository root.

Installs what is missing, starts the mock upstreams and every target on free ports, drives
the same interleaved load at each, measures, stops what it started, and writes
`bench/RESULTS.md` and `bench/results.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from bench import client, embedded, install, memory, report, targets, wrk
from bench import profile as pyspy
from bench.fixtures import canned
from bench.meta import machine_and_versions
from bench.procs import (
    PeakSampler,
    Procs,
    busiest_share,
    children_cpu,
    machine_busy,
    own_cpu,
    process_cpu,
    tree_cpu,
    tree_rss,
    wait_quiet,
)
from bench.targets import Target

BENCH = Path(__file__).resolve().parent
WORK = BENCH / ".work"
PYTHON = sys.executable
SAVEGATE = str(Path(PYTHON).parent / "savegate")
GATEWAYS = ("nginx", "savegate", "litellm", "portkey")


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["litellm", "portkey"],
        help="leave a peer out",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profile")
    parser.add_argument("--no-embedded", action="store_true", help="skip the embedded model")
    parser.add_argument("--out", type=Path, default=BENCH, help="where the results go")
    parser.add_argument(
        "--base",
        metavar="REV",
        help="also measure this git revision of SaveGate, interleaved, against the tree",
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default: by plan)")
    return parser.parse_args()


def _plan(quick: bool) -> dict[str, Any]:
    if quick:
        return {
            "rounds": 1,
            "seconds": 2,
            "json": [1, 64],
            "stream": [1, 16],
            "ttfb_n": 60,
            "cold_n": 100,
            "cold_gap_s": 0.02,
            "limit_s": 45,
            "stream_targets": ["nginx", "savegate"],
            "idle": 1000,
            "burst": 2000,
            "embedded_runs": 2,
            "profile_s": 5,
        }
    return {
        "rounds": 3,
        "seconds": 5,
        "json": [1, 16, 64, 256],
        "stream": [1, 16, 64],
        "ttfb_n": 100,
        "cold_n": 300,
        "cold_gap_s": 0.02,
        "limit_s": 60,
        "stream_targets": list(GATEWAYS),
        "idle": 1000,
        "burst": 2000,
        "embedded_runs": 5,
        "profile_s": 10,
    }


class Bench:
    def __init__(self, plan: dict[str, Any], procs: Procs) -> None:
        self.plan = plan
        self.procs = procs
        self.targets: list[Target] = []
        self.peers: dict[str, dict[str, Any]] = {}
        self.sampler = PeakSampler()
        self.roots: set[int] = set()
        self.lua: dict[tuple[str, str], Path] = {}
        self.slow_port = 0

    # --- start ---------------------------------------------------------------------------

    def start(self, skip: list[str], base: Path | None) -> None:
        json_body, sse = canned()
        sse_file = WORK / "stream.sse"
        sse_file.write_bytes(sse)
        mock, mock_port = targets.start_mock(self.procs, WORK, json_body, sse)
        slow, slow_port = targets.start_slow(self.procs, WORK, PYTHON, sse_file)
        self.roots |= {mock.pid, slow.pid}
        self.slow_port = slow_port
        ups = targets.Upstreams(mock_port, slow_port)
        self._add("direct", lambda: targets.direct(mock, ups))
        self._add("nginx", lambda: targets.start_nginx_proxy(self.procs, WORK, ups))
        self._add("savegate", lambda: targets.start_savegate(self.procs, WORK, ups, SAVEGATE))
        self._add(
            "savegate-2w",
            lambda: targets.start_savegate(
                self.procs, WORK, ups, SAVEGATE, "savegate-2w", workers=2
            ),
        )
        if base is not None:
            self._add(
                "savegate-base",
                lambda: targets.start_savegate(
                    self.procs, WORK, ups, SAVEGATE, "savegate-base", source=base
                ),
            )
        for name, ensure, starter in (
            ("litellm", install.ensure_litellm, targets.start_litellm),
            ("portkey", install.ensure_portkey, targets.start_portkey),
        ):
            if name in skip:
                self.peers[name] = {"available": False, "reason": "skipped (--skip)"}
                continue
            reason = ensure()
            if reason:
                self.peers[name] = {"available": False, "reason": reason}
                continue
            self._add(name, lambda s=starter: s(self.procs, WORK, ups))
        for target in self.targets:
            self.sampler.watch(target.name, target.proc.pid)
            self.roots.add(target.proc.pid)
        self.sampler.start()

    def _add(self, name: str, starter: Any) -> None:
        print(f"starting {name}", flush=True)
        try:
            target: Target = starter()
            self._sanity(target)
        except Exception as exc:  # a peer that cannot run is reported, not fatal
            if name in ("direct", "nginx", "savegate", "savegate-2w", "savegate-base"):
                raise
            self.peers[name] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
            print(f"  {name} unavailable: {exc}", flush=True)
            for proc in list(self.procs.started):
                if proc.name == name:
                    self.procs.stop(proc)
            return
        self.targets.append(target)
        self.peers[name] = {
            "available": True,
            "reason": None,
            "label": target.label,
            "pid": target.proc.pid,
        }
        for mode, route in target.routes.items():
            self.lua[(name, mode)] = wrk.script(route, WORK / f"{name}-{mode}.lua")

    @staticmethod
    def _sanity(target: Target) -> None:
        for mode in ("json", "stream"):
            error: str | None = "not tried"
            deadline = time.monotonic() + 60
            while error and time.monotonic() < deadline:
                result = asyncio.run(client.sequential(target.routes[mode], 2))[-1]
                error = client.check(result, stream=mode == "stream")
                if error:
                    time.sleep(1)
            if error:
                raise RuntimeError(f"{target.name} {mode}: {error}")

    # --- load ----------------------------------------------------------------------------

    def _ours(self) -> float:
        return sum(tree_cpu(pid) for pid in self.roots) + own_cpu()

    def _wrk(self, target: Target, mode: str, conc: int, seconds: int) -> dict[str, Any]:
        busy0, ours0, cpu0 = machine_busy(), self._ours(), process_cpu(target.proc.pid)
        wrk0 = children_cpu()
        result = wrk.run(target.routes[mode], self.lua[(target.name, mode)], conc, seconds)
        wrk1, ours1, busy1 = children_cpu(), self._ours(), machine_busy()
        # Work a target left for after the run (usage rows, logs) is part of its cost.
        wait_quiet(target.proc.pid)
        cpu1 = process_cpu(target.proc.pid)
        other = max(0.0, (busy1 - busy0) - (ours1 - ours0))
        share = busiest_share(cpu0, cpu1)
        return {
            "target": target.name,
            "mode": mode,
            "conc": conc,
            **result.as_dict(),
            "cpu_s": round(sum(cpu1.values()) - sum(cpu0.values()), 3),
            # The load generator shares the cores: its own cost per request, beside.
            "wrk_cpu_s": round(wrk1 - wrk0, 3),
            # Of several workers, how evenly the connections spread over them.
            "busiest_share": None if share is None else round(share, 3),
            "other_cpu_s": round(other, 3),
        }

    def warm_up(self) -> None:
        for target in self.targets:
            for mode in ("json", "stream"):
                self._wrk(target, mode, 16, 1)

    def load(self) -> list[dict[str, Any]]:
        runs = []
        scenarios = [("json", c) for c in self.plan["json"]]
        scenarios += [("stream", c) for c in self.plan["stream"]]
        total = self.plan["rounds"] * len(scenarios) * len(self.targets)
        for rnd in range(self.plan["rounds"]):
            order = (
                self.targets[rnd % len(self.targets) :] + self.targets[: rnd % len(self.targets)]
            )
            for mode, conc in scenarios:
                for target in order:
                    run = self._wrk(target, mode, conc, self.plan["seconds"])
                    run["round"] = rnd
                    runs.append(run)
                    print(
                        f"  [{len(runs)}/{total}] {target.name:8} {mode:6} c={conc:<4}"
                        f" {run['rps']:>9.1f} req/s  p50 {run['p50_us'] / 1000:.2f} ms"
                        f"  p99 {run['p99_us'] / 1000:.2f} ms  err {run['errors']}",
                        flush=True,
                    )
        return runs

    def ttfb(self) -> dict[str, list[dict[str, Any]]]:
        """Sequential streams at concurrency 1; the targets take turns in blocks."""
        samples: dict[str, list[dict[str, Any]]] = {t.name: [] for t in self.targets}
        block = 20
        for rnd in range(self.plan["rounds"] * max(1, self.plan["ttfb_n"] // block)):
            order = (
                self.targets[rnd % len(self.targets) :] + self.targets[: rnd % len(self.targets)]
            )
            for target in order:
                results = asyncio.run(client.sequential(target.routes["stream"], block + 1))
                # The next block starts once this target's leftover work is done.
                wait_quiet(target.proc.pid)
                for result in results[1:]:  # the first opens the connection
                    error = client.check(result, stream=True)
                    samples[target.name].append(
                        {
                            "ttfb_s": result.ttfb,
                            "total_s": (result.end - result.start) if result.end else None,
                            "error": error,
                        }
                    )
        return samples

    def cold(self) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """Each target in turn after an idle gap: non-stream latency and stream TTFB."""
        out: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for mode in ("json", "stream"):
            routes = {t.name: t.routes[mode] for t in self.targets if mode in t.routes}
            runs = asyncio.run(
                client.interleaved(routes, self.plan["cold_n"], self.plan["cold_gap_s"])
            )
            out[mode] = {
                name: [
                    {
                        "total_s": (r.end - r.start) if r.end else None,
                        "ttfb_s": r.ttfb,
                        "error": client.check(r, stream=mode == "stream"),
                    }
                    for r in results
                ]
                for name, results in runs.items()
            }
        return out

    def _streams(self, mode: str, count: int, action: Any) -> dict[str, dict[str, Any]]:
        """Run `action(target)` for each gateway, with the slow upstream's held-stream peak."""
        self.sampler.phase = mode
        out = {}
        for target in self.targets:
            if mode not in target.routes or target.name not in self.plan["stream_targets"]:
                continue
            print(f"  {count} {mode} streams on {target.name}", flush=True)
            # Resets the peak; streams a peer never cancelled upstream are still held.
            before = asyncio.run(client.upstream_stats(self.slow_port))["open"]
            started = time.perf_counter()
            row = asyncio.run(action(target))
            row["phase_seconds"] = round(time.perf_counter() - started, 1)
            wait_quiet(target.proc.pid)
            time.sleep(3)  # time to notice that the clients have gone
            after = asyncio.run(client.upstream_stats(self.slow_port))
            row["peak_held_upstream"] = after["peak"] - before
            # Upstream streams still open 3 s after their clients left (not cancelled).
            row["left_held_upstream"] = after["open"] - before
            out[target.name] = row
            print(f"    {json.dumps(row)}", flush=True)
        return out

    def idle_streams(self) -> dict[str, dict[str, Any]]:
        count = self.plan["idle"]
        return self._streams(
            "idle",
            count,
            lambda t: client.hold_idle(
                t.routes["idle"],
                count,
                lambda p=t.proc.pid: tree_rss(p),
                limit_s=self.plan["limit_s"] / 2,
            ),
        )

    def bursts(self) -> dict[str, dict[str, Any]]:
        count = self.plan["burst"]
        return self._streams(
            "burst",
            count,
            lambda t: client.burst(t.routes["burst"], count, limit_s=self.plan["limit_s"]),
        )

    def profile(self) -> dict[str, Any]:
        self.sampler.phase = "profile"
        reason = install.ensure_pyspy()
        if reason:
            return {"error": reason}
        savegate = next(t for t in self.targets if t.name == "savegate")
        exe = Path(PYTHON).parent / "py-spy"
        out: dict[str, Any] = {}
        seconds = self.plan["profile_s"]
        for mode, conc in (("json", 64), ("stream", 16)):
            raw = WORK / f"profile-{mode}.txt"
            spy = threading.Thread(
                target=pyspy.record, args=(exe, savegate.proc.pid, seconds + 1, raw)
            )
            spy.start()
            time.sleep(0.5)
            run = self._wrk(savegate, mode, conc, seconds)
            spy.join()
            out[mode] = {
                "conc": conc,
                "rps_while_sampled": run["rps"],
                **(pyspy.summarise(raw) if raw.exists() else {"error": "no output"}),
            }
        return out


def _profile_embedded(pid: int, route: client.Route, result: dict[str, Any]) -> dict[str, Any]:
    """py-spy over one more generation through SaveGate."""
    seconds = int(min(30, 1 + 1.2 * (result["savegate"]["total_s"] or 10)))
    raw = WORK / "profile-embedded.txt"
    spy = threading.Thread(
        target=pyspy.record,
        # llama.cpp decodes without the GIL: every thread is sampled.
        args=(Path(PYTHON).parent / "py-spy", pid, seconds, raw, 250, False),
    )
    spy.start()
    time.sleep(0.3)
    asyncio.run(embedded.through_gateway(route))
    spy.join()
    return pyspy.summarise(raw) if raw.exists() else {"error": "no py-spy output"}


def _embedded(procs: Procs, runs: int, profile: bool) -> dict[str, Any]:
    proc = None
    try:
        proc, route = targets.start_savegate_embedded(procs, WORK, SAVEGATE)
        result = embedded.compare(route, runs, PYTHON, WORK / "embedded-direct.log")
        if profile and not install.ensure_pyspy():
            result["profile"] = _profile_embedded(proc.pid, route, result)
        return result
    except Exception as exc:  # the embedded provider may be unfinished: report why
        tail = proc.log_tail() if proc else ""
        return {"error": f"{type(exc).__name__}: {exc}", "log": tail}
    finally:
        if proc:
            procs.stop(proc)


def _checkout(rev: str) -> Path:
    """The tree of `rev`, beside the bench's other work files."""
    tree = WORK / f"base-{rev}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--force", str(tree), rev],
        check=True,
        cwd=BENCH.parent,
        capture_output=True,
    )
    return tree


def _drop_checkout(tree: Path) -> None:
    subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=BENCH.parent)


def main() -> int:
    args = _args()
    plan = _plan(args.quick)
    if args.rounds:
        plan["rounds"] = args.rounds
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    install.ensure_apt()
    shutil.rmtree(WORK, ignore_errors=True)
    subprocess.run(["git", "worktree", "prune"], cwd=BENCH.parent)
    WORK.mkdir(parents=True)
    base = _checkout(args.base) if args.base else None
    started = time.time()
    busy0, ours0 = machine_busy(), own_cpu()
    procs = Procs()
    bench = Bench(plan, procs)
    result: dict[str, Any] = {"plan": plan, "quick": args.quick, "phase_seconds": {}}
    clock = [time.perf_counter()]

    def phase(name: str) -> None:
        now = time.perf_counter()
        result["phase_seconds"][name] = round(now - clock[0], 1)
        clock[0] = now
        print(f"({name}: {now - started_perf:.0f} s so far)", flush=True)

    started_perf = clock[0]
    steps: list[tuple[str, str, Any]] = [
        ("warm-up", "", bench.warm_up),
        ("load", "runs", bench.load),
        ("ttfb", "ttfb", bench.ttfb),
        ("cold", "cold", bench.cold),
        ("idle", "idle", bench.idle_streams),
        ("burst", "burst", bench.bursts),
    ]
    if not args.no_profile:
        steps.append(("profile", "profile", bench.profile))
    try:
        bench.start(args.skip, base)
        phase("start")
        result["rss_start"] = {t.name: tree_rss(t.proc.pid) for t in bench.targets}
        for name, key, step in steps:
            print(name, flush=True)
            try:  # a failed step is reported; the others still run
                value = step()
            except Exception:
                result.setdefault("errors", {})[name] = traceback.format_exc(limit=4)
                print(result["errors"][name], flush=True)
            else:
                if key:
                    result[key] = value
            phase(name)
        bench.sampler.close()
        result["rss_peak"] = bench.sampler.peaks
        result["peers"] = bench.peers
        procs.stop_all()
        print("memory", flush=True)
        try:
            result["memory"] = memory.measure([SAVEGATE], WORK / "memory")
        except Exception:
            result.setdefault("errors", {})["memory"] = traceback.format_exc(limit=4)
        phase("memory")
        if not args.no_embedded:
            print("embedded model", flush=True)
            result["embedded"] = _embedded(procs, plan["embedded_runs"], not args.no_profile)
            phase("embedded")
    finally:
        bench.sampler.close()
        procs.stop_all()
        if base is not None:
            _drop_checkout(base)
    busy, ours = machine_busy() - busy0, own_cpu() - ours0
    result["meta"] = machine_and_versions()
    result["meta"].update(
        seconds=round(time.time() - started, 1),
        started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        other_cpu_share=round(max(0.0, busy - ours) / (time.time() - started) / 2, 3),
        command=" ".join(["python -m bench.run", *sys.argv[1:]]),
    )
    final = report.build(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(final, indent=1) + "\n")
    (args.out / "RESULTS.md").write_text(report.markdown(final))
    print(f"wrote {args.out / 'RESULTS.md'} and results.json", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
