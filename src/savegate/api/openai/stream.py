"""Relaying a neutral chat stream to OpenAI clients as SSE."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from savegate.core.errors import GatewayError
from savegate.providers.base import ChatStream
from savegate.wire import sse

log = logging.getLogger(__name__)


async def openai_sse(stream: ChatStream, request_id: str) -> AsyncIterator[bytes]:
    """`data:` events, then `[DONE]`; a failure mid-way ends with the in-stream error object."""
    try:
        async for batch in stream:
            yield batch.sse
        yield sse.DONE
    except GatewayError as exc:
        log.warning("stream %s failed mid-way: %s", request_id, exc.message)
        yield sse.error_event(exc)
    except Exception:
        log.exception("stream %s failed", request_id)
        yield sse.error_event(GatewayError("The server had an error while streaming the answer."))
    finally:
        await stream.aclose()
