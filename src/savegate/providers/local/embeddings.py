"""Embeddings from the embedded model: mean-pooled hidden states of a second llama.cpp
context opened in embedding mode, loaded on first use and guarded by its own lock (it
shares nothing with the generation worker's context)."""

from __future__ import annotations

import threading
from pathlib import Path

import llama_cpp

from savegate.core.errors import InvalidRequest


class Embedder:
    def __init__(self, path: Path, *, context_tokens: int, threads: int | None) -> None:
        self._path = path
        self._context_tokens = context_tokens
        self._threads = threads
        self._llama: llama_cpp.Llama | None = None
        self._lock = threading.Lock()

    def _model(self) -> llama_cpp.Llama:
        if self._llama is None:
            self._llama = llama_cpp.Llama(
                model_path=str(self._path),
                embedding=True,
                pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                n_ctx=self._context_tokens,
                n_batch=self._context_tokens,
                n_ubatch=self._context_tokens,
                n_threads=self._threads,
                verbose=False,
            )
        return self._llama

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Vectors for `texts` and the tokens read. Blocking: call it off the event loop."""
        with self._lock:
            llama = self._model()
            tokens = 0
            vectors: list[list[float]] = []
            for text in texts:
                count = len(llama.tokenize(text.encode(), add_bos=True))
                if count > self._context_tokens:
                    raise InvalidRequest(
                        f"An input is {count} tokens long; this model embeds at most "
                        f"{self._context_tokens}.",
                        param="input",
                        code="context_length_exceeded",
                    )
                tokens += count
                vectors.append([float(v) for v in llama.embed(text)])
            return vectors, tokens

    def close(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None
