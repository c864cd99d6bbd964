"""Centring the embedded model's vectors before they are compared.

SmolLM2 is a chat model, not an embedding model: its mean-pooled hidden states share one
large common direction, so that any two prompts score 0.8 to 0.97 (unrelated questions
0.83 at the median), too close together for any threshold. Taking away the mean of a
fixed set of ordinary prompts (embedded once per process, by the same model) leaves what
tells prompts apart: unrelated questions then score about 0.06 at the median, a changed
country 0.83-0.84, a changed punctuation or a word added 0.89-0.94. `VERSION` is part of
every scope, so that vectors centred on another set are never compared with these.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
from numpy.typing import NDArray

from savegate.service.semantic_text import normalise

VERSION = "centred-1"
REFERENCE = (
    "What time is it in London?",
    "Tell me a joke about cats.",
    "Summarise this article in three sentences.",
    "How do I reset my password?",
    "What is the weather like in Tokyo today?",
    "Write an email to my manager asking for a day off.",
    "Explain recursion to a beginner.",
    "List five fruits that are high in vitamin C.",
    "What does HTTP stand for?",
    "How tall is Mount Everest?",
    "Convert 5 miles to kilometres.",
    "Who painted the Mona Lisa?",
    "Write a Python function that reverses a string.",
    "What is photosynthesis?",
    "Recommend a good science fiction book.",
    "How many days are in a leap year?",
    'Translate "thank you" into French.',
    "What are the symptoms of the flu?",
    "Give me three ideas for a birthday party.",
    "How does a car engine work?",
    "What is the difference between a virus and a bacterium?",
    "Write a short poem about autumn.",
    "How do I make a cup of green tea?",
    "What is the population of Brazil?",
    "Explain how a blockchain works.",
    "What should I pack for a week in Iceland?",
    "How do I center a div in CSS?",
    "Who was the first person on the Moon?",
    "What is the square root of 144?",
    "Describe the plot of Hamlet.",
    "How can I improve my sleep?",
    "What is machine learning?",
)

Vectors = NDArray[np.float32]  # rows of unit length


class Centre:
    """`embed`: the unit vectors of some texts, None if they could not be had."""

    def __init__(self, embed: Callable[[list[str]], Awaitable[Vectors | None]]) -> None:
        self._embed = embed
        self._mean: Vectors | None = None
        self._lock = asyncio.Lock()

    async def apply(self, vector: Vectors) -> Vectors | None:
        """`vector` less the reference mean, of unit length again."""
        mean = await self._reference()
        if mean is None:
            return None
        centred = vector - mean
        norm = float(np.linalg.norm(centred))
        return centred / norm if norm else None

    async def _reference(self) -> Vectors | None:
        if self._mean is not None:
            return self._mean
        async with self._lock:  # the first requests wait for the one call that makes it
            if self._mean is None:
                vectors = await self._embed([normalise(text) for text in REFERENCE])
                if vectors is not None:
                    self._mean = vectors.mean(axis=0).astype(np.float32)
            return self._mean
