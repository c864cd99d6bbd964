"""The guide's Node samples, run with node against the gateway on the embedded model."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import Service
from tests.examples.conftest import NODE, example_env

PROMPT = "Reply with one word: yes or no?"  # short answers from the small model


def run_node(script: str, gateway: Service) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", script, PROMPT],
        cwd=NODE,
        env=example_env(gateway),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_basic_streaming(gateway: Service, node_modules: Path):
    result = run_node("basic_streaming.mjs", gateway)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Response: ")
    assert result.stdout.removeprefix("Response: ").strip(), result.stdout


def test_event_emitter(gateway: Service, node_modules: Path):
    result = run_node("event_emitter.mjs", gateway)
    assert result.returncode == 0, result.stderr
    text, _, rest = result.stdout.partition("\n\nFull response received!")
    assert rest == "\n", result.stdout
    assert text.strip(), result.stdout


def test_event_emitter_reports_a_refused_key(gateway: Service, node_modules: Path):
    env = example_env(gateway, SAVEGATE_API_KEY="sk-savegate-" + "x" * 32)
    result = subprocess.run(
        ["node", "event_emitter.mjs", PROMPT], cwd=NODE, env=env, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "401" in result.stderr
