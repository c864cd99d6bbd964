"""The embedded model and the one thread that runs it.

llama.cpp contexts are not thread-safe, so a single worker thread owns all evaluation.
Requests wait in one FIFO per API key and the worker serves the keys in turn, so a key
with many requests cannot starve another. Every job can be cancelled: a queued job is
skipped, a running one stops before its next token (or its next prompt chunk).
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import secrets
import threading
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import llama_cpp

from savegate.core.errors import ProviderError
from savegate.providers.local.output import Output, Part
from savegate.providers.local.sampler import Sampling, TokenSampler

log = logging.getLogger(__name__)

# Prompt tokens evaluated between two looks at the cancel flag (a fraction of a second on
# a small CPU, and barely slower than bigger batches).
PREFILL_CHUNK = 64
# llama.cpp reads this seed value as "pick a random seed".
_RANDOM_SEED = 0xFFFFFFFF


class GrammarSwitch(Protocol):
    def decide(self, generated: bytes) -> tuple[bool, str | None]:
        """(decided, the grammar from now on) given the bytes generated so far."""
        ...


@dataclass(slots=True)
class Generation:
    """One completion of one prompt: a choice of a request."""

    prompt: list[int]
    max_tokens: int
    sampling: Sampling
    output: Output  # used on the worker thread only
    grammar: str | None = None  # GBNF
    switch: GrammarSwitch | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    reason: str  # "stop" or "length"
    completion_tokens: int
    cached_tokens: int  # prompt tokens whose evaluation was reused from the last job


@dataclass(frozen=True, slots=True)
class _Failed:
    message: str


class Job:
    """A queued or running generation, and the stream of its results on the event loop."""

    def __init__(self, key: str, generation: Generation, loop: asyncio.AbstractEventLoop):
        self.key = key
        self.generation = generation
        self._loop = loop
        self._events: asyncio.Queue[list[Part] | Finished | _Failed] = asyncio.Queue()
        self._cancelled = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop the job (from any thread); harmless once it has finished."""
        self._cancelled.set()

    def post(self, event: list[Part] | Finished | _Failed) -> None:
        """Hand a result to the event loop (worker thread)."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop is gone: nobody is listening any more
            self.cancel()

    async def events(self) -> AsyncIterator[Part | Finished]:
        """The answer's parts, then `Finished`; a worker failure raises `ProviderError`."""
        while True:
            event = await self._events.get()
            if isinstance(event, Finished):
                yield event
                return
            if isinstance(event, _Failed):
                raise ProviderError(event.message, status=500, type="server_error", code=None)
            for part in event:
                yield part


class _FairQueue:
    """One FIFO lane per key; `take` serves the lanes round-robin."""

    def __init__(self) -> None:
        self._lanes: OrderedDict[str, deque[Job]] = OrderedDict()
        self._ready = threading.Condition()
        self._closed = False

    def put(self, job: Job) -> None:
        with self._ready:
            if self._closed:
                raise ProviderError("The local model is shutting down.", status=503, retryable=True)
            self._lanes.setdefault(job.key, deque()).append(job)
            self._ready.notify()

    def take(self) -> Job | None:
        """The next job to run, waiting for one; None once closed."""
        with self._ready:
            while not self._closed:
                while self._lanes:
                    key, lane = next(iter(self._lanes.items()))
                    job = lane.popleft()
                    if lane:
                        self._lanes.move_to_end(key)
                    else:
                        del self._lanes[key]
                    if not job.cancelled:
                        return job
                self._ready.wait()
            return None

    def close(self) -> list[Job]:
        """Stop serving; the jobs that were still waiting."""
        with self._ready:
            self._closed = True
            waiting = [job for lane in self._lanes.values() for job in lane]
            self._lanes.clear()
            self._ready.notify_all()
            return waiting


