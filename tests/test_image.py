"""The image itself: deploy/Dockerfile built by a container engine (Debian's podman), run as
an operator runs it (its own entry point, arguments and port), serving the embedded model to
the openai SDK, passing its HEALTHCHECK as its user, and draining to a clean exit on stop.

Its base is not the Dockerfile's default: python:3.11-slim-bookworm is on Docker Hub, out of
reach here. `PYTHON_IMAGE` is instead Debian bookworm made from Debian's packages
(debootstrap), with what the Dockerfile takes from the official image: python and pip on
PATH, venv, apt. Made once, kept in podman's storage as BASE.

Opt-in (SAVEGATE_IMAGE_TEST=1; `make image-test` installs podman and sets it): a cold build
compiles llama.cpp, 22 minutes on 2 busy cores (13 of CPU), too long for every CI run.
podman keeps the layers in its storage: then the build takes seconds, after a code change
a minute (`podman image prune` drops them, as the cached stages are untagged)."""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.skipif(
    not os.environ.get("SAVEGATE_IMAGE_TEST"),
    reason="opt-in, a cold build takes 20 min: make image-test (SAVEGATE_IMAGE_TEST=1)",
)

BASE = "localhost/savegate-test-base:bookworm"
IMAGE = "localhost/savegate:test"
# crun, podman's default runtime, refuses a hybrid cgroup hierarchy (v1 with a v2 mount
# that holds a controller), as this machine has; runc runs on that and on cgroup v2 alike.
PODMAN = ("podman", "--runtime", "runc")
MIRROR = "http://deb.debian.org/debian"
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
# The official image's apt sources: the release, its updates and its security fixes.
SOURCES = f"""\
Types: deb
URIs: {MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: {MIRROR}-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def run(*argv: str, log: Path, timeout: float = 3600) -> None:
    """Run a set-up command, its output appended to `log`; its failure shows the log's end."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(argv)}\n")
        out.flush()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=timeout)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-4000:]
        raise AssertionError(f"{' '.join(argv)} failed ({log}):\n{tail}")


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=120)


def ulimits() -> list[str]:
    """A container's limits no higher than podman's own. Unless told, podman asks for 1048576
    open files and processes, above this machine's hard limits, which root here cannot raise
    (no CAP_SYS_RESOURCE); and podman lowers its own process limit to kernel.pid_max."""
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    procs = int(Path("/proc/sys/kernel/pid_max").read_text())
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    if hard != resource.RLIM_INFINITY:
        procs = min(procs, hard)
    return ["--ulimit", f"nofile={files}:{files}", "--ulimit", f"nproc={procs}:{procs}"]


def debian_base(workdir: Path, log: Path) -> None:
    """BASE, unless podman has it: Debian's minimal bookworm with python3 (3.11, as the
    official image's), venv and pip, `python` on PATH, and the host's extra CAs."""
    if podman("image", "exists", BASE).returncode == 0:
        return
    rootfs = workdir / "rootfs"
    debootstrap = ("debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm")
    run("nice", "-n", "19", *debootstrap, str(rootfs), MIRROR, log=log)
    (rootfs / "etc/apt/sources.list").unlink()
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES)
    # The CAs this host adds to Debian's (a TLS-inspecting proxy's, say): pip in the build
    # then reaches PyPI as pip on the host does.
    local_cas = rootfs / "usr/local/share/ca-certificates"
    shutil.copytree("/usr/local/share/ca-certificates", local_cas, dirs_exist_ok=True)
    run("chroot", str(rootfs), "update-ca-certificates", log=log)
    (rootfs / "usr/local/bin/python").symlink_to("/usr/bin/python3")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        shutil.rmtree(rootfs / cache)
        (rootfs / cache).mkdir()
    tarball = workdir / "rootfs.tar"
    run("tar", "-C", str(rootfs), "-cf", str(tarball), ".", log=log)
    run(*PODMAN, "import", str(tarball), BASE, log=log)
    shutil.rmtree(rootfs)
    tarball.unlink()


@dataclass
class Container:
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        done = podman("logs", self.name)
        return done.stdout + done.stderr

    def state(self, field: str) -> str:
        return podman("inspect", "--format", f"{{{{.State.{field}}}}}", self.name).stdout.strip()


def wait_ready(container: Container, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if container.state("Running") != "true":
            raise RuntimeError(f"the container exited:\n{container.logs()}")
        try:
            if httpx.get(container.url + "/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the container never got ready:\n{container.logs()}")


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    for tool in ("podman", "runc", "debootstrap"):
        assert shutil.which(tool), f"{tool} is not installed (make image-test installs it)"
    workdir = tmp_path_factory.mktemp("image")
    log = workdir / "build.log"
    debian_base(workdir, log)
    # Docker's format, not OCI's, which has no HEALTHCHECK; nice: other work shares the CPU.
    build = ("--format", "docker", "--build-arg", f"PYTHON_IMAGE={BASE}", "--tag", IMAGE)
    run("nice", "-n", "19", *PODMAN, "build", *build, "-f", "deploy/Dockerfile", str(ROOT), log=log)
    started = Container(f"savegate-image-test-{os.getpid()}", free_port())
    publish = f"127.0.0.1:{started.port}:8000"
    try:
        run(*PODMAN, "run", "-d", "--name", started.name, *ulimits(), "-p", publish, IMAGE, log=log)
        wait_ready(started)
        yield started
    finally:
        podman("rm", "--force", "--volumes", started.name)


def test_image_serves_the_embedded_model_to_the_openai_sdk(container: Container) -> None:
    keys = dict(re.findall(r"^\s+(\w+) key:\s+(sk-savegate-\w+)$", container.logs(), re.M))
    client = openai.OpenAI(api_key=keys["default"], base_url=container.url + "/v1")
    reply = client.chat.completions.create(
        model="gpt-4", messages=[{"role": "user", "content": "Say hello"}], max_tokens=8
    )
    assert reply.model == "SmolLM2-135M-Instruct"
    assert reply.choices[0].message.content
    assert reply.usage and reply.usage.completion_tokens > 0


def test_image_runs_as_its_user_and_passes_its_healthcheck(container: Container) -> None:
    assert podman("exec", container.name, "id", "-u").stdout.strip() == "10001"
    check = podman("healthcheck", "run", container.name)
    assert check.returncode == 0, check.stdout + check.stderr


def test_image_drains_and_exits_cleanly_on_stop(container: Container) -> None:
    assert podman("stop", "--time", "45", container.name).returncode == 0
    assert container.state("ExitCode") == "0", container.logs()
    assert "Application shutdown complete" in container.logs()
