"""Running a batch forwarded to its provider's own Batch API (`batch: native`): validate
it as any batch, upload its input (each line's model renamed to the upstream's) and
create the upstream batch, then follow it, mirroring its status and counts, forwarding a
cancel, and at its end take in its results: its output and error files stored as the
gateway's own, and a usage row for each output line.

The upstream batch's id is recorded as soon as it exists (and found again by its tag if
the process was cut before it could record it); the results are taken in with
the batch's final status in one transaction (`upstream_ingested`), so whichever process
runs the batch after a restart follows the same upstream batch and meters it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson

from savegate.core.errors import GatewayError, ProviderError
from savegate.core.usage import TokenCounts
from savegate.metering.record import UsageRecord
from savegate.providers.openai_compat.batches import UpstreamBatches
from savegate.service.batch_job import BatchJob, JobTools, output_file_id, tokens_of
from savegate.service.batch_native import NativeBatches
from savegate.store.batches import Row
from savegate.store.engine import AsyncConnection
from savegate.store.files import StoredFile
from savegate.wire.batch import LineError, blank, line_request_id, parse_line

log = logging.getLogger(__name__)

ENDED = ("completed", "failed", "expired", "cancelled")
_COUNTS = ("total", "completed", "failed")
# A refusal the upstream will repeat: the batch fails rather than being asked again.
_FINAL_STATUSES = (400, 401, 403, 404, 422)


def _endpoint_name(path: str) -> str:
    """The endpoint as usage rows name it: `chat`, `completions`, `embeddings`, …"""
    name = path.removeprefix("/v1/")
    return "chat" if name == "chat/completions" else name


def _renamed(line: dict[str, Any], models: dict[str, str]) -> bytes:
    """An input line for the upstream: its model under the upstream's name."""
    body = line["body"]
    return orjson.dumps({**line, "body": {**body, "model": models[body["model"]]}}) + b"\n"


