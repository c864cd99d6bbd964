"""Choosing the next token: temperature, top-p, penalties, seed, and a grammar if any.

A grammar is expensive to apply: it walks every one of the 49k vocabulary entries through
its rules, which made constrained decoding several times slower than free text. So, as llama.cpp's
own sampler does, the token is first chosen without the grammar and only checked
against it; the grammar is applied to the whole vocabulary only when it rejects that
token. The result is the same distribution, restricted to what the grammar allows.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass

import llama_cpp
import numpy as np


@dataclass(frozen=True, slots=True)
class Sampling:
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None  # None = a fresh random seed


class TokenSampler:
    """Samples from the logits of the last evaluated token. One per generation; used on
    the worker thread only. `close()` frees the native samplers."""

    def __init__(
        self, llama: llama_cpp.Llama, sampling: Sampling, seed: int, grammar: str | None
    ) -> None:
        self._ctx = llama.ctx
        self._vocab = llama_cpp.llama_model_get_vocab(llama.model)
        self._n_vocab = llama.n_vocab()
        self._chain = llama_cpp.llama_sampler_chain_init(
            llama_cpp.llama_sampler_chain_default_params()
        )
        stages = []
        if sampling.presence_penalty or sampling.frequency_penalty:
            stages.append(
                llama_cpp.llama_sampler_init_penalties(
                    self._n_vocab,
                    llama.n_ctx(),  # the whole answer counts, as with OpenAI
                    1.0,
                    sampling.frequency_penalty,
                    sampling.presence_penalty,
                )
            )
        if sampling.temperature <= 0:
            stages.append(llama_cpp.llama_sampler_init_greedy())
        else:
            # OpenAI's order: scale by the temperature, then keep the top-p nucleus.
            stages.append(llama_cpp.llama_sampler_init_temp(sampling.temperature))
            stages.append(llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
            stages.append(llama_cpp.llama_sampler_init_dist(seed))
        for stage in stages:
            llama_cpp.llama_sampler_chain_add(self._chain, stage)  # the chain owns it
        self._grammar: llama_cpp.llama_sampler_p | None = None
        self.set_grammar(grammar)
        self._candidates = (llama_cpp.llama_token_data * self._n_vocab)()
        self._view = np.ctypeslib.as_array(self._candidates)
        self._ids = np.arange(self._n_vocab, dtype=np.int32)
        self._single = (llama_cpp.llama_token_data * 1)()

    def set_grammar(self, gbnf: str | None) -> None:
        """Constrain the tokens from now on by `gbnf` (GBNF, root rule `root`), or not."""
        if self._grammar is not None:
            llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None
        if gbnf is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(
                self._vocab, gbnf.encode("utf-8"), b"root"
            )
            if not grammar:
                raise ValueError("invalid grammar")
            self._grammar = grammar

    def sample(self) -> int:
        logits = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits_ith(self._ctx, -1), shape=(self._n_vocab,)
        )
        token = self._pick(logits, constrained=False)
        if self._grammar is not None:
            if not self._allowed(token):
                token = self._pick(logits, constrained=True)
            llama_cpp.llama_sampler_accept(self._grammar, token)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def _pick(self, logits: np.ndarray, *, constrained: bool) -> int:
        # Samplers sort the candidates in place, so they are laid out afresh each time.
        self._view["id"] = self._ids
        self._view["logit"] = logits
        self._view["p"] = 0.0
        candidates = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._candidates, llama_cpp.llama_token_data_p),
            size=self._n_vocab,
            selected=-1,
            sorted=False,
        )
        if constrained:
            llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(candidates))
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(candidates))
        return int(candidates.data[candidates.selected].id)

    def _allowed(self, token: int) -> bool:
        self._single[0] = llama_cpp.llama_token_data(token, 1.0, 0.0)
        candidate = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._single, llama_cpp.llama_token_data_p),
            size=1,
            selected=-1,
            sorted=False,
        )
        llama_cpp.llama_sampler_apply(self._grammar, ctypes.byref(candidate))
        return math.isfinite(candidate.data[0].logit)

    def close(self) -> None:
        self.set_grammar(None)
        llama_cpp.llama_sampler_free(self._chain)
