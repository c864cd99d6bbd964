"""The span process: what a gateway process hands over through its stdin (`span_pipe`),
encoded in OTLP and sent to the collector in batches (`export`). It reports its counts
on stdout, `exported dropped` a line, and ends at its stdin's end, once it has sent
what it holds. `python -m savegate.observe.span_process [--log-level L] [--log-format F]`
"""

from __future__ import annotations

import argparse
import asyncio
import marshal
import sys
from collections.abc import Mapping
from typing import Any

import uvloop

from savegate import __version__
from savegate.core.redact import Redactor, redact_logs
from savegate.observe import logs
from savegate.observe.export import SpanExporter
from savegate.observe.otlp import Encoder, Kind
from savegate.observe.span_pipe import FRAME

REPORT_SECONDS = 0.25


def resource(service_name: str) -> dict[str, Any]:
    """The SDK's resource (its own attributes and `OTEL_RESOURCE_ATTRIBUTES`), named
    `service_name` unless `OTEL_SERVICE_NAME` names it."""
    from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource

    attributes = dict(Resource.create({SERVICE_VERSION: __version__}).attributes)
    if str(attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        attributes[SERVICE_NAME] = service_name
    return attributes


def scope_encoder(service_name: str) -> Encoder:
    return Encoder(resource(service_name), "savegate", __version__)


async def _frame(reader: asyncio.StreamReader) -> Any:
    """The next frame's value, or None at the end of the pipe."""
    try:
        (size,) = FRAME.unpack(await reader.readexactly(FRAME.size))
        return marshal.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


class _Reporter:
    """Writes the exporter's counts when they changed, every `REPORT_SECONDS`."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter
        self._last = (0, 0)

    def report(self) -> None:
        counts = (self._exporter.exported, self._exporter.dropped)
        if counts != self._last:
            self._last = counts
            sys.stdout.write(f"{counts[0]} {counts[1]}\n")
            sys.stdout.flush()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(REPORT_SECONDS)
            self.report()


async def serve(reader: asyncio.StreamReader, settings: Mapping[str, Any]) -> None:
    encoder = scope_encoder(settings["service_name"])
    exporter = SpanExporter(settings["endpoint"], dict(settings["headers"]), encoder)
    exporter.start()
    reporter = _Reporter(exporter)
    reporting = asyncio.create_task(reporter.run())
    kinds: dict[int, Kind] = {}
    while (frame := await _frame(reader)) is not None:
        new, spans = frame
        for number, name, kind, attributes, keys, unique in new:
            kinds[number] = encoder.kind(name, kind, attributes, keys, unique)
        add = exporter.add
        for span in spans:
            add((span[0], span[1], span[2], kinds[span[3]], *span[4:]))
    await exporter.close()
    reporting.cancel()
    reporter.report()


async def main(redactor: Redactor) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    settings = await _frame(reader)
    if settings is None:  # the gateway was gone before it said anything
        return
    redactor.extend(settings["headers"].values())  # a collector's credentials
    await serve(reader, settings)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m savegate.observe.span_process")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    redactor = Redactor(())
    redact_logs(redactor)
    logs.configure(args.log_level, args.log_format, None, "[spans] ", redactor)
    try:
        uvloop.run(main(redactor))
    finally:
        logs.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
