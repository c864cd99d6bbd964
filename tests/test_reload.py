"""Live reload: SIGHUP (to the supervisor, which tells every worker) and `POST
/admin/reload` (whichever worker gets it, every worker reloads) apply a changed config
file to new requests. Streams in flight finish on the provider they started on, even
one the new file removed; nothing fails meanwhile; an invalid file changes nothing."""

from __future__ import annotations

import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import yaml

from tests.conftest import Service, start_gateway, stop

MESSAGES = [{"role": "user", "content": "hello"}]


def _config(upstream: Service, providers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "local": {"enabled": False},
        "server": {"workers": 2},
        "providers": {
            name: {"base_url": upstream.base_url, "models": models}
            for name, models in providers.items()
        },
        **extra,
    }


def _write(service: Service, config: dict[str, Any] | str) -> None:
    path = service.log.with_suffix(".yaml")  # the file start_gateway gave `--config`
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))


def _wait_for_log(service: Service, pattern: str, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(re.findall(pattern, service.output())) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} times {pattern!r} not logged:\n{service.output()}")


def test_sighup_reloads_every_worker_under_streaming_load(tmp_path, fake_upstream: Service):
    old = _config(fake_upstream, {"old": ["ticks-*", "text-basic"]})
    service = start_gateway(tmp_path, old)
    key = service.key
    headers = {"Authorization": f"Bearer {key}"}
    url = service.base_url + "/chat/completions"
    streams: list[bytes] = []
    failures: list[str] = []
    started = threading.Barrier(7, timeout=30)
    stop_asking = threading.Event()
    answered = [0]

    def stream() -> None:
        body = {"model": "ticks-60", "messages": MESSAGES, "stream": True}  # 3 s each
        with httpx.stream("POST", url, json=body, headers=headers, timeout=60) as response:
            chunks = response.iter_bytes()
            first = next(chunks)
            started.wait()
            streams.append(first + b"".join(chunks))

    def ask() -> None:
        client = openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0)
        while not stop_asking.is_set():
            try:
                client.chat.completions.create(model="text-basic", messages=MESSAGES)
                answered[0] += 1
            except openai.OpenAIError as exc:
                failures.append(repr(exc))

    streamers = [threading.Thread(target=stream) for _ in range(6)]
    asker = threading.Thread(target=ask)
    try:
        for thread in streamers:
            thread.start()
        asker.start()
        started.wait()  # six streams on the old provider, in flight
        new = _config(
            fake_upstream, {"new": ["text-basic", {"name": "fresh", "upstream": "text-basic"}]}
        )
        _write(service, {**new, "aliases": {"newest": "fresh"}})
        service.process.send_signal(signal.SIGHUP)
        _wait_for_log(service, r"\[worker \d\] savegate.ops.reload: config reloaded: ", 2)
        for thread in streamers:
            thread.join(timeout=60)
        before = answered[0]
        while answered[0] < before + 20:  # asked on while the reload settles
            time.sleep(0.05)
        # The new route serves, on every connection.
        for _ in range(10):
            client = openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0)
            for model in ("fresh", "newest"):
                answer = client.chat.completions.create(model=model, messages=MESSAGES)
                assert answer.choices[0].message.content
            with openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0) as other:
                try:
                    other.chat.completions.create(model="ticks-2", messages=MESSAGES)
                    raise AssertionError("the removed route still serves")
                except openai.NotFoundError:
                    pass
        models = httpx.get(service.base_url + "/models", headers=headers).json()["data"]
        assert {m["id"] for m in models} >= {"fresh", "newest"}
        # The old provider's transport was closed, once its streams had ended.
        _wait_for_log(service, r"1 old provider transport\(s\) closed", 2)

        # An invalid file: refused, logged, and the running config stays.
        _write(service, {**new, "routing": {"max_attempts": 0}})
        service.process.send_signal(signal.SIGHUP)
        _wait_for_log(service, r"config reload refused", 3)  # the supervisor and each worker
        assert service.output().count("routing.max_attempts: must be ≥ 1") == 3
        _write(service, "providers: [unclosed\n")
        service.process.send_signal(signal.SIGHUP)
        _wait_for_log(service, r"config reload refused", 6)
        assert service.output().count("is not valid YAML") == 3
        for model in ("fresh", "newest", "text-basic"):
            answer = openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0)
            assert answer.chat.completions.create(model=model, messages=MESSAGES).choices
    finally:
        stop_asking.set()
        asker.join(timeout=30)
        stop(service.process)
    assert failures == []
    assert answered[0] > 20
    assert len(streams) == 6
    assert all(s.endswith(b"data: [DONE]\n\n") and s.count(b"tick") == 60 for s in streams)


