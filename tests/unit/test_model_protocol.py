"""The model socket's wire, without a model: framing, errors, long socket paths."""

from __future__ import annotations

import asyncio
from pathlib import Path

from savegate.core.errors import ContextLengthExceeded, GatewayError, InvalidRequest, ProviderError
from savegate.providers.local.protocol import Connection, address, error_from, error_message


def test_messages_cross_a_socket_whole_even_in_a_deep_directory(tmp_path: Path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / "local-model.sock"
    assert len(str(path)) > 108 and len(address(path)) < 100
    big = {"chunks": [{"text": "x" * 300_000}], "n": 1}

    async def scenario() -> list[object]:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connection = Connection(reader, writer)
            while (message := await connection.receive()) is not None:
                await connection.send({**message, "peer": connection.peer_pid > 0})
            connection.close()

        server = await asyncio.start_unix_server(echo, address(path))
        connection = await Connection.open(path)
        await connection.send(big)
        first = await connection.receive()
        await connection.send({"op": "cancel"})
        second = await connection.receive()
        connection.close()
        server.close()
        return [first, second]

    assert asyncio.run(scenario()) == [{**big, "peer": True}, {"op": "cancel", "peer": True}]


def test_errors_come_back_as_the_same_gateway_errors():
    sent: list[GatewayError] = [
        ContextLengthExceeded("too long", param="messages"),
        InvalidRequest("bad tool", param="tool_choice"),
        ProviderError("down", status=503, code="x", retryable=True),
        GatewayError("boom"),
    ]
    for error in sent:
        back = error_from(error_message(error)["error"])
        assert type(back) is type(error)
        assert back.body() == error.body() and back.status == error.status
    provider_error = error_from(error_message(sent[2])["error"])
    assert isinstance(provider_error, ProviderError) and provider_error.retryable