class NativeJob(BatchJob):
    def __init__(self, row: Row, tools: JobTools, native: NativeBatches) -> None:
        super().__init__(row, tools)
        self._native = native
        self._cancel_sent = False

    async def run(self) -> None:
        tools = self._tools
        self.key = await tools.keys.get(self.row["key_id"])
        provider: str = self.row["upstream"]
        client = self._native.client(provider)
        if client is None:
            await self._fail("upstream_unavailable", f"The provider '{provider}' is gone.")
            return
        status = self.row["status"]
        if status == "validating":
            status = await self._validate()
        upstream_id: str | None = self.row["upstream_batch_id"]
        if upstream_id is None and status == "in_progress":
            upstream_id = await self._forward(client, provider)
        if upstream_id is not None:
            await self._follow(client, upstream_id)
        elif status == "cancelling" and not self.lost:
            await self._finalize("cancelled")

    async def _fail(self, code: str, message: str, errors: Any = None) -> None:
        entry = LineError(code, message).entry(0)
        entry["line"] = None
        values = {
            "status": "failed",
            "failed_at": time.time(),
            "errors": errors or {"object": "list", "data": [entry]},
            "upstream_ingested": True,
            "runner": None,
            "lease_until": None,
        }
        if not await self._tools.store.change(self.id, self._tools.runner, values):
            self.lost = True

    async def _inputs(self) -> list[tuple[int, str, dict[str, Any]]]:
        """The input file's lines: each one's index, custom_id and whole line."""
        found: list[tuple[int, str, dict[str, Any]]] = []
        lines = await self._tools.blobs.lines(self.row["input_file_id"])
        async with contextlib.aclosing(lines):
            index = -1
            async for raw in lines:
                index += 1
                if blank(raw):
                    continue
                custom_id = parse_line(raw, self.row["endpoint"]).custom_id
                found.append((index, custom_id, orjson.loads(raw)))
        return found

    async def _forward(self, client: UpstreamBatches, provider: str) -> str | None:
        """Create the upstream batch; its id, or None (the batch failed, or was lost)."""
        try:
            inputs = await self._inputs()
        except (FileNotFoundError, LineError):
            await self._fail("file_not_found", "The batch's input file is gone.")
            return None
        forward = self._native.forward({line["body"]["model"] for _, _, line in inputs})
        if forward is None or forward.provider != provider:
            message = f"The batch's models no longer all route to the provider '{provider}'."
            await self._fail("upstream_unavailable", message)
            return None
        models = {name: target.model for name, target in forward.targets.items()}
        renamed = b"".join(_renamed(line, models) for _, _, line in inputs)
        try:
            # A process cut between creating the upstream batch and recording it: the
            # upstream batch is found again by the tag it was created with.
            upstream_id = await client.find(self.id)
            if upstream_id is None:
                file_id = await client.upload(renamed, f"{self.id}.jsonl")
                window = self.row["completion_window"]
                answer = await client.create(file_id, self.row["endpoint"], window, self.id)
                upstream_id = answer["id"]
        except GatewayError as exc:
            await self._fail(exc.code or "upstream_error", exc.message)
            return None
        values = {"upstream_batch_id": upstream_id}
        if not await self._tools.store.change(self.id, self._tools.runner, values):
            self.lost = True
            return None
        return upstream_id

    async def _follow(self, client: UpstreamBatches, upstream_id: str) -> None:
        """Poll the upstream batch until it ends, then take in its results. A transient
        failure ends the job: the runner takes the batch up again."""
        finalizing = self.row["status"] == "finalizing"
        while not self.lost:
            if self.cancelling and not self._cancel_sent:
                self._cancel_sent = True
                try:
                    await client.cancel(upstream_id)
                except GatewayError as exc:  # it may have ended meanwhile
                    log.warning("batch %s: the upstream refused the cancel: %s", self.id, exc)
            try:
                upstream = await client.retrieve(upstream_id)
            except ProviderError as exc:
                if exc.upstream_status not in _FINAL_STATUSES:
                    raise
                await self._fail(exc.code or "upstream_error", exc.message)
                return
            status = upstream.get("status")
            if status in ENDED:
                await self._ingest(client, upstream)
                return
            values: dict[str, Any] = self._counts(upstream)
            if status == "finalizing" and not finalizing and not self.cancelling:
                finalizing = True
                values |= {"status": "finalizing", "finalizing_at": time.time()}
            if not await self._tools.store.change(self.id, self._tools.runner, values):
                self.lost = True
                return
            await asyncio.sleep(self._native.poll_seconds)

    @staticmethod
    def _counts(upstream: dict[str, Any]) -> dict[str, Any]:
        counts = upstream.get("request_counts") or {}
        return {name: counts[name] for name in _COUNTS if isinstance(counts.get(name), int)}

    async def _ingest(self, client: UpstreamBatches, upstream: dict[str, Any]) -> None:
        """The upstream batch ended: its files and usage, with the final status, at once."""
        tools = self._tools
        final: str = upstream["status"]
        now = time.time()
        files: dict[str, StoredFile] = {}
        records: list[UsageRecord] = []
        for kind in ("output", "error"):
            upstream_file = upstream.get(f"{kind}_file_id")
            if not upstream_file:
                continue
            file_id = output_file_id(self.id, kind)
            size = await self._take(client, upstream_file, file_id)
            if not size:
                continue
            name = f"{self.id}_{kind}.jsonl"
            files[kind] = StoredFile(file_id, self.row["key_id"], "batch_output", name, size, now)
            if kind == "output":
                records = await self._records(file_id)
        values: dict[str, Any] = {
            **self._counts(upstream),
            **tokens_of(records),
            "status": final,
            f"{final}_at": now,
            **{f"{kind}_file_id": file.id for kind, file in files.items()},
            "upstream_ingested": True,
            "runner": None,
            "lease_until": None,
        }
        if final == "failed":
            values["errors"] = upstream.get("errors") or {"object": "list", "data": []}

        async def write_usage(connection: AsyncConnection) -> None:
            if records:
                await tools.usage.write_in(connection, records)

        if await tools.store.change(
            self.id, tools.runner, values, files=tuple(files.values()), extra=write_usage
        ):
            await self._native.charge(self.row["key_id"], self.id, records)
        else:
            self.lost = True

    async def _take(self, client: UpstreamBatches, upstream_file: str, file_id: str) -> int:
        """Store an upstream file as ours, `file_id`, ending in a newline; its size (0:
        it was empty, and is not stored)."""
        writer = await self._tools.blobs.writer()
        last = b"\n"

        async def write(data: bytes) -> None:
            nonlocal last
            await writer.write(data)
            last = data[-1:]

        try:
            await client.download(upstream_file, write)
            if writer.size and last != b"\n":
                await writer.write(b"\n")
        except BaseException:
            await writer.discard()
            raise
        if not writer.size:
            await writer.discard()
            return 0
        await writer.commit(file_id)
        return writer.size

    async def _records(self, file_id: str) -> list[UsageRecord]:
        """A usage row for each line of the upstream's output file, as stored here."""
        try:
            inputs = {custom_id: (index, line) for index, custom_id, line in await self._inputs()}
        except (FileNotFoundError, LineError):
            inputs = {}
        provider: str = self.row["upstream"]
        records = []
        lines = await self._tools.blobs.lines(file_id)
        async with contextlib.aclosing(lines):
            async for raw in lines:
                if not blank(raw):
                    records += self._record(raw, inputs, provider)
        return records

    def _record(
        self, raw: bytes, inputs: dict[str, tuple[int, dict[str, Any]]], provider: str
    ) -> list[UsageRecord]:
        """The usage row of one output line (none for a line that is not JSON)."""
        try:
            item = orjson.loads(raw)
            custom_id, response = item["custom_id"], item.get("response") or {}
            body = response.get("body") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            log.warning("batch %s: an output line of the upstream is not JSON", self.id)
            return []
        index, line = inputs.get(custom_id, (-1, {}))
        public = str((line.get("body") or {}).get("model") or body.get("model") or "")
        target = self._native.target(provider, public)
        tokens = TokenCounts.from_openai(body.get("usage"))
        priced = self._native.meter.priced(target, public, body.get("model"), tokens, True)
        record = UsageRecord(
            request_id=line_request_id(self.id, index) if index >= 0 else str(item.get("id")),
            key_id=self.row["key_id"],
            endpoint=_endpoint_name(self.row["endpoint"]),
            requested_model=public,
            stream=False,
            model=body.get("model") or target.model,
            provider=target.provider,
            tokens=tokens,
            cost_usd=priced.paid,
            list_cost_usd=priced.listed,
            savings=priced.savings,
            status=int(response.get("status_code") or 200),
            batch_id=self.id,
        )
        record.fit()
        return [record]
