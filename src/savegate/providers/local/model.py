"""The embedded model in this process: OpenAI requests in, OpenAI answers out.

The model process (`server.py`) runs one of these for every gateway process of a data
directory; gateways reach it through `adapter.LocalProvider`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from savegate.config import LocalModelConfig
from savegate.core.errors import ContextLengthExceeded, InvalidRequest, ProviderError
from savegate.core.payload import Json
from savegate.core.request import ChatRequest
from savegate.providers.local.answer import ChoiceAnswer, ChoiceChunks
from savegate.providers.local.embeddings import Embedder
from savegate.providers.local.engine import Engine, Finished, Generation, Job
from savegate.providers.local.prompt import PromptBuilder
from savegate.providers.local.sampler import Sampling
from savegate.providers.local.tools import ToolPlan, describe, grammar_for, output_for, plan_tools
from savegate.providers.local.weights import find_weights, model_name
from savegate.wire.chunks import Chunks
from savegate.wire.openai_chat import ChunkBuilder, completion, usage
from savegate.wire.openai_embeddings import response as embeddings_response

EMBEDDING_CONTEXT = 2048  # tokens per input: one batch, so an input is pooled whole


def _default_threads() -> int:
    # Every core but one: llama.cpp's threads spin while they wait for each other, so
    # sharing the last core with the event loop (which streams the tokens out) can make
    # generation several times slower. Past a few threads a 135M model gains nothing.
    return max(1, min(8, (os.cpu_count() or 1) - 1))


@dataclass(slots=True)
class _Prepared:
    plan: ToolPlan | None
    prompt_tokens: int
    generations: list[Generation]


class EmbeddedModel:
    """SmolLM2 (or another GGUF chat model) run in-process by llama.cpp.

    `start()` loads the model off the event loop; `complete()`/`stream()` also start it
    on first use. `aclose()` cancels all work and frees the model.
    """

    def __init__(self, config: LocalModelConfig | None = None) -> None:
        self._config = config or LocalModelConfig()
        self._loaded: tuple[Engine, PromptBuilder] | None = None
        self._starting = asyncio.Lock()
        self._closed = False
        self._embedder: Embedder | None = None
        self.model = self._config.name  # replaced by the real model's name once loaded

    async def start(self) -> None:
        async with self._starting:
            if self._closed:  # no reloading the model for a request that comes in late
                raise ProviderError("The local model is shut down.", status=503, retryable=True)
            if self._loaded is not None:
                return
            path = find_weights(self._config.model_path)
            engine = await asyncio.to_thread(
                Engine,
                path,
                context_tokens=self._config.context_tokens,
                threads=self._config.threads or _default_threads(),
            )
            prompts = PromptBuilder(
                engine.chat_template, bos_token=engine.bos_token, eos_token=engine.eos_token
            )
            self.model = model_name(path)
            self._loaded = engine, prompts
            self._embedder = Embedder(
                path,
                context_tokens=EMBEDDING_CONTEXT,
                threads=self._config.threads or _default_threads(),
            )

    @property
    def engine(self) -> Engine:
        if self._loaded is None:
            raise RuntimeError("the local model is not started")
        return self._loaded[0]

    async def aclose(self) -> None:
        async with self._starting:
            self._closed = True
            loaded, self._loaded = self._loaded, None
            if loaded is not None:
                await asyncio.to_thread(loaded[0].close)
            if self._embedder is not None:
                await asyncio.to_thread(self._embedder.close)

    async def complete(self, request: ChatRequest, model: str) -> Json:
        """`model` is the route's name for us; the answer names the model that answered."""
        prepared = await self._prepare(request)
        jobs = self._submit(request, prepared)
        answers = [ChoiceAnswer(index, prepared.plan) for index in range(len(jobs))]
        choices: list[dict[str, Any]] = []
        completion_tokens = cached_tokens = 0
        try:
            for index, (job, answer) in enumerate(zip(jobs, answers, strict=True)):
                async for event in job.events():
                    if isinstance(event, Finished):
                        choices.append(answer.choice(event.reason))
                        completion_tokens += event.completion_tokens
                        cached_tokens = event.cached_tokens if index == 0 else cached_tokens
                    else:
                        answer.add(event)
        finally:
            for job in jobs:  # on cancellation: stop the work nobody waits for any more
                job.cancel()
        return completion(
            self.model, choices, usage(prepared.prompt_tokens, completion_tokens, cached_tokens)
        )

    async def embed(self, request: ChatRequest, model: str) -> Json:
        await self.start()
        assert self._embedder is not None
        value = request.body["input"]
        texts = [value] if isinstance(value, str) else value
        if not all(isinstance(text, str) for text in texts):
            raise InvalidRequest(
                "The embedded model takes text input, not token arrays.", param="input"
            )
        vectors, tokens = await asyncio.to_thread(self._embedder.embed, texts)
        return Json.of(embeddings_response(vectors, self.model, tokens, request.body))

    async def stream(self, request: ChatRequest, model: str) -> EmbeddedStream:
        """Validation errors (context too long, bad tool choice) raise here."""
        prepared = await self._prepare(request)
        jobs = self._submit(request, prepared)
        return EmbeddedStream(jobs, self._chunks(prepared, jobs, request.include_usage))

    def _submit(self, request: ChatRequest, prepared: _Prepared) -> list[Job]:
        key = request.context.key.id
        # The choices queue one after another in the key's lane, so other keys'
        # requests can run between them.
        return [self.engine.submit(key, generation) for generation in prepared.generations]

    async def _chunks(
        self, prepared: _Prepared, jobs: list[Job], include_usage: bool
    ) -> AsyncGenerator[Chunks, None]:
        builder = ChunkBuilder(self.model)
        completion_tokens = cached_tokens = 0
        try:
            for index, job in enumerate(jobs):
                choice = ChoiceChunks(builder, index, prepared.plan)
                opening = choice.opening()
                if opening:
                    yield Chunks(opening)
                async for event in job.events():
                    if isinstance(event, Finished):
                        completion_tokens += event.completion_tokens
                        cached_tokens = event.cached_tokens if index == 0 else cached_tokens
                        chunks = choice.finish(event.reason)
                    else:
                        chunks = choice.part(event)
                    if chunks:
                        yield Chunks(chunks)
            if include_usage:
                yield Chunks(
                    [
                        builder.usage_chunk(
                            usage(prepared.prompt_tokens, completion_tokens, cached_tokens)
                        )
                    ]
                )
        finally:
            for job in jobs:
                job.cancel()

    async def _prepare(self, request: ChatRequest) -> _Prepared:
        """Everything that can refuse the request, done before any work is queued."""
        if self._loaded is None:
            await self.start()
            assert self._loaded is not None
        engine, prompts = self._loaded
        body = request.body
        plan = plan_tools(body)
        grammar, switch = grammar_for(plan)
        system_note = describe(plan) if plan is not None else None

        def tokenize() -> list[int]:
            try:
                text = prompts.render(body["messages"], system_note)
            except Exception as exc:  # the chat template refused the conversation
                raise InvalidRequest(
                    f"The messages cannot be formatted for this model: {exc}", param="messages"
                ) from exc
            return engine.tokenize(text)

        prompt = await asyncio.to_thread(tokenize)
        room = engine.n_ctx - len(prompt)
        if room < 1:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {engine.n_ctx} tokens. However, your "
                f"messages resulted in {len(prompt)} tokens. Please reduce the length of the "
                "messages.",
                param="messages",
            )
        for gbnf in (grammar, switch.call_grammar if switch else None):
            if gbnf is None:
                continue
            if not await asyncio.to_thread(engine.grammar_is_valid, gbnf):
                raise InvalidRequest(
                    "The tools' parameter schemas cannot be turned into a grammar.", param="tools"
                )
        limit = body.get("max_completion_tokens")
        if limit is None:
            limit = body.get("max_tokens")
        if limit is None:
            # A 135M model rarely stops by itself on open prompts: bound its answers.
            limit = self._config.default_max_tokens
        # Past the context there is no room: the answer ends there with "length".
        max_tokens = max(1, min(int(limit), room))
        stops = _stops(body.get("stop"))
        seed = body.get("seed")
        generations = [
            Generation(
                prompt=prompt,
                max_tokens=max_tokens,
                sampling=Sampling(
                    temperature=_number(body, "temperature", 1.0),
                    top_p=_number(body, "top_p", 1.0),
                    presence_penalty=_number(body, "presence_penalty", 0.0),
                    frequency_penalty=_number(body, "frequency_penalty", 0.0),
                    seed=None if seed is None else int(seed) + index,
                ),
                output=output_for(plan, stops),
                grammar=grammar,
                switch=switch,
            )
            for index in range(int(body.get("n") or 1))
        ]
        return _Prepared(plan, len(prompt), generations)


def _number(body: dict[str, Any], field: str, default: float) -> float:
    value = body.get(field)
    return default if value is None else float(value)


def _stops(stop: Any) -> tuple[str, ...]:
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    return tuple(item for item in items if isinstance(item, str) and item)


class EmbeddedStream:
    """The chunks of one streamed answer; `aclose()` cancels its generation."""

    def __init__(self, jobs: list[Job], chunks: AsyncGenerator[Chunks, None]) -> None:
        self._jobs = jobs
        self._chunks = chunks

    def __aiter__(self) -> AsyncIterator[Chunks]:
        return self._chunks

    async def aclose(self) -> None:
        for job in self._jobs:
            job.cancel()
        await self._chunks.aclose()
