"""Our HTTP/1.1 server protocol (`api/protocol.py`) on raw sockets, where clients are
strange: pipelined requests, `Expect: 100-continue`, chunked request bodies, HTTP/1.0,
garbage, a body over the limit, and connections left idle."""

from __future__ import annotations

import json
import socket
import time

from tests.conftest import Service

MESSAGES = [{"role": "user", "content": "hello"}]


def _chat(port: int, key: str, extra: str = "", body: bytes | None = None) -> bytes:
    payload = (
        body
        if body is not None
        else json.dumps({"model": "text-basic", "messages": MESSAGES}).encode()
    )
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n{extra}\r\n"
    )
    return head.encode() + payload


def _responses(conn: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """`count` responses with a content-length, as (head, body), read off `conn`."""
    data = b""
    answers: list[tuple[bytes, bytes]] = []
    while len(answers) < count:
        head, found, rest = data.partition(b"\r\n\r\n")
        if found:
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(rest) >= length:
                answers.append((head, rest[:length]))
                data = rest[length:]
                continue
        chunk = conn.recv(65536)
        assert chunk, f"closed after {len(answers)} responses: {data!r}"
        data += chunk
    return answers


def _closed(conn: socket.socket, within: float) -> bool:
    conn.settimeout(within)
    try:
        while conn.recv(65536):
            pass
    except TimeoutError:
        return False
    return True


def test_pipelined_requests_are_answered_in_order(relay_gateway: Service) -> None:
    port, key = relay_gateway.port, relay_gateway.key
    bodies = [
        json.dumps({"model": "text-basic", "messages": MESSAGES, "user": str(i)}).encode()
        for i in range(3)
    ]
    health = f"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"".join(_chat(port, key, body=b) for b in bodies) + health)
        answers = _responses(conn, 4)
    for head, body in answers[:3]:
        assert head.startswith(b"HTTP/1.1 200"), head
        assert json.loads(body)["object"] == "chat.completion"
    assert json.loads(answers[3][1]) == {"status": "ok"}
    ids = [line for head, _ in answers for line in head.split(b"\r\n") if b"x-request-id" in line]
    assert len(set(ids)) == 4


def test_expect_100_continue_is_answered_before_the_body(relay_gateway: Service) -> None:
    port, key = relay_gateway.port, relay_gateway.key
    request = _chat(port, key, extra="Expect: 100-continue\r\n")
    head, _, body = request.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head + b"\r\n\r\n")
        assert conn.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        conn.sendall(body)
        ((answer_head, answer),) = _responses(conn, 1)
    assert answer_head.startswith(b"HTTP/1.1 200") and json.loads(answer)["choices"]


def test_a_chunked_request_body_is_read_whole(relay_gateway: Service) -> None:
    port, key = relay_gateway.port, relay_gateway.key
    payload = json.dumps({"model": "text-basic", "messages": MESSAGES}).encode()
    parts = [payload[:10], payload[10:]]
    chunked = b"".join(b"%x\r\n%b\r\n" % (len(part), part) for part in parts) + b"0\r\n\r\n"
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {key}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head + chunked[:7])
        time.sleep(0.2)  # the body arrives after the request has begun to be served
        conn.sendall(chunked[7:])
        ((answer_head, answer),) = _responses(conn, 1)
    assert answer_head.startswith(b"HTTP/1.1 200"), answer
    assert json.loads(answer)["object"] == "chat.completion"


def test_http_1_0_gets_its_answer_and_the_connection_closes(relay_gateway: Service) -> None:
    port = relay_gateway.port
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(b"GET /health/live HTTP/1.0\r\n\r\n")
        ((head, body),) = _responses(conn, 1)
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
        assert json.loads(body) == {"status": "ok"}
        assert _closed(conn, within=5)


def test_garbage_gets_400_and_the_connection_closes(relay_gateway: Service) -> None:
    with socket.create_connection(("127.0.0.1", relay_gateway.port), timeout=30) as conn:
        conn.sendall(b"\x16\x03\x01 NOT HTTP\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and body == b"Invalid HTTP request received."
    assert b"content-length: %d" % len(body) in head


def test_a_body_over_the_limit_is_refused_and_the_connection_serves_on(
    relay_gateway: Service,
) -> None:
    """413 as soon as the declared length is over the limit, before the body is read; the
    body that still arrives is read and let go, and the next request is served."""
    port, key = relay_gateway.port, relay_gateway.key
    big = b"x" * (2 * 1024 * 1024)  # relay_gateway's limit is 1 MiB
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(_chat(port, key, body=big) + _chat(port, key))
        (refused, _), (served, answer) = _responses(conn, 2)
    assert refused.startswith(b"HTTP/1.1 413"), refused
    assert served.startswith(b"HTTP/1.1 200") and json.loads(answer)["choices"]


def test_idle_connections_are_closed_after_the_keep_alive_time(relay_gateway: Service) -> None:
    """Five seconds (uvicorn's default keep-alive) after the last answer, or after
    connecting without sending anything; a connection in use stays open."""
    port = relay_gateway.port
    probe = f"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as used,
        socket.create_connection(("127.0.0.1", port), timeout=30) as silent,
        socket.create_connection(("127.0.0.1", port), timeout=30) as busy,
    ):
        used.sendall(probe)
        _responses(used, 1)
        for _ in range(7):  # one request a second: never idle for five
            busy.sendall(probe)
            _responses(busy, 1)
            time.sleep(1)
        assert _closed(used, within=1) and _closed(silent, within=1)
        busy.sendall(probe)
        assert _responses(busy, 1)[0][0].startswith(b"HTTP/1.1 200")
