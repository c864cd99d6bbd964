"""Budget and quota alerts: logged, and posted to a webhook when one is configured."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from savegate.core.keys import ApiKey

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


class AlertSender:
    def __init__(self, webhook_url: str | None) -> None:
        self._url = webhook_url
        self._client: httpx.AsyncClient | None = None
        if webhook_url:
            import httpx  # only with a webhook: a gateway without one never loads it

            self._client = httpx.AsyncClient(timeout=10)
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, key: ApiKey, kind: str, threshold: float, used: float, limit: float) -> None:
        payload = {
            "type": "savegate.budget_alert",
            "kind": kind,
            "key_id": key.id,
            "key_name": key.name,
            "owner": key.owner,
            "threshold": threshold,
            "used": used,
            "limit": limit,
            "budget_mode": key.budget_mode,
            "at": datetime.now(UTC).isoformat(),
        }
        log.warning(
            "budget alert: key %s reached %d%% of its %s (%s of %s)",
            key.id,
            round(threshold * 100),
            kind,
            used,
            limit,
        )
        if self._client is not None:
            task = asyncio.create_task(self._post(payload))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _post(self, payload: dict[str, Any]) -> None:
        import httpx

        assert self._client is not None and self._url is not None
        for attempt in range(3):
            try:
                response = await self._client.post(self._url, json=payload)
                if response.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(2**attempt)
        log.error("could not deliver a budget alert to the webhook")

    async def aclose(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