class Engine:
    """Loads the model (blocking: call it off the event loop) and starts the worker."""

    def __init__(self, path: Path, *, context_tokens: int, threads: int | None) -> None:
        self._llama = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=context_tokens,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self._vocab = llama_cpp.llama_model_get_vocab(self._llama.model)
        self.n_ctx = self._llama.n_ctx()
        self.chat_template: str | None = self._llama.metadata.get("tokenizer.chat_template")
        self.bos_token = self._token_text(self._llama.token_bos())
        self.eos_token = self._token_text(self._llama.token_eos())
        self.tokens_generated = 0  # since start, all jobs: for monitoring and tests
        self._queue = _FairQueue()
        self._running: Job | None = None
        # A daemon, so a provider that was never closed cannot hold up interpreter exit.
        self._thread = threading.Thread(target=self._work, name="savegate-local-model", daemon=True)
        self._thread.start()

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llama.detokenize([token], special=True).decode("utf-8", "replace")

    # --- callable from any thread: they only read the vocabulary ---------------------------

    def tokenize(self, text: str) -> list[int]:
        """Prompt tokens. Chat templates write the special tokens (and BOS) themselves."""
        return self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def grammar_is_valid(self, gbnf: str) -> bool:
        # llama.cpp would crash on a grammar it cannot parse, so check before queueing.
        sampler = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode("utf-8"), b"root")
        if not sampler:
            return False
        llama_cpp.llama_sampler_free(sampler)
        return True

    # --- event loop side -----------------------------------------------------------------

    def submit(self, key: str, generation: Generation) -> Job:
        job = Job(key, generation, asyncio.get_running_loop())
        self._queue.put(job)
        return job

    def close(self) -> None:
        """Cancel everything, stop the worker and free the model (blocking)."""
        for job in self._queue.close():
            job.post(_Failed("The local model shut down before this request ran."))
        running = self._running
        if running is not None:
            running.cancel()
        self._thread.join()
        if running is not None:  # its consumer, if still there, must not wait forever
            running.post(_Failed("The local model shut down while answering."))
        self._llama.close()

    # --- worker thread ---------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._queue.take()) is not None:
            self._running = job
            try:
                self._run(job)
            except Exception:
                log.exception("local model generation failed")
                job.post(_Failed("The local model failed while generating the answer."))
            finally:
                self._running = None

    def _prefill(self, tokens: Sequence[int], job: Job, *, fresh: bool) -> int | None:
        """Evaluate `tokens`, reusing the longest prefix still in the KV cache unless
        `fresh`; the number of reused tokens, or None when the job was cancelled."""
        llama = self._llama
        reused = 0
        if not fresh:
            for cached, token in zip(llama.input_ids[: llama.n_tokens], tokens, strict=False):
                if cached != token:
                    break
                reused += 1
        # At least one token is evaluated, so the logits are those of this prompt.
        reused = min(reused, len(tokens) - 1)
        llama.n_tokens = reused  # `eval` drops the cache beyond this point
        for start in range(reused, len(tokens), PREFILL_CHUNK):
            if job.cancelled:
                return None
            llama.eval(tokens[start : start + PREFILL_CHUNK])
        return reused

    def _run(self, job: Job) -> None:
        spec = job.generation
        seed = spec.sampling.seed
        # A seeded job evaluates its prompt from scratch: reused cache entries were computed
        # in other batch shapes, which changes the logits slightly and so the samples.
        cached = self._prefill(spec.prompt, job, fresh=seed is not None)
        if cached is None:
            return
        if seed is None:
            seed = secrets.randbits(32)
        sampler = TokenSampler(self._llama, spec.sampling, seed % _RANDOM_SEED, spec.grammar)
        try:
            ended = self._generate(job, sampler)
        finally:
            sampler.close()
        if ended is None:
            return
        tail = spec.output.flush()
        if tail:
            job.post(tail)
        job.post(Finished(*ended, cached))

    def _generate(self, job: Job, sampler: TokenSampler) -> tuple[str, int] | None:
        """Generate up to `max_tokens` tokens: (finish reason, tokens generated), or None
        when the job was cancelled."""
        spec = job.generation
        llama, output, switch = self._llama, spec.output, spec.switch
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        opening = bytearray()  # what the grammar switch decides on
        for count in range(1, spec.max_tokens + 1):
            if job.cancelled:
                return None
            token = sampler.sample()
            self.tokens_generated += 1
            if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                return "stop", count
            piece = llama.detokenize([token])
            # Bytes of a character split across tokens wait for the rest; an incomplete
            # character at a length cut is dropped rather than shown as U+FFFD.
            parts = output.feed(decoder.decode(piece))
            if parts:
                job.post(parts)
            if output.done:
                return "stop", count
            if switch is not None:
                opening += piece
                decided, grammar = switch.decide(bytes(opening))
                if decided:
                    sampler.set_grammar(grammar)
                    switch = None
            if count < spec.max_tokens:
                llama.eval([token])
        return "length", spec.max_tokens
