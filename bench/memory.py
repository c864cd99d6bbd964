"""Idle memory of SaveGate's processes with one `openai` provider configured (so the
embedded model stays out of them): `python -m bench.memory [--source TREE]`.

Each layout (one process; a supervisor and two workers) starts on a data directory whose
schema an earlier start created, as a gateway restarting does, and is measured after
`IDLE_S` of idleness: each process's RSS, its anonymous and file-backed parts
(/proc/PID/status), and PSS (/proc/PID/smaps_rollup: pages shared with other processes,
such as a worker's with its supervisor, split between them). A worker forked by the
supervisor shares the supervisor's pages until it writes them, and does not count the
library pages it has not touched since, so its RSS is below a lone process's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import Procs, free_port, tree_pids, wait_tcp

IDLE_S = 3.0
LAYOUTS = (1, 2)  # --workers


def process_memory(pid: int) -> dict[str, float]:
    """MiB: rss, anon, file (from status) and pss (from smaps_rollup)."""
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    kib = {
        name: int(status[key].split()[0])
        for name, key in (("rss", "VmRSS"), ("anon", "RssAnon"), ("file", "RssFile"))
    }
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            kib["pss"] = int(line.split()[1])
    return {name: round(value / 1024, 1) for name, value in kib.items()}


def _config(work: Path) -> Path:
    provider = {
        "type": "openai",
        "base_url": "http://127.0.0.1:9/v1",  # never called
        "api_key_env": "BENCH_OPENAI_KEY",
        "models": ["gpt-4o"],
    }
    path = work / "memory.yaml"
    path.write_text(json.dumps({"providers": {"openai": provider}}))
    return path


def _serve(procs: Procs, savegate: list[str], work: Path, workers: int, env: dict[str, str]):
    port = free_port()
    argv = [*savegate, "serve", "--port", str(port), "--data-dir", str(work / "data")]
    argv += ["--config", str(_config(work)), "--workers", str(workers)]
    proc = procs.start(f"memory-{workers}w", argv, work / f"serve-{workers}w.log", env=env)
    wait_tcp(port, proc, timeout=120)
    return proc


def measure(savegate: list[str], work: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """{"1": {"gateway": {...}}, "2": {"supervisor": {...}, "worker 1": {...}, …}}."""
    work.mkdir(parents=True, exist_ok=True)
    env = {"BENCH_OPENAI_KEY": "sk-bench", **(env or {})}
    procs = Procs()
    result: dict[str, Any] = {}
    try:
        procs.stop(_serve(procs, savegate, work, 1, env))  # creates the schema and keys
        for workers in LAYOUTS:
            proc = _serve(procs, savegate, work, workers, env)
            time.sleep(IDLE_S)
            root, *children = tree_pids(proc.pid)
            first = "gateway" if workers == 1 else "supervisor"
            layout = {first: process_memory(root)}
            for number, pid in enumerate(sorted(children), start=1):
                layout[f"worker {number}"] = process_memory(pid)
            result[str(workers)] = layout
            procs.stop(proc)
    finally:
        procs.stop_all()
    return result


def table(memory: dict[str, Any]) -> list[str]:
    rows = [
        "| layout | process | RSS MiB | anonymous MiB | file-backed MiB | PSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for workers, processes in memory.items():
        layout = "`--workers 1`" if workers == "1" else f"`--workers {workers}`"
        for role, m in processes.items():
            rows.append(
                f"| {layout} | {role} | {m['rss']} | {m['anon']} | {m['file']} | {m['pss']} |"
            )
    return [*rows, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, help="another tree of SaveGate (its src/)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/savegate-bench-memory"))
    args = parser.parse_args()
    env = {"PYTHONPATH": str(args.source.resolve() / "src")} if args.source else {}
    memory = measure([sys.executable, "-m", "savegate"], args.work, env)
    print("\n".join(table(memory)))
    print(json.dumps(memory))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
