"""How many CPUs this process may really use: its affinity mask, capped by a container's
CPU limit (cgroup v2 `cpu.max`, or v1's CFS quota), as `ceil(quota / period)`."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
SELF_CGROUP = Path("/proc/self/cgroup")


def usable_cpus(root: Path = CGROUP_ROOT, self_cgroup: Path = SELF_CGROUP) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    limit = cgroup_limit(root, _read(self_cgroup) or "")
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def cgroup_limit(root: Path, self_cgroup: str) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its ancestors, or
    None without one. `self_cgroup` is /proc/self/cgroup's text."""
    limits: list[float] = []
    for line in self_cgroup.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            limits += _v2_limits(root, path)
        elif "cpu" in controllers.split(","):
            limits += _v1_limits(root / controllers, path)
    return min(limits) if limits else None


def _levels(mount: Path, path: str) -> list[Path]:
    """The cgroup's directory and each ancestor's, up to the mount (in a container, whose
    own cgroup is the mount's root, its path may not exist below it)."""
    parts = [part for part in path.strip("/").split("/") if part]
    return [mount.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _v2_limits(root: Path, path: str) -> list[float]:
    found = []
    for level in _levels(root, path):
        text = _read(level / "cpu.max")
        if text is not None and (limit := parse_cpu_max(text)) is not None:
            found.append(limit)
    return found


def _v1_limits(mount: Path, path: str) -> list[float]:
    found = []
    for level in _levels(mount, path):
        quota, period = _read(level / "cpu.cfs_quota_us"), _read(level / "cpu.cfs_period_us")
        if quota is not None and period is not None:
            limit = quota_cpus(quota, period)
            if limit is not None:
                found.append(limit)
    return found


def parse_cpu_max(text: str) -> float | None:
    """cgroup v2 `cpu.max`: `max 100000` (no limit) or `150000 100000` (1.5 CPUs)."""
    quota, _, period = text.strip().partition(" ")
    return quota_cpus(quota, period or "100000")


def quota_cpus(quota: str, period: str) -> float | None:
    """A quota and period in µs as CPUs; None when unlimited (`max`, -1) or unreadable."""
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
