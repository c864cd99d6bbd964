"""API keys: bearer auth, hashed storage, the CLI, and revocation."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import time

import httpx
import openai
import pytest

from tests.conftest import Service, start_gateway, stop

MESSAGES = [{"role": "user", "content": "hello"}]


def cli(service_dir, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "savegate", "keys", *args, "--data-dir", str(service_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def keyed(tmp_path, fake_upstream: Service):
    config = {
        "local": {"enabled": False},
        "providers": {"fake": {"base_url": fake_upstream.base_url, "models": ["*"]}},
    }
    service = start_gateway(tmp_path, config)
    yield service, tmp_path / "data"
    stop(service.process)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer sk-wrong",
        "Basic c2stc2F2ZWdhdGU=",
        "Bearer sk-savegate-" + "A" * 32,
        "Bearer sk-savegate-" + "A" * 31 + "!",
    ],
)
def test_missing_or_bad_key_gets_401(relay_gateway: Service, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.post(
        relay_gateway.base_url + "/chat/completions",
        json={"model": "text-basic", "messages": MESSAGES},
        headers=headers,
    )
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"


def test_sdk_raises_authentication_error(relay_gateway: Service):
    client = openai.OpenAI(api_key="sk-savegate-" + "b" * 32, base_url=relay_gateway.base_url)
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_first_start_prints_two_keys_once(keyed):
    service, _ = keyed
    assert set(service.keys) == {"admin", "default"}
    assert service.output().count(service.keys["default"]) == 1


def test_secrets_are_stored_hashed_and_never_logged(keyed):
    service, data_dir = keyed
    client = openai.OpenAI(api_key=service.key, base_url=service.base_url)
    client.chat.completions.create(model="text-basic", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="sk-savegate-" + "Z" * 32, base_url=service.base_url).models.list()
    rows = sqlite3.connect(data_dir / "savegate.db").execute("SELECT * FROM api_keys").fetchall()
    dump = repr(rows)
    for secret in service.keys.values():
        assert secret not in dump
        assert secret[len("sk-savegate-") :] not in dump
    for path in data_dir.iterdir():
        assert service.key.encode() not in path.read_bytes()
    # The banner shows each secret once at first start; nothing logs it afterwards.
    assert service.output().count(service.key) == 1
    assert "Z" * 32 not in service.output()


def test_cli_creates_lists_and_revokes_keys(keyed):
    service, data_dir = keyed
    created = cli(data_dir, "create", "--name", "ci-app")
    secret = created.strip().splitlines()[-1]
    key_id = re.search(r"key_[0-9a-f]+", created).group()
    assert secret.startswith("sk-savegate-") and len(secret) == 44
    client = openai.OpenAI(api_key=secret, base_url=service.base_url, max_retries=0)
    assert client.chat.completions.create(model="text-basic", messages=MESSAGES).choices
    listing = cli(data_dir, "list")
    assert "ci-app" in listing and key_id in listing and secret not in listing
    assert secret[-4:] in listing
    cli(data_dir, "revoke", key_id)
    deadline = time.monotonic() + 2
    while True:
        try:
            client.chat.completions.create(model="text-basic", messages=MESSAGES)
        except openai.AuthenticationError as exc:
            assert exc.code == "invalid_api_key"
            break
        assert time.monotonic() < deadline, "revoked key still accepted after 2 s"
        time.sleep(0.05)
    assert "revoked" in cli(data_dir, "list")


def test_revoking_an_unknown_key_fails_cleanly(keyed):
    _, data_dir = keyed
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "savegate",
            "keys",
            "revoke",
            "key_nope",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no active key" in result.stdout
