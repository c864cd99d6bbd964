"""The Codex CLI (`codex exec`) against the gateway: it sends namespaced functions and
hosted tools on every turn and must still get its answer.

Codex is configured by its own config file in a temporary CODEX_HOME (and HOME), with a
provider that points at the gateway: it never reaches the internet.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, Service

CODEX = ROOT / "tests" / "codex" / "node_modules" / ".bin" / "codex"

CONFIG = """\
model = "{model}"
model_provider = "savegate"
check_for_update_on_startup = false

[model_providers.savegate]
name = "SaveGate"
base_url = "{base_url}"
env_key = "SAVEGATE_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false
"""


def run_codex(gateway: Service, model: str, home: Path) -> subprocess.CompletedProcess[str]:
    if not CODEX.exists():
        pytest.fail("tests/codex has no node_modules: `make test` installs them (npm ci)")
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(CONFIG.format(model=model, base_url=gateway.base_url))
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("OPENAI_", "CODEX_"))
    }
    env.update(HOME=str(home), CODEX_HOME=str(codex_home), SAVEGATE_API_KEY=gateway.key)
    return subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "--color", "never", "Weather in SF?"],
        cwd=home,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_codex_exec_through_chat(relay_gateway: Service, tmp_path: Path):
    result = run_codex(relay_gateway, "text-basic", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("I'm unable to provide real-time weather"), result.stdout


def test_codex_exec_through_the_native_responses_api(native_gateway: Service, tmp_path: Path):
    result = run_codex(native_gateway, "codex-model", tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello from the Responses API.\n"
