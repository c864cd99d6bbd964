"""A JSON value that is parsed or serialised only when someone needs the other form.

Relayed upstream bytes stay bytes end to end; locally built answers are serialised once.
"""

from __future__ import annotations

from typing import Any

import orjson


class Json:
    __slots__ = ("_data", "_raw")

    def __init__(self, *, raw: bytes | None = None, data: Any = None) -> None:
        self._raw = raw
        self._data = data

    @classmethod
    def of(cls, data: Any) -> Json:
        return cls(data=data)

    @property
    def raw(self) -> bytes:
        if self._raw is None:
            self._raw = orjson.dumps(self._data)
        return self._raw

    @property
    def data(self) -> Any:
        if self._data is None and self._raw is not None:
            self._data = orjson.loads(self._raw)
        return self._data
