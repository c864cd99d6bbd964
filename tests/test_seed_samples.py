"""Every Python sample of the streaming guide, run as written (only api_key and base_url
come from the environment), against the gateway on the embedded model."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, Service

SAMPLES = ["basic_streaming", "streaming_callback", "async_streaming", "error_handling"]


@pytest.mark.parametrize("sample", SAMPLES)
def test_seed_sample_prints_real_text(gateway: Service, sample: str):
    env = {**os.environ, "SAVEGATE_API_KEY": gateway.key, "SAVEGATE_BASE_URL": gateway.base_url}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python" / f"{sample}.py")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "Error during streaming" not in result.stdout
    text = result.stdout.replace("Response: ", "").replace("\033[92m", "").replace("\033[0m", "")
    # The embedded model samples: a joke may be two words long, but it is words.
    assert any(ch.isalpha() for ch in text), result.stdout
