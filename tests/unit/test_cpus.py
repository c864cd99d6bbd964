"""`--workers auto`: the CPUs a container may use, from cgroup files laid out in tmp."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from savegate.config import ServerConfig
from savegate.core.cpus import cgroup_limit, parse_cpu_max, quota_cpus, usable_cpus


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.mark.parametrize(
    ("text", "cpus"),
    [
        ("max 100000", None),
        ("150000 100000", 1.5),
        ("200000 100000", 2.0),
        ("50000", 0.5),
        ("garbage", None),
        ("0 100000", None),
    ],
)
def test_cpu_max(text, cpus):
    assert parse_cpu_max(text) == cpus


def test_v1_quota():
    assert quota_cpus("-1", "100000") is None
    assert quota_cpus("250000", "100000") == 2.5


def test_v2_container_whose_cgroup_is_the_mount_root(tmp_path):
    write(tmp_path / "cpu.max", "150000 100000")
    assert cgroup_limit(tmp_path, "0::/\n") == 1.5


def test_v2_the_tightest_of_the_cgroup_and_its_ancestors(tmp_path):
    write(tmp_path / "cpu.max", "max 100000")
    write(tmp_path / "kubepods" / "cpu.max", "100000 100000")
    write(tmp_path / "kubepods" / "pod1" / "cpu.max", "300000 100000")
    assert cgroup_limit(tmp_path, "0::/kubepods/pod1\n") == 1.0
    write(tmp_path / "kubepods" / "cpu.max", "max 100000")
    assert cgroup_limit(tmp_path, "0::/kubepods/pod1\n") == 3.0
    assert cgroup_limit(tmp_path, "0::/elsewhere\n") is None


def test_v1_cfs_quota(tmp_path):
    cpu = tmp_path / "cpu,cpuacct"
    write(cpu / "docker" / "abc" / "cpu.cfs_quota_us", "50000")
    write(cpu / "docker" / "abc" / "cpu.cfs_period_us", "100000")
    write(cpu / "cpu.cfs_quota_us", "-1")
    write(cpu / "cpu.cfs_period_us", "100000")
    text = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
    assert cgroup_limit(tmp_path, text) == 0.5


def test_usable_cpus_rounds_a_quota_up_within_the_affinity(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    self_cgroup = tmp_path / "self-cgroup"
    write(self_cgroup, "0::/")
    write(tmp_path / "cpu.max", "max 100000")
    assert usable_cpus(tmp_path, self_cgroup) == affinity
    write(tmp_path / "cpu.max", "10000 100000")  # a tenth of a CPU is still one worker
    assert usable_cpus(tmp_path, self_cgroup) == 1
    write(tmp_path / "cpu.max", f"{(affinity + 4) * 100000} 100000")
    assert usable_cpus(tmp_path, self_cgroup) == affinity
    assert usable_cpus(tmp_path / "none", tmp_path / "missing") == affinity


def test_workers_auto_uses_them():
    assert ServerConfig(workers="auto").processes == usable_cpus()
    assert ServerConfig(workers=3).processes == 3
