"""Running one batch, from where it stands: validate its input file, answer the lines
not yet done (through the same use cases as live requests), then write its output and
error files and end it, as OpenAI's status machine says:

validating → in_progress → finalizing → completed | expired, validating → failed,
validating | in_progress → cancelling → cancelled.

Every step can be cut (the process killed) and run again by whichever process takes the
batch next: lines done are in the database and are not run again, and the files are
written under ids derived from the batch, so writing them twice writes the same files.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from savegate.core.errors import GatewayError
from savegate.core.keys import ApiKey
from savegate.core.request import BatchLine, RequestContext
from savegate.keys.store import KeyStore
from savegate.metering.record import UsageRecord
from savegate.metering.rows import UsageInsert
from savegate.service.batch_calls import BatchCalls
from savegate.store.batches import BatchStore, Row
from savegate.store.blobs import BlobStore, BlobWriter
from savegate.store.engine import AsyncConnection
from savegate.store.files import StoredFile
from savegate.wire.batch import (
    MAX_ERRORS,
    MAX_LINES,
    LineError,
    answered,
    blank,
    line_request_id,
    parse_line,
    unanswered,
)

log = logging.getLogger(__name__)

EXPIRED = "This request could not be executed before the completion window expired."
_FLUSH_BYTES = 256 * 1024


class LineSlots:
    """The lines in flight in this process, all batches together: at most `concurrency`,
    and none started while live requests number `yield_above` or more (0: never wait)."""

    def __init__(self, concurrency: int, yield_above: int, live: Callable[[], int]) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._yield_above = yield_above
        self._live = live

    async def acquire(self) -> None:
        # The live count is polled: nothing signals it, and a batch line can wait.
        while self._yield_above and self._live() >= self._yield_above:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await self._slots.acquire()

    def release(self) -> None:
        self._slots.release()


@dataclass(frozen=True, slots=True)
class JobTools:
    store: BatchStore
    blobs: BlobStore
    calls: BatchCalls
    keys: KeyStore
    usage: UsageInsert
    slots: LineSlots
    runner: str  # this process, as the lease names it


def tokens_of(records: list[UsageRecord]) -> dict[str, int]:
    return {
        "input_tokens": sum(r.tokens.prompt for r in records),
        "cached_tokens": sum(r.tokens.cached for r in records),
        "output_tokens": sum(r.tokens.completion for r in records),
        "reasoning_tokens": sum(r.tokens.reasoning for r in records),
    }


def output_file_id(batch_id: str, kind: str) -> str:
    return "file-" + hashlib.blake2b(f"{batch_id}:{kind}".encode(), digest_size=12).hexdigest()


class _Lines:
    """JSONL lines into a blob, written in large pieces."""

    def __init__(self, writer: BlobWriter) -> None:
        self.writer = writer
        self.count = 0
        self._pending: list[bytes] = []
        self._size = 0

    async def add(self, line: bytes) -> None:
        self._pending += (line, b"\n")
        self._size += len(line) + 1
        self.count += 1
        if self._size >= _FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        await self.writer.write(b"".join(self._pending))
        self._pending, self._size = [], 0


class BatchJob:
    def __init__(self, row: Row, tools: JobTools) -> None:
        self.row = row
        self._tools = tools
        self.id: str = row["id"]
        self.key: ApiKey | None = None
        self.lost = False  # another process holds the batch now
        self.cancelling = row["status"] == "cancelling"
        self._stop: tuple[str, str] | None = (
            (row["stop_code"], row["stop_message"] or "") if row["stop_code"] else None
        )

    def observe(self, status: str | None, key: ApiKey | None) -> None:
        """What the lease keeper saw: the batch's status (None: the lease is lost) and
        its key as it is now."""
        if status is None:
            self.lost = True
        elif status == "cancelling":
            self.cancelling = True
        self.key = key

    def halt(self, code: str, message: str) -> None:
        """Run no more lines: those left fail with this error."""
        if self._stop is None:
            self._stop = (code, message)

    def _halted(self) -> bool:
        key = self.key
        if key is None or key.revoked:
            self.halt("invalid_api_key", "The batch's API key was revoked.")
        elif self.row["expires_at"] is not None and time.time() >= self.row["expires_at"]:
            self.halt("batch_expired", EXPIRED)
        return self.lost or self.cancelling or self._stop is not None

    async def run(self) -> None:
        self.key = await self._tools.keys.get(self.row["key_id"])
        status = self.row["status"]
        if status == "validating":
            status = await self._validate()
        if status == "in_progress":
            await self._run_lines()
            if self.lost:
                return
            status = "cancelling" if self.cancelling else await self._finalizing()
        if status == "cancelling":
            await self._finalize("cancelled")
        elif status == "finalizing":
            expired = self._stop is not None and self._stop[0] == "batch_expired"
            await self._finalize("expired" if expired else "completed")

    async def _change(self, values: dict[str, Any], expect: str | None = None) -> str:
        """Move the batch on; the status it is in afterwards (a cancel may come first)."""
        tools = self._tools
        if await tools.store.change(self.id, tools.runner, values, expect=expect):
            return str(values.get("status", expect))
        row = await tools.store.load(self.id)
        if row is None or row["runner"] != tools.runner:
            self.lost = True
            return "lost"
        self.cancelling = row["status"] == "cancelling"
        return str(row["status"])

    async def _validate(self) -> str:
        errors: list[dict[str, Any]] = []
        seen: set[str] = set()
        count = 0
        try:
            lines = await self._tools.blobs.lines(self.row["input_file_id"])
        except FileNotFoundError:
            lines = None
            errors.append(LineError("file_not_found", "The input file is gone.").entry(0))
        if lines is not None:
            async with contextlib.aclosing(lines):
                index = 0
                async for raw in lines:
                    index += 1
                    if blank(raw):
                        continue
                    count += 1
                    try:
                        line = parse_line(raw, self.row["endpoint"])
                        if line.custom_id in seen:
                            raise LineError(
                                "duplicate_custom_id",
                                f"The custom_id '{line.custom_id}' is used more than once.",
                                "custom_id",
                            )
                        seen.add(line.custom_id)
                    except LineError as exc:
                        if len(errors) < MAX_ERRORS:
                            errors.append(exc.entry(index))
            if not count:
                errors.append(LineError("empty_file", "The input file has no requests.").entry(0))
            elif count > MAX_LINES:
                message = f"The input file has {count} requests; at most {MAX_LINES} are allowed."
                errors.insert(0, LineError("too_many_tasks", message).entry(0))
        now = time.time()
        if errors:
            for entry in errors:
                entry["line"] = entry["line"] or None
            values = {
                "status": "failed",
                "failed_at": now,
                "errors": {"object": "list", "data": errors},
                "runner": None,
                "lease_until": None,
            }
            return await self._change(values, expect="validating")
        values = {"status": "in_progress", "in_progress_at": now, "total": count}
        return await self._change(values, expect="validating")

    async def _finalizing(self) -> str:
        code, message = self._stop or (None, None)
        values = {
            "status": "finalizing",
            "finalizing_at": time.time(),
            "stop_code": code,
            "stop_message": message,
        }
        return await self._change(values, expect="in_progress")

    async def _run_lines(self) -> None:
        tools = self._tools
        done = await tools.store.done_lines(self.id)
        try:
            lines = await tools.blobs.lines(self.row["input_file_id"])
        except FileNotFoundError:
            self.halt("file_not_found", "The batch's input file was deleted.")
            return
        running: set[asyncio.Task[None]] = set()
        try:
            async with contextlib.aclosing(lines):
                index = -1
                async for raw in lines:
                    index += 1
                    if blank(raw) or index in done:
                        continue
                    if self._halted():
                        break
                    await tools.slots.acquire()
                    if self._halted():
                        tools.slots.release()
                        break
                    task = asyncio.create_task(self._line(index, raw))
                    running.add(task)
                    task.add_done_callback(running.discard)
            if running:
                await asyncio.gather(*running)
        finally:
            for task in running:
                task.cancel()

    async def _line(self, index: int, raw: bytes) -> None:
        tools = self._tools
        try:
            line = parse_line(raw, self.row["endpoint"])
            request_id = line_request_id(self.id, index)
            held = BatchLine(self.id)
            assert self.key is not None
            context = RequestContext(request_id, self.key, batch=held)
            try:
                answer = await tools.calls.call(self.row["endpoint"], line.body, context)
                status, ok = 200, True
                body = answer.raw if b"\n" not in answer.raw else orjson.dumps(answer.data)
            except GatewayError as exc:
                status, ok, body = exc.status, False, orjson.dumps(exc.body())
                if exc.code == "insufficient_quota":
                    self.halt("insufficient_quota", exc.message)
            except Exception:
                log.exception("batch %s: line %d failed", self.id, index + 1)
                error = GatewayError("The server had an error processing your request.")
                status, ok, body = error.status, False, orjson.dumps(error.body())
            records: list[UsageRecord] = held.records

            async def write_usage(connection: AsyncConnection) -> None:
                if records:
                    await tools.usage.write_in(connection, records)

            await tools.store.finish_line(
                self.id,
                tools.runner,
                index,
                ok,
                answered(request_id, line.custom_id, status, body).decode(),
                tokens_of(records),
                write_usage,
            )
        except Exception:
            log.exception("batch %s: could not record line %d", self.id, index + 1)
        finally:
            tools.slots.release()

    async def _finalize(self, final: str) -> None:
        tools = self._tools
        output = _Lines(await tools.blobs.writer())
        errors = _Lines(await tools.blobs.writer())
        files: list[StoredFile] = []
        try:
            await self._write_results(output, errors, omit_rest=final == "cancelled")
            now = time.time()
            for kind, lines in (("output", output), ("error", errors)):
                if lines.count:
                    await lines.flush()
                    file_id = output_file_id(self.id, kind)
                    await lines.writer.commit(file_id)
                    name = f"{self.id}_{kind}.jsonl"
                    files.append(
                        StoredFile(
                            file_id,
                            self.row["key_id"],
                            "batch_output",
                            name,
                            lines.writer.size,
                            now,
                        )
                    )
        finally:
            written = {file.id for file in files}
            for kind, lines in (("output", output), ("error", errors)):
                if output_file_id(self.id, kind) not in written:
                    await lines.writer.discard()
        values = {
            "status": final,
            f"{final}_at": now,
            "output_file_id": output_file_id(self.id, "output") if output.count else None,
            "error_file_id": output_file_id(self.id, "error") if errors.count else None,
            "completed": output.count,
            "failed": errors.count,
            "runner": None,
            "lease_until": None,
        }
        await tools.store.change(self.id, tools.runner, values, files=tuple(files))

    async def _write_results(self, output: _Lines, errors: _Lines, omit_rest: bool) -> None:
        """Every line done, in input order, and (unless `omit_rest`) an error for each
        line the batch stopped before."""
        tools = self._tools
        results = tools.store.results(self.id)

        async def emit(result: tuple[int, bool, str]) -> None:
            _, ok, text = result
            await (output if ok else errors).add(text.encode())

        async with contextlib.aclosing(results):
            done = await anext(results, None)
            try:
                lines = await tools.blobs.lines(self.row["input_file_id"])
            except FileNotFoundError:
                lines = None
            if lines is not None:
                async with contextlib.aclosing(lines):
                    index = -1
                    async for raw in lines:
                        index += 1
                        if blank(raw):
                            continue
                        if done is not None and done[0] == index:
                            await emit(done)
                            done = await anext(results, None)
                        elif self._stop is not None and not omit_rest:
                            await errors.add(self._unanswered(index, raw))
            while done is not None:  # the input file is gone: what was done, still
                await emit(done)
                done = await anext(results, None)

    def _unanswered(self, index: int, raw: bytes) -> bytes:
        assert self._stop is not None
        try:
            custom_id = parse_line(raw, self.row["endpoint"]).custom_id
        except LineError:
            custom_id = ""
        code, message = self._stop
        return unanswered(line_request_id(self.id, index), custom_id, code, message)
