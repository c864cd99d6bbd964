"""Images, audio and moderations for the fake OpenAI upstream, in OpenAI's documented wire
formats (`tests/fixtures/openai-media/`, from the spec's own examples).

Models: `status-<code>` answers that status with an OpenAI error body; `gpt-image-*`
answers with the GPT image models' extra fields (quality, size, token usage); a model
ending in `-hold` sends the first part of a streamed answer (speech audio, transcription
events), then waits until `GET /_release` before the rest. Transcriptions answer by
`response_format` (`json` by default, `text`, `srt`, `vtt`, `verbose_json`) or, with
`stream=true`, as `transcript.text.*` events. Speech is sent as 4 chunks of fake audio.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time
import zlib
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import Any

import orjson

from tests.fakes.recordings import sse_events

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "openai-media"
RELEASE = asyncio.Event()
TEXT = "The beach was a popular spot on a hot summer day."
SPEECH_CHUNK = 16 * 1024
SPEECH_TYPES = {
    "mp3": b"audio/mpeg",
    "opus": b"audio/opus",
    "aac": b"audio/aac",
    "flac": b"audio/flac",
    "wav": b"audio/wav",
    "pcm": b"audio/pcm",
}


def png(size: int = 8) -> bytes:
    """A real PNG, `size` pixels square: a red-to-blue gradient."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((255 - 255 * x // size, 64, 255 * x // size)) for x in range(size))
        for _ in range(size)
    )
    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


PNG_B64 = base64.b64encode(png()).decode()


def fixture(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A multipart body's text fields (lists for repeated names) and files, by the stdlib's
    MIME parser: independent of the gateway's own."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, Any] = {}
    files: dict[str, dict[str, Any]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is not None:
            files[name] = {
                "filename": filename,
                "content_type": part.get_content_type(),
                "size": len(data),
                "head": data[:16].hex(),
            }
        elif name in fields:
            fields[name] = [*([fields[name]] if isinstance(fields[name], str) else fields[name])]
            fields[name].append(data.decode())
        else:
            fields[name] = data.decode()
    return fields, files


async def send_body(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def error(status: int) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": f"fake upstream says {status}",
                "type": "fake_error",
                "param": None,
                "code": f"fake_{status}",
            }
        }
    )


def images(request: dict[str, Any]) -> dict[str, Any]:
    model = str(request.get("model"))
    count = int(request.get("n") or 1)
    if model.startswith("gpt-image"):
        answer = fixture("images-gpt-image.json")
        answer["data"] = [{"b64_json": PNG_B64} for _ in range(count)]
        answer["quality"] = request.get("quality") or "high"
        answer["size"] = request.get("size") or "1024x1024"
        return answer
    if request.get("response_format") == "b64_json":
        image = {"b64_json": PNG_B64}
        if request.get("prompt") is not None:  # a variation has no prompt to revise
            image["revised_prompt"] = request["prompt"]
        data = [image] * count
    else:
        data = [{"url": f"https://images.example/fake-{i}.png"} for i in range(count)]
    return {"created": int(time.time()), "data": data}


def transcription(fields: dict[str, Any]) -> tuple[bytes, bytes]:
    response_format = fields.get("response_format") or "json"
    if response_format == "text":
        return TEXT.encode() + b"\n", b"text/plain; charset=utf-8"
    if response_format in ("srt", "vtt"):
        subtitles = (FIXTURES / f"transcription.{response_format}").read_bytes()
        return subtitles, b"text/plain; charset=utf-8"
    verbose = fixture("transcription-verbose.json")
    if response_format == "verbose_json":
        return orjson.dumps(verbose), b"application/json"
    body: dict[str, Any] = {"text": verbose["text"]}
    if str(fields.get("model")).startswith("gpt-4o"):
        body["usage"] = {
            "type": "tokens",
            "input_tokens": 14,
            "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
            "output_tokens": 45,
            "total_tokens": 59,
        }
    else:
        body["usage"] = verbose["usage"]
    return orjson.dumps(body), b"application/json"


async def stream(send: Any, content_type: bytes, parts: list[bytes], hold: bool) -> None:
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", content_type)]}
    )
    for index, part in enumerate(parts):
        await send({"type": "http.response.body", "body": part, "more_body": True})
        if hold and index == 0:
            await asyncio.wait_for(RELEASE.wait(), timeout=30)
            RELEASE.clear()
    await send({"type": "http.response.body", "body": b""})


async def handle(path: str, headers: dict[str, str], body: bytes, send: Any, log: Any) -> None:
    content_type = headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        fields, files = parse_form(content_type, body)
    else:
        fields, files = orjson.loads(body), {}
    log["requests"].append(
        {"path": path, "body": fields, "files": files, "headers": headers, "size": len(body)}
    )
    model = str(fields.get("model"))
    hold = model.endswith("-hold")
    if model.startswith("status-"):
        status = int(model.removeprefix("status-"))
        await send_body(send, status, error(status), b"application/json")
    elif path.endswith("/images/generations") or path.endswith(("/images/edits", "/variations")):
        await send_body(send, 200, orjson.dumps(images(fields)), b"application/json")
    elif path.endswith("/moderations"):
        answer = fixture("moderation.json")
        inputs = fields["input"] if isinstance(fields["input"], list) else [fields["input"]]
        answer["results"] = answer["results"] * len(inputs)
        answer["model"] = model
        await send_body(send, 200, orjson.dumps(answer), b"application/json")
    elif path.endswith("/audio/speech"):
        kind = SPEECH_TYPES[fields.get("response_format") or "mp3"]
        parts = [bytes([i]) * SPEECH_CHUNK for i in range(4)]
        await stream(send, kind, parts, hold)
    elif str(fields.get("stream")).lower() == "true":
        events = sse_events(FIXTURES / "transcription-stream.sse")
        await stream(send, b"text/event-stream", events, hold)
    else:
        answer, kind = transcription(fields)
        await send_body(send, 200, answer, kind)
    log["completed"].append(model)
