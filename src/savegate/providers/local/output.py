"""Turning generated text into answer parts, token by token, on the model's worker thread.

An `Output` sees the decoded text of each new token and says what the client may see
now. It may hold text back (a possible start of a stop string) and may declare the answer
complete (`done`), which ends generation at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class CallName:
    """The name of the function the answer calls: the start of a tool call."""

    name: str


@dataclass(frozen=True, slots=True)
class CallArgs:
    """The next fragment of the call's arguments, as raw JSON text."""

    fragment: str


Part = Text | CallName | CallArgs


class Output(Protocol):
    @property
    def done(self) -> bool:
        """The answer is complete: stop generating."""
        ...

    def feed(self, text: str) -> list[Part]:
        """Parts the client may see now that `text` was generated."""
        ...

    def flush(self) -> list[Part]:
        """Generation ended without a stop string: release what was held back."""
        ...


class StopFilter:
    """Cuts text at the first stop string and never lets any of it through.

    Text that could be the beginning of a stop string is held until the next token
    shows whether it is one.
    """

    __slots__ = ("_held", "_stops", "done")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = tuple(stop for stop in stops if stop)
        self._held = ""
        self.done = False

    def feed(self, text: str) -> str:
        if not self._stops:
            return text
        buffer = self._held + text
        hits = [index for stop in self._stops if (index := buffer.find(stop)) >= 0]
        if hits:
            self.done = True
            self._held = ""
            return buffer[: min(hits)]
        keep = max((_overlap(buffer, stop) for stop in self._stops), default=0)
        self._held = buffer[len(buffer) - keep :]
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `stop`."""
    for size in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:size]):
            return size
    return 0


class TextOutput:
    """A plain text answer, cut at stop strings."""

    __slots__ = ("_filter",)

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._filter = StopFilter(stops)

    @property
    def done(self) -> bool:
        return self._filter.done

    def feed(self, text: str) -> list[Part]:
        visible = self._filter.feed(text)
        return [Text(visible)] if visible else []

    def flush(self) -> list[Part]:
        held = self._filter.flush()
        return [Text(held)] if held else []
