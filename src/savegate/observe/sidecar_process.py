"""The sidecar process: what a gateway process hands over through its stdin (`sidecar`).
Access lines' facts become lines, written to stderr (the gateway's own) as the gateway
would have written them; spans, when tracing is on, are encoded in OTLP and sent to the
collector in batches (`export`), their counts reported on stdout, `exported dropped` a
line. It ends at its stdin's end, once it has written and sent what it holds.
`python -m savegate.observe.sidecar_process [--log-level L] [--log-format F]`
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
from savegate.core.redact import Redactor
from savegate.observe import logs
from savegate.observe.access_log import line_of
from savegate.observe.otlp import Encoder, Kind
from savegate.observe.sidecar import FRAME

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


class Lines:
    """Access lines, made as the gateway's own formatter would and written at once."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self._redactor = Redactor(settings["secrets"])
        self._formatter: logs.JsonFormatter | logs.TextFormatter = (
            logs.JsonFormatter(settings["worker"], self._redactor, settings["pid"])
            if settings["format"] == "json"
            else logs.TextFormatter(settings["tag"], self._redactor)
        )

    def mask(self, secrets: list[str]) -> None:
        self._redactor.extend(secrets)

    def write(self, lines: list[logs.Facts]) -> None:
        make = self._formatter.format_line
        sys.stderr.write("".join([f"{make(line_of(facts))}\n" for facts in lines]))
        sys.stderr.flush()


class Spans:
    """Spans to the collector, and their counts on stdout when they changed."""

    def __init__(self, settings: Mapping[str, Any]) -> None:
        from savegate.observe.export import SpanExporter  # the SDK: only when tracing

        self._encoder = scope_encoder(settings["service_name"])
        self._exporter = SpanExporter(
            settings["endpoint"], dict(settings["headers"]), self._encoder
        )
        self._kinds: dict[int, Kind] = {}
        self._last = (0, 0)
        self._reporting: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._exporter.start()
        self._reporting = asyncio.create_task(self._report_every())

    def add(self, new: list[Any], spans: list[Any]) -> None:
        kinds = self._kinds
        for number, name, kind, attributes, keys, unique in new:
            kinds[number] = self._encoder.kind(name, kind, attributes, keys, unique)
        add = self._exporter.add
        for span in spans:
            add((span[0], span[1], span[2], kinds[span[3]], *span[4:]))

    def report(self) -> None:
        counts = (self._exporter.exported, self._exporter.dropped)
        if counts != self._last:
            self._last = counts
            sys.stdout.write(f"{counts[0]} {counts[1]}\n")
            sys.stdout.flush()

    async def _report_every(self) -> None:
        while True:
            await asyncio.sleep(REPORT_SECONDS)
            self.report()

    async def close(self) -> None:
        await self._exporter.close()
        if self._reporting is not None:
            self._reporting.cancel()
        self.report()


async def serve(reader: asyncio.StreamReader, settings: Mapping[str, Any]) -> None:
    lines = Lines(settings["lines"])
    spans = Spans(settings["tracing"]) if settings["tracing"] is not None else None
    if spans is not None:
        spans.start()
    while (frame := await _frame(reader)) is not None:
        new, handed, facts, secrets = frame
        if secrets is not None:
            lines.mask(secrets)
        if facts:
            lines.write(facts)
        if spans is not None and (new or handed):
            spans.add(new, handed)
    if spans is not None:
        await spans.close()


async def main(redactor: Redactor) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    settings = await _frame(reader)
    if settings is None:  # the gateway was gone before it said anything
        return
    # A collector's credentials, and the upstream keys, masked in its own lines too.
    tracing = settings["tracing"]
    redactor.extend(tracing["headers"].values() if tracing else ())
    redactor.extend(settings["lines"]["secrets"])
    await serve(reader, settings)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m savegate.observe.sidecar_process")
    logs.add_helper_options(parser)
    redactor = logs.configure_helper(parser.parse_args(argv), "sidecar")
    try:
        uvloop.run(main(redactor))
    finally:
        logs.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