def _served_by(service: Service, request_id: str) -> int:
    """The worker whose access line has the request id."""
    found = re.search(
        rf"\[worker (\d)\] savegate.access: .*request_id={request_id}", service.output()
    )
    return int(found.group(1)) if found else 0


def test_admin_reload_changes_every_worker(tmp_path, fake_upstream: Service):
    before = _config(fake_upstream, {"fake": ["text-*"]})
    service = start_gateway(tmp_path, before)
    admin = {"Authorization": f"Bearer {service.keys['admin']}"}
    key = service.key
    try:
        user = httpx.post(service.url + "/admin/reload", headers={"Authorization": f"Bearer {key}"})
        assert user.status_code == 403
        client = openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0)
        try:
            client.chat.completions.create(model="chat-model", messages=MESSAGES)
            raise AssertionError("the alias serves before it is configured")
        except openai.NotFoundError:
            pass
        after = {
            **before,
            "aliases": {"chat-model": "text-basic"},
            "keys_refresh_seconds": 1.0,  # only a restart applies this
        }
        _write(service, after)
        done = httpx.post(service.url + "/admin/reload", headers=admin)
        assert done.status_code == 200, done.text
        answer = done.json()
        assert answer["applied"] == ["aliases"]
        assert answer["restart_required"] == ["keys_refresh_seconds"]
        _wait_for_log(service, r"\[worker \d\] savegate.ops.reload: config reloaded: aliases", 2)

        def one(_: int) -> int:
            with openai.OpenAI(api_key=key, base_url=service.base_url, max_retries=0) as fresh:
                raw = fresh.chat.completions.with_raw_response.create(
                    model="chat-model", messages=MESSAGES
                )
            assert raw.parse().choices[0].message.content
            return _served_by_later(service, raw.headers["x-request-id"])

        workers: set[int] = set()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(20):  # concurrent fresh connections until both workers answered
                workers |= set(pool.map(one, range(8)))
                if workers >= {1, 2}:
                    break
        assert workers == {1, 2}

        # An invalid file: 422 naming the problem, and every worker keeps what it runs.
        _write(service, {**after, "models": {"g": {"deployments": [{"provider": "gone"}]}}})
        refused = httpx.post(service.url + "/admin/reload", headers=admin)
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "invalid_config"
        assert "models.g.deployments[0].provider: unknown provider 'gone'" in error["message"]
        assert client.chat.completions.create(model="chat-model", messages=MESSAGES).choices
    finally:
        stop(service.process)


def _served_by_later(service: Service, request_id: str) -> int:
    """Access lines are written a moment after the answer."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        worker = _served_by(service, request_id)
        if worker:
            return worker
        time.sleep(0.05)
    raise AssertionError(f"no access line for {request_id}")


def test_a_lone_process_reloads_on_sighup(tmp_path, fake_upstream: Service):
    config = _config(fake_upstream, {"fake": ["text-*"]})
    config["server"] = {"workers": 1}
    service = start_gateway(tmp_path, config)
    try:
        _write(service, {**config, "aliases": {"lone": "text-basic"}})
        service.process.send_signal(signal.SIGHUP)
        _wait_for_log(service, r"config reloaded: aliases applied", 1)
        client = openai.OpenAI(api_key=service.key, base_url=service.base_url, max_retries=0)
        assert client.chat.completions.create(model="lone", messages=MESSAGES).choices
        assert service.process.poll() is None
    finally:
        stop(service.process)
