"""The machine and the versions of everything measured."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import install

REPO = Path(__file__).resolve().parent.parent


def _out(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return "absent"
    return (done.stdout + done.stderr).strip()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mem_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def machine_and_versions() -> dict[str, Any]:
    rev = _out(["git", "rev-parse", "--short", "HEAD"])
    dirty = _out(["git", "status", "--porcelain", "--", "src"])
    return {
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "memory_gib": _mem_gib(),
            "kernel": platform.release(),
            "os": _out(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
            "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
        },
        "versions": {
            "python": platform.python_version(),
            "savegate": f"{_version('savegate')} @ {rev}"
            + (" (uncommitted changes in src/)" if dirty else ""),
            "uvicorn": _version("uvicorn"),
            "httptools": _version("httptools"),
            "httpx": _version("httpx"),
            "llama-cpp-python": _version("llama_cpp_python"),
            "litellm": install.litellm_version(),
            "portkey": install.portkey_version(),
            "nginx": _out(["nginx", "-v"]).replace("nginx version: nginx/", ""),
            "wrk": _out(["wrk", "-v"]).splitlines()[0].split(" [")[0].removeprefix("wrk "),
            "node": _out(["node", "--version"]),
        },
    }
