"""One embedded model process per data directory, shared by every worker: its fair queue
serves them all, a worker's death leaves it serving, its own death is a clear 503 (or
the in-stream error) and it is started again, a client that leaves stops its work, and
with providers configured it starts only when its model is asked for."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Service, alive, model_pid, start_gateway, stop, stop_model

COUNTING = [{"role": "user", "content": "Count from 1 to 500, separated by commas."}]
HELLO = [{"role": "user", "content": "hello"}]
MODEL = "SmolLM2-135M-Instruct"


def status(data_dir: Path) -> dict[str, Any]:
    """Ask the model process how it is (its socket's `status` call)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(data_dir / "local-model.sock"))
        payload = json.dumps({"op": "status"}).encode()
        sock.sendall(struct.pack(">I", len(payload)) + payload)
        size = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))[0]
        return dict(json.loads(sock.recv(size, socket.MSG_WAITALL)))


def workers(service: Service) -> dict[int, int]:
    """Worker number → pid, as the supervisor last logged them."""
    found = re.findall(r"worker (\d+) started \(pid (\d+)\)", service.output())
    return {int(number): int(pid) for number, pid in found}


def wait_for(condition: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def watched_by_all_workers(service: Service, data_dir: Path) -> bool:
    try:
        peers = set(status(data_dir)["peers"])
    except OSError:
        return False
    pids = workers(service)
    return len(pids) == 2 and set(pids.values()) <= peers


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Path]]:
    """Two workers, no providers: the model process starts with them."""
    workdir = tmp_path_factory.mktemp("model-process")
    service = start_gateway(workdir, {"server": {"workers": 2}})
    data_dir = workdir / "data"
    try:
        wait_for(lambda: watched_by_all_workers(service, data_dir))
        yield service, data_dir
    finally:
        stop(service.process)
        ended_by_itself = stop_model(data_dir)
    assert ended_by_itself  # it outlives its last gateway by a few seconds only


def client(service: Service, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(api_key=key or service.key, base_url=service.base_url, max_retries=0)


def test_two_workers_share_one_model_process_and_its_fair_queue(shared):
    service, data_dir = shared
    pid = status(data_dir)["pid"]
    assert pid == model_pid(data_dir)
    servers = [
        proc
        for proc in Path("/proc").iterdir()
        if proc.name.isdigit()
        and str(data_dir / "local-model.sock").encode() in _cmdline(proc)
        and alive(int(proc.name))
    ]
    assert [int(proc.name) for proc in servers] == [pid]
    # One key queues four answers (through either worker), then another key one: the
    # model process's queue lets the second key in next, not last.
    finished: list[str] = []
    clients = {"a": client(service), "b": client(service, service.keys["admin"])}

    def ask(label: str, max_tokens: int) -> None:
        clients[label[0]].chat.completions.create(
            model="any", messages=COUNTING, max_tokens=max_tokens, temperature=0
        )
        finished.append(label)

    busy = [threading.Thread(target=ask, args=(f"a{i}", 64)) for i in range(4)]
    for thread in busy:
        thread.start()
    time.sleep(0.5)  # all four are queued and the first is still running
    quiet = threading.Thread(target=ask, args=("b", 8))
    quiet.start()
    for thread in [*busy, quiet]:
        thread.join(timeout=120)
    assert sorted(finished) == ["a0", "a1", "a2", "a3", "b"]
    assert finished.index("b") <= 2
    assert status(data_dir)["pid"] == pid


def test_a_client_leaving_mid_stream_stops_the_generation(shared):
    service, data_dir = shared
    stream = client(service).chat.completions.create(
        model="any", messages=COUNTING, max_tokens=400, temperature=0, stream=True
    )
    for seen, _ in enumerate(stream):
        if seen == 5:
            break
    stream.close()
    left = time.monotonic()
    before = status(data_dir)["tokens_generated"]
    last_change, count = left, before
    while time.monotonic() - last_change < 1.0:
        now = status(data_dir)["tokens_generated"]
        if now != count:
            last_change, count = time.monotonic(), now
        time.sleep(0.02)
    # It stopped within a token or two of the client leaving, not 400 tokens later.
    assert count - before <= 5
    assert last_change - left < 0.5


def test_killing_a_worker_leaves_the_model_process_serving(shared):
    service, data_dir = shared
    pid = status(data_dir)["pid"]
    first = workers(service)
    os.kill(first[1], signal.SIGKILL)
    wait_for(lambda: workers(service).get(1) != first[1])
    for _ in range(4):
        answer = client(service).chat.completions.create(model="any", messages=HELLO, max_tokens=4)
        assert answer.model == MODEL
    assert status(data_dir)["pid"] == pid
    wait_for(lambda: watched_by_all_workers(service, data_dir))  # the new worker too


def test_killing_the_model_process_is_a_503_then_it_is_started_again(shared):
    service, data_dir = shared
    pid = status(data_dir)["pid"]
    stream = client(service).chat.completions.create(
        model="any", messages=COUNTING, max_tokens=400, temperature=0, stream=True
    )
    chunks = iter(stream)
    next(chunks)
    failures: list[Exception] = []

    def waiting() -> None:
        try:
            client(service).chat.completions.create(model="any", messages=COUNTING, max_tokens=400)
        except openai.APIStatusError as exc:
            failures.append(exc)

    thread = threading.Thread(target=waiting)
    thread.start()
    time.sleep(0.5)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(openai.APIError) as in_stream:
        for _ in chunks:
            pass
    assert MODEL in in_stream.value.message and "unavailable" in in_stream.value.message
    thread.join(timeout=60)
    assert len(failures) == 1 and isinstance(failures[0], openai.APIStatusError)
    assert failures[0].status_code == 503 and MODEL in failures[0].message
    # Started again at once, by a worker; answers as before.
    answer = client(service).chat.completions.create(model="any", messages=HELLO, max_tokens=4)
    assert answer.model == MODEL and answer.choices[0].message.content
    assert status(data_dir)["pid"] not in (pid, None)
    assert not alive(pid)


def test_with_providers_it_starts_on_its_first_request(tmp_path, fake_upstream: Service):
    config = {
        "server": {"workers": 2},
        "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["text-*"]}},
    }
    service = start_gateway(tmp_path, config)
    data_dir = tmp_path / "data"
    try:
        wait_for(lambda: len(workers(service)) == 2)
        sdk = client(service)
        assert sdk.chat.completions.create(model="text-basic", messages=HELLO).choices
        assert model_pid(data_dir) is None
        for pid in workers(service).values():  # llama.cpp is not even loaded
            assert b"llama" not in Path(f"/proc/{pid}/maps").read_bytes()
        answer = sdk.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4)
        assert answer.model == MODEL
        assert model_pid(data_dir) == status(data_dir)["pid"]
    finally:
        stop(service.process)
        stop_model(data_dir)


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""
