"""`savegate config check [FILE]` names each problem by its path in the file and exits 1;
a valid file exits 0 with a summary; `savegate serve` reports the same problems."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT

INVALID = {
    "server": {"workers": 0, "prot": 8000},
    "providers": {
        "openai": {
            "base_url": "https://api.openai.com/v1",
            "api_key_env": ["CONFIG_CHECK_SET", "CONFIG_CHECK_UNSET"],
            "models": ["gpt-4o", "gpt-4o-*", {"name": "gpt-4", "upsteam": "gpt-4o"}],
        },
        "claude": {"type": "antropic", "base_url": "https://api.anthropic.com/v1", "models": []},
    },
    "models": {"gpt-4.1": {"deployments": [{"provider": "openai"}, {"provider": "azure"}]}},
    "routing": {"max_attempts": 0, "backoff_seconds": -1},
}
PROBLEMS = [
    "server.workers: must be ≥ 1 or 'auto' (got 0)",
    "server.prot: unknown key",
    "providers.openai.models[2].upsteam: unknown key",
    "providers.claude.type: must be 'openai', 'anthropic' or 'gemini'",
    "routing.max_attempts: must be ≥ 1",
    "routing.backoff_seconds: must be ≥ 0",
    "providers.openai.api_key_env[1]: environment variable CONFIG_CHECK_UNSET is not set",
]


def savegate(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "savegate", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={
            "CONFIG_CHECK_SET": "sk-set",
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT / "src"),
        },
        timeout=60,
    )


def write(path: Path, config: object) -> str:
    path.write_text(yaml.safe_dump(config, allow_unicode=True))
    return str(path)


def test_every_problem_is_named_by_its_path(tmp_path):
    done = savegate("config", "check", write(tmp_path / "bad.yaml", INVALID))
    assert done.returncode == 1, done.stdout
    lines = [line.strip() for line in done.stderr.splitlines()]
    assert lines[0] == f"savegate: config file {tmp_path / 'bad.yaml'} is invalid:"
    assert sorted(lines[1:]) == sorted(PROBLEMS)


def test_deployments_naming_unknown_providers_are_named(tmp_path):
    config = {
        "providers": {"openai": {"base_url": "http://x", "models": ["a"]}},
        "models": {"gpt-4.1": {"deployments": [{"provider": "openai"}, {"provider": "azure"}]}},
    }
    done = savegate("config", "check", write(tmp_path / "bad.yaml", config))
    assert done.returncode == 1
    assert done.stderr.splitlines()[1:] == [
        "  models.\"gpt-4.1\".deployments[1].provider: unknown provider 'azure'"
    ]


def test_unreadable_files_are_reported(tmp_path):
    (tmp_path / "broken.yaml").write_text("providers: [unclosed\n")
    done = savegate("config", "check", str(tmp_path / "broken.yaml"))
    assert done.returncode == 1 and "is not valid YAML" in done.stderr
    done = savegate("config", "check", str(tmp_path / "missing.yaml"))
    assert done.returncode == 1 and "cannot read config file" in done.stderr


def test_a_valid_file_passes_with_a_summary(tmp_path):
    valid = {
        "server": {"workers": 2, "log_format": "json", "max_inflight": 100},
        "providers": {
            "openai": {"base_url": "http://x", "api_key_env": "CONFIG_CHECK_SET", "models": ["a"]}
        },
        "models": {"gpt-4.1": {"deployments": [{"provider": "openai"}]}},
        "aliases": {"gpt-4": "gpt-4.1"},
    }
    done = savegate("config", "check", write(tmp_path / "good.yaml", valid))
    assert done.returncode == 0, done.stderr
    assert "good.yaml is valid" in done.stdout
    assert "openai (openai, 1 model routes)" in done.stdout and "gpt-4.1" in done.stdout
    # The shipped sample is valid too, and with no file the defaults are.
    assert savegate("config", "check", str(ROOT / "deploy" / "savegate.yaml")).returncode == 0
    assert savegate("config", "check", cwd=tmp_path).returncode == 0


def test_serve_reports_the_same_problems(tmp_path):
    done = savegate("serve", "--config", write(tmp_path / "bad.yaml", INVALID))
    assert done.returncode == 2
    assert sorted(line.strip() for line in done.stderr.splitlines()[1:]) == sorted(PROBLEMS)
    done = savegate("serve", "--workers", "0", "--config", write(tmp_path / "ok.yaml", {}))
    assert done.returncode != 0
    assert "server.workers: must be ≥ 1 or 'auto' (got 0)" in done.stderr
