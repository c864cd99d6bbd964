"""Install what the harness needs when it is missing; report why a peer is unavailable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
LITELLM_VENV = BENCH / ".venv-litellm"
PORTKEY_START = BENCH / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def _run(argv: list[str], timeout: float = 900, cwd: Path | None = None) -> tuple[bool, str]:
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return done.returncode == 0, (done.stdout + done.stderr)[-2000:]


def ensure_apt() -> None:
    """nginx and wrk from Debian's packages (required: the mock upstream and the load)."""
    missing = [
        pkg
        for pkg, binary in (("nginx-light", "nginx"), ("wrk", "wrk"))
        if not shutil.which(binary)
    ]
    if not missing:
        return
    print(f"installing {' '.join(missing)} (apt)", flush=True)
    ok, out = _run(["apt-get", "update", "-qq"])
    if ok:
        ok, out = _run(["apt-get", "install", "-y", "-qq", *missing])
    if not ok or not shutil.which("nginx") or not shutil.which("wrk"):
        raise SystemExit(f"cannot install {missing} with apt-get:\n{out}")


def ensure_litellm() -> str | None:
    """LiteLLM proxy in its own virtualenv; None when usable, else the reason."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return None
    print("installing litellm[proxy] into bench/.venv-litellm", flush=True)
    ok, out = _run([sys.executable, "-m", "venv", str(LITELLM_VENV)])
    if ok:
        ok, out = _run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"])
    return None if ok and exe.exists() else f"pip install 'litellm[proxy]' failed: {out}"


def ensure_portkey() -> str | None:
    """Portkey's gateway from npm into bench/node_modules; None when usable, else why."""
    if PORTKEY_START.exists():
        return None
    if not shutil.which("npm") or not shutil.which("node"):
        return "node/npm not installed"
    print("installing @portkey-ai/gateway (npm)", flush=True)
    ok, out = _run(["npm", "install", "--no-audit", "--no-fund"], cwd=BENCH)
    return None if ok and PORTKEY_START.exists() else f"npm install failed: {out}"


def ensure_pyspy() -> str | None:
    exe = Path(sys.executable).parent / "py-spy"
    if exe.exists():
        return None
    ok, out = _run([sys.executable, "-m", "pip", "install", "-q", "py-spy"])
    return None if ok and exe.exists() else f"pip install py-spy failed: {out}"


def portkey_version() -> str:
    package = PORTKEY_START.parent.parent / "package.json"
    try:
        return str(json.loads(package.read_text())["version"])
    except (OSError, KeyError, ValueError):
        return "absent"


def litellm_version() -> str:
    ok, out = _run(
        [
            str(LITELLM_VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        timeout=60,
    )
    return out.strip() if ok else "absent"
