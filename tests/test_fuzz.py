"""A short, bounded atheris run over the parser, validators, translators and SSE decoder
(`tests/fuzz/targets.py`), seeded with valid bodies and recorded streams."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("atheris")

SEEDS = [
    {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "tool_choice": "auto",
    },
    {"model": "m", "prompt": ["a", [1, 2]], "n": 2},
    {"model": "m", "input": ["a"], "dimensions": 3},
    {
        "model": "m",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        ],
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}},
    },
    {
        "model": "m",
        "max_tokens": 5,
        "system": [{"type": "text", "text": "s"}],
        "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}],
    },
]


def test_fuzz_briefly(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for index, seed in enumerate(SEEDS):
        # The target reads the pipeline's index, then where to cut the stream, then the body.
        (corpus / f"body-{index}").write_bytes(bytes([index, 0, 0, 0]) + json.dumps(seed).encode())
    for index, path in enumerate(sorted((ROOT / "tests" / "fixtures").rglob("*.sse"))[:4]):
        (corpus / f"stream-{index}").write_bytes(b"\0\0\0\0" + path.read_bytes())
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.targets",
            "-max_total_time=4",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),
        ],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-3000:]
