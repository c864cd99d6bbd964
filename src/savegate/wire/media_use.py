"""What an image, audio or moderation call used, read from its request and its answer,
and the most it may use, for the budget's reservation.

Images: how many came back, at the quality and size the answer reports (else asked
for). Transcriptions: the audio's length in seconds, from the answer where it says
(`verbose_json`'s `duration`, a `usage` of type `duration`), else from the file: a WAV
file's header gives it exactly; for other files the last subtitle's end (`srt`, `vtt`),
else the size at 128 kbit/s, marked as estimated. The reservation assumes 8 kbit/s
(below what speech codecs go), so it is a bound. Speech: the characters of its input.
"""

from __future__ import annotations

import re
import struct
from typing import Any

import orjson

from savegate.core.media import MediaUse
from savegate.core.usage import TokenCounts
from savegate.wire.multipart import FilePart
from savegate.wire.sse import SSEDecoder

ESTIMATE_BYTES_PER_SECOND = 16_000  # 128 kbit/s, a common MP3 rate
BOUND_BYTES_PER_SECOND = 1_000  # 8 kbit/s
_CUE_END = re.compile(rb"--> (?:(\d+):)?(\d+):(\d+)[.,](\d+)")


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def image_bound(values: dict[str, Any]) -> MediaUse:
    return MediaUse(
        images=_int(values.get("n"), 1), quality=values.get("quality"), size=values.get("size")
    )


def images_use(raw: bytes, values: dict[str, Any]) -> MediaUse:
    answer = _json(raw)
    return MediaUse(
        images=len(answer.get("data") or []),
        quality=answer.get("quality") or values.get("quality"),
        size=answer.get("size") or values.get("size"),
        tokens=TokenCounts.from_openai(answer.get("usage")),
    )


def speech_use(body: dict[str, Any]) -> MediaUse:
    return MediaUse(characters=len(body["input"]))


def wav_seconds(file: FilePart) -> float | None:
    """A RIFF/WAVE file's length from its header: the `data` chunk over the byte rate."""
    head = file.head(4096)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= len(head):
        name, size = head[offset : offset + 4], struct.unpack_from("<I", head, offset + 4)[0]
        if name == b"fmt " and offset + 16 <= len(head):
            byte_rate = struct.unpack_from("<I", head, offset + 16)[0]
        if name == b"data":
            if not byte_rate:
                return None
            # A streamed WAV may say 0 or 0xFFFFFFFF: the file's size tells then.
            available = file.size - offset - 8
            length = size if 0 < size <= available else available
            return length / byte_rate
        offset += 8 + size + (size & 1)
    return None


def audio_bound(file: FilePart) -> MediaUse:
    seconds = wav_seconds(file)
    if seconds is None:
        seconds = file.size / BOUND_BYTES_PER_SECOND
    return MediaUse(seconds=max(seconds, 1.0))


def audio_estimate(file: FilePart) -> MediaUse:
    """The audio's length from the file alone: exact for WAV, else estimated."""
    seconds = wav_seconds(file)
    if seconds is not None:
        return MediaUse(seconds=seconds)
    return MediaUse(seconds=file.size / ESTIMATE_BYTES_PER_SECOND, estimated=True)


def transcription_use(raw: bytes, response_format: str, file: FilePart) -> MediaUse:
    """The answer's own figure where it has one, else the file's length; subtitles'
    last cue end (a lower bound) before a guess by the file's size."""
    if response_format in ("text", "srt", "vtt"):
        estimate = audio_estimate(file)
        ends = _CUE_END.findall(raw) if response_format != "text" else []
        if not estimate.estimated or not ends:
            return estimate
        hours, minutes, seconds, fraction = ends[-1]
        total = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
        return MediaUse(seconds=total + float(b"0." + fraction), estimated=True)
    answer = _json(raw)
    usage = answer.get("usage") or {}
    tokens = TokenCounts.from_openai(usage) if usage.get("type") == "tokens" else TokenCounts()
    if isinstance(answer.get("duration"), int | float):
        return MediaUse(seconds=float(answer["duration"]), tokens=tokens)
    if usage.get("type") == "duration" and isinstance(usage.get("seconds"), int | float):
        return MediaUse(seconds=float(usage["seconds"]), tokens=tokens)
    estimate = audio_estimate(file)
    return MediaUse(seconds=estimate.seconds, tokens=tokens, estimated=estimate.estimated)


class EventUsage:
    """The token usage a passed-through event stream reports in its last event
    (`transcript.text.done`, `speech.audio.done`), noted as the stream goes by."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.tokens: TokenCounts | None = None

    def feed(self, read: bytes) -> None:
        for event in self._decoder.decode(read):
            if b'"usage"' in event.data:
                usage = _json(event.data).get("usage")
                if isinstance(usage, dict):
                    self.tokens = TokenCounts.from_openai(usage)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
