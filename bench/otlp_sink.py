"""A local OTLP/HTTP receiver for the benchmark: answers every export with 200 at once
and counts what it got. `python -m bench.otlp_sink PORT`; `GET /` returns the counts."""

from __future__ import annotations

import asyncio
import json
import sys

COUNTS = {"exports": 0, "bytes": 0}


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            body = b""
            if head.startswith(b"GET"):
                body = json.dumps(COUNTS).encode()
            else:
                COUNTS["exports"] += 1
                COUNTS["bytes"] += length
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
