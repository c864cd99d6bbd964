"""The response caches in the order they are asked: the exact one, then, on its miss, the
semantic one. Apart from `semantic.py`, so that a gateway without a semantic cache never
loads what it needs (numpy, the vector index)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from savegate.core.request import ChatRequest
from savegate.service.cache import Look, ResponseCache

if TYPE_CHECKING:
    from savegate.service.semantic import SemanticCache, SemanticLook


class Caches:
    """The exact cache first, then, on its miss, the semantic one."""

    def __init__(
        self,
        exact: ResponseCache,
        semantic: SemanticCache | None,
        canonical: Callable[[str], str],
    ) -> None:
        self._exact = exact
        self._semantic = semantic
        self._canonical = canonical

    def start(self) -> None:
        if self._semantic is not None:
            self._semantic.start()

    async def look(self, request: ChatRequest, endpoint: str) -> Look | SemanticLook | None:
        exact = await self._exact.look(request, endpoint)
        if self._semantic is None or (exact is not None and exact.entry is not None):
            return exact
        try:
            model = self._canonical(request.model)
            found = await self._semantic.look(request, endpoint, model, exact)
        except BaseException:
            if exact is not None:
                await exact.release()
            raise
        if found is None:
            return exact
        if found.entry is not None and exact is not None:
            await exact.release()  # answered: nobody need wait for this request's call
        return found

    async def aclose(self) -> None:
        await self._exact.aclose()
        if self._semantic is not None:
            await self._semantic.aclose()
