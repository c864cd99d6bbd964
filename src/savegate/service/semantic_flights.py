"""Single flight for the semantic cache: near-identical misses at once make one call.

A miss is a flight of its scope from the moment its text is known, and its vector is
added once embedded. A later miss with the same text (or, once embedded, a vector at
least `threshold` similar to a flight's) waits for that flight's answer rather than
calling upstream itself; if the flight ends without one, it makes its own call. A
request sets its vector and looks for a flight to follow in one step (no await between),
so that of two misses only the later can wait for the earlier: no two wait for each
other. Within this process only: across processes, entries are shared through the
database, seconds apart (see `cache/semantic.py`).
"""

from __future__ import annotations

import asyncio

import numpy as np

from savegate.cache import Entry
from savegate.cache.vectors import Vector


class Flight:
    """One miss's call: its answer's entry once it has one, None if it ends without."""

    def __init__(self, flights: Flights, scope: str, text: bytes) -> None:
        self._flights = flights
        self.scope = scope
        self.text = text
        self.vector: Vector | None = None
        self._answer: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()

    async def wait(self, seconds: float) -> Entry | None:
        """The flight's entry; None if it failed or took longer than `seconds`."""
        try:
            async with asyncio.timeout(seconds):
                return await asyncio.shield(self._answer)
        except TimeoutError:
            return None

    def land(self, entry: Entry | None) -> None:
        """The call is over: those waiting get `entry` (None: make your own call)."""
        if not self._answer.done():
            self._answer.set_result(entry)
        self._flights.drop(self)


class Flights:
    def __init__(self) -> None:
        self._scopes: dict[str, list[Flight]] = {}

    def start(self, scope: str, text: bytes) -> Flight:
        flight = Flight(self, scope, text)
        self._scopes.setdefault(scope, []).append(flight)
        return flight

    def drop(self, flight: Flight) -> None:
        flights = self._scopes.get(flight.scope)
        if flights is not None and flight in flights:
            flights.remove(flight)
            if not flights:
                del self._scopes[flight.scope]

    def same_text(self, scope: str, text: bytes) -> Flight | None:
        return next((f for f in self._scopes.get(scope, ()) if f.text == text), None)

    def embedded(
        self, own: Flight, vector: Vector, threshold: float
    ) -> tuple[Flight, float] | None:
        """`own`'s vector set; and the embedded flight of its scope most similar to it,
        with its similarity, if at least `threshold`."""
        own.vector = vector
        best: tuple[Flight, float] | None = None
        for flight in self._scopes.get(own.scope, ()):
            if flight is own or flight.vector is None or len(flight.vector) != len(vector):
                continue
            similarity = float(np.dot(flight.vector, vector))
            if similarity >= threshold and (best is None or similarity > best[1]):
                best = (flight, similarity)
        return best
