"""Usage metering, prices, budgets, quotas, key limits and the admin API, on SQLite and
on the real PostgreSQL of this machine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest

from tests.conftest import Service, start_gateway, stop
from tests.stores import database, query

MESSAGES = [{"role": "user", "content": "hello"}]
# text-basic always reports 14 prompt and 30 completion tokens.
PRICE = {"input": 1.0, "output": 2.0, "cached_input": 0.5}
LIST_COST = (14 * 1.0 + 30 * 2.0) / 1e6
PAID_COST = LIST_COST * 0.75


class Metered:
    def __init__(self, service: Service, url: str, fake: Service) -> None:
        self.service, self.url, self.fake = service, url, fake

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.service.keys['admin']}"}
        return httpx.request(method, self.service.url + path, headers=headers, timeout=30, **kwargs)

    def new_key(self, **settings) -> tuple[str, str]:
        response = self.admin("POST", "/admin/keys", json={"name": "test", **settings})
        assert response.status_code == 201, response.text
        return response.json()["id"], response.json()["secret"]

    def client(self, secret: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=secret or self.service.key, base_url=self.service.base_url, max_retries=0
        )

    def rows(self, key_id: str) -> list[dict]:
        response = self.admin("GET", "/admin/usage/requests", params={"key_id": key_id})
        return response.json()["data"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def metered(request, tmp_path_factory, fake_upstream: Service) -> Iterator[Metered]:
    workdir = tmp_path_factory.mktemp(f"metered-{request.param}")
    with database(request.param, workdir) as url:
        config = {
            "database_url": url,
            "local": {"enabled": False},
            "usage": {"flush_seconds": 0.1},
            "prices": {"text-basic": PRICE},
            "alerts": {"webhook_url": fake_upstream.url + "/_webhook"},
            "providers": {
                "fake": {
                    "base_url": fake_upstream.base_url,
                    "discount": 0.25,
                    "models": [
                        "text-basic",
                        "tool-call-single",
                        # Deployment names with no price of their own (as on Azure).
                        {"name": "gpt-4o", "upstream": "tool-call-single"},
                        {"name": "house-model", "upstream": "tool-call-single"},
                        "*",
                    ],
                }
            },
        }
        service = start_gateway(workdir, config)
        yield Metered(service, url, fake_upstream)
        stop(service.process)


def test_non_stream_is_metered_and_priced(metered: Metered):
    key_id, secret = metered.new_key()
    metered.client(secret).chat.completions.create(model="text-basic", messages=MESSAGES)
    (row,) = metered.rows(key_id)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (14, 30)
    assert row["cost_usd"] == pytest.approx(PAID_COST)
    assert row["list_cost_usd"] == pytest.approx(LIST_COST)
    assert row["provider"] == "fake" and row["requested_model"] == "text-basic"
    assert row["model"] == "gpt-4o-2024-08-06"
    assert row["status"] == 200 and not row["stream"] and not row["estimated"]
    assert row["latency_ms"] > 0


@pytest.mark.parametrize("model", ["text-basic", "text-basic@whole", "text-basic@split-97"])
def test_stream_is_metered_exactly_without_showing_usage(metered: Metered, model: str):
    """Also when the usage chunk arrives in one read with the rest, or cut across reads."""
    key_id, secret = metered.new_key()
    chunks = list(
        metered.client(secret).chat.completions.create(model=model, messages=MESSAGES, stream=True)
    )
    assert all(chunk.choices for chunk in chunks)  # the usage chunk was stripped
    sent = httpx.get(metered.fake.url + "/_log").json()["requests"][-1]["body"]
    assert sent["stream_options"] == {"include_usage": True}
    (row,) = metered.rows(key_id)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (14, 30)
    assert row["stream"] and row["ttft_ms"] is not None and not row["estimated"]


def test_usage_option_is_spliced_into_the_clients_bytes(metered: Metered):
    """A long conversation is not serialised again just to ask for usage."""
    _, secret = metered.new_key()
    raw = (
        '{ "model": "text-basic",\n  "messages": [{"role": "user", "content": "caf\\u00e9"}],'
        ' "stream": true }'
    )
    response = httpx.post(
        metered.service.base_url + "/chat/completions",
        content=raw.encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
    sent = httpx.get(metered.fake.url + "/_log").json()["requests"][-1]["raw"]
    assert sent == '{"stream_options":{"include_usage":true},' + raw[1:]


def test_cancelled_stream_is_billed_for_what_was_sent(metered: Metered):
    key_id, secret = metered.new_key()
    stream = metered.client(secret).chat.completions.create(
        model="slow", messages=MESSAGES, stream=True
    )
    for index, _ in enumerate(stream):
        if index == 10:
            break
    stream.close()
    deadline = time.monotonic() + 10
    while not (rows := metered.rows(key_id)) and time.monotonic() < deadline:
        time.sleep(0.1)
    (row,) = rows
    assert row["client_disconnected"] and row["estimated"]
    assert row["completion_tokens"] >= 10 and row["status"] == 499


@pytest.mark.parametrize(
    ("model", "status"), [("error-after-3", 502), ("status-500", 500), ("drop-after-3", 502)]
)
def test_failed_requests_are_recorded_as_failed(metered: Metered, model: str, status: int):
    key_id, secret = metered.new_key()
    with pytest.raises(openai.APIError):
        for _ in metered.client(secret).chat.completions.create(
            model=model, messages=MESSAGES, stream=True
        ):
            pass
    rows = metered.rows(key_id)
    assert len(rows) == 1, rows
    (row,) = rows
    assert row["status"] == status and row["error_type"]


def test_hard_budget_holds_under_200_concurrent_requests(metered: Metered):
    budget = PAID_COST * 20.5
    key_id, secret = metered.new_key(monthly_budget_usd=budget)

    async def fire() -> list[int]:
        async with httpx.AsyncClient(
            base_url=metered.service.base_url, timeout=60, limits=httpx.Limits(max_connections=200)
        ) as client:

            async def one() -> int:
                response = await client.post(
                    "/chat/completions",
                    headers={"Authorization": f"Bearer {secret}"},
                    json={"model": "text-basic", "messages": MESSAGES, "max_tokens": 30},
                )
                if response.status_code == 429:
                    assert response.json()["error"]["code"] == "insufficient_quota"
                return response.status_code

            return await asyncio.gather(*(one() for _ in range(200)))

    statuses = asyncio.run(fire())
    assert set(statuses) <= {200, 429}
    assert statuses.count(429) > 0
    spend = metered.admin("GET", "/admin/spend", params={"key_id": key_id}).json()
    assert spend["cost_usd"] <= budget + 1e-12  # documented bound: no overspend at all
    assert spend["requests"] == statuses.count(200)
    # Once in-flight reservations are settled the rest of the budget is usable again.
    statuses_after = [
        httpx.post(
            metered.service.base_url + "/chat/completions",
            headers={"Authorization": f"Bearer {secret}"},
            json={"model": "text-basic", "messages": MESSAGES, "max_tokens": 1},
        ).status_code
        for _ in range(25)
    ]
    final = metered.admin("GET", "/admin/spend", params={"key_id": key_id}).json()
    assert final["cost_usd"] <= budget + 1e-12
    assert 429 in statuses_after


def test_hard_budget_holds_on_an_unpriced_deployment_name(metered: Metered):
    """The upstream name has no price: the reservation is priced by the public model."""
    probe_id, probe = metered.new_key()
    metered.client(probe).chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=30)
    time.sleep(0.3)
    (row,) = metered.rows(probe_id)
    assert row["cost_usd"] > 0  # settled at the answering model's price (gpt-4o)
    budget = row["cost_usd"] * 20.5
    key_id, secret = metered.new_key(monthly_budget_usd=budget)

    async def fire() -> list[int]:
        async with httpx.AsyncClient(
            base_url=metered.service.base_url, timeout=60, limits=httpx.Limits(max_connections=200)
        ) as client:
            body = {"model": "gpt-4o", "messages": MESSAGES, "max_tokens": 30}
            headers = {"Authorization": f"Bearer {secret}"}
            calls = (
                client.post("/chat/completions", json=body, headers=headers) for _ in range(200)
            )
            return [reply.status_code for reply in await asyncio.gather(*calls)]

    statuses = asyncio.run(fire())
    assert set(statuses) <= {200, 429} and statuses.count(429) > 0
    spend = metered.admin("GET", "/admin/spend", params={"key_id": key_id}).json()
    assert spend["cost_usd"] <= budget + 1e-12


def test_hard_budget_refuses_a_model_with_no_price_at_all(metered: Metered):
    _, secret = metered.new_key(monthly_budget_usd=5)
    with pytest.raises(openai.PermissionDeniedError) as refused:
        metered.client(secret).chat.completions.create(model="house-model", messages=MESSAGES)
    assert refused.value.code == "model_not_priced"
    assert "house-model" in refused.value.message
    _, unlimited = metered.new_key()  # without a hard budget it is served (and metered)
    metered.client(unlimited).chat.completions.create(model="house-model", messages=MESSAGES)


def test_soft_budget_alerts_but_serves(metered: Metered):
    key_id, secret = metered.new_key(
        monthly_budget_usd=PAID_COST * 2, budget_mode="soft", alert_thresholds=[0.5, 1.0]
    )
    client = metered.client(secret)
    for _ in range(4):
        client.chat.completions.create(model="text-basic", messages=MESSAGES)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        hooks = [
            h
            for h in httpx.get(metered.fake.url + "/_log").json()["webhooks"]
            if h["key_id"] == key_id
        ]
        if len(hooks) >= 2:
            break
        time.sleep(0.1)
    assert sorted(h["threshold"] for h in hooks) == [0.5, 1.0]
    assert all(h["kind"] == "budget_usd" for h in hooks)


def test_token_quota_counts_this_month_only(metered: Metered):
    key_id, secret = metered.new_key(monthly_token_quota=200)
    last_month = datetime.now(UTC).replace(day=1) - timedelta(days=2)
    insert = (
        "INSERT INTO usage (request_id, key_id, created_at, endpoint, requested_model, "
        "prompt_tokens, cached_tokens, completion_tokens, reasoning_tokens, cost_usd, "
        "list_cost_usd, stream, status, cache_hit, client_disconnected, estimated) VALUES "
        "('old', :key, :at, 'chat', 'text-basic', 100000, 0, 0, 0, 1.0, 1.0, false, 200, "
        "false, false, false)"
    )
    query(metered.url, insert, {"key": key_id, "at": last_month})
    client = metered.client(secret)
    # 44 tokens a request; the reservation bounds each at body size + 16 + max_tokens.
    client.chat.completions.create(model="text-basic", messages=MESSAGES, max_tokens=30)
    client.chat.completions.create(model="text-basic", messages=MESSAGES, max_tokens=30)
    with pytest.raises(openai.RateLimitError) as info:
        for _ in range(5):
            client.chat.completions.create(model="text-basic", messages=MESSAGES, max_tokens=30)
    assert info.value.code == "insufficient_quota"
    assert "quota" in info.value.message


def test_expired_key_is_refused(metered: Metered):
    expires = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    _, secret = metered.new_key(expires_at=expires)
    client = metered.client(secret)
    client.chat.completions.create(model="text-basic", messages=MESSAGES)
    time.sleep(2.2)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="text-basic", messages=MESSAGES)
    assert "expired" in info.value.message


def test_model_allowlist(metered: Metered):
    _, secret = metered.new_key(allowed_models=["text-*"])
    client = metered.client(secret)
    assert client.chat.completions.create(model="text-basic", messages=MESSAGES).choices
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(model="tool-call-single", messages=MESSAGES)
    assert info.value.code == "model_not_allowed"
    assert [m.id for m in client.models.list()] == ["text-basic"]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("tool-call-single")


def test_admin_endpoints_refuse_user_keys(metered: Metered):
    user = {"Authorization": f"Bearer {metered.service.key}"}
    for method, path in [
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("GET", "/admin/usage"),
        ("GET", "/admin/spend"),
        ("DELETE", "/admin/keys/key_x"),
    ]:
        response = httpx.request(method, metered.service.url + path, headers=user, json={})
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "admin_key_required"
        assert httpx.request(method, metered.service.url + path).status_code == 401


def test_admin_keys_crud(metered: Metered):
    key_id, secret = metered.new_key(owner="team-a", monthly_token_quota=100000)
    listed = metered.admin("GET", "/admin/keys", params={"limit": 1000}).json()["data"]
    assert key_id in [k["id"] for k in listed]
    assert all("secret" not in k and secret not in str(k) for k in listed)
    patched = metered.admin("PATCH", f"/admin/keys/{key_id}", json={"owner": "team-b"}).json()
    assert patched["owner"] == "team-b" and patched["monthly_token_quota"] == 100000
    bad = metered.admin("PATCH", f"/admin/keys/{key_id}", json={"budget_mode": "maybe"})
    assert bad.status_code == 400
    assert metered.admin("DELETE", f"/admin/keys/{key_id}").json()["revoked"]
    with pytest.raises(openai.AuthenticationError):
        metered.client(secret).models.list()
    assert metered.admin("GET", "/admin/keys/key_nope").status_code == 404


def test_usage_grouped_and_paginated(metered: Metered):
    key_id, secret = metered.new_key()
    client = metered.client(secret)
    for model in ("text-basic", "text-basic", "refusal"):
        client.chat.completions.create(model=model, messages=MESSAGES)
    by_model = metered.admin(
        "GET", "/admin/usage", params={"group_by": "model", "key_id": key_id}
    ).json()["data"]
    counts = {row["model"]: row["requests"] for row in by_model}
    assert counts == {"text-basic": 2, "refusal": 1}
    text = next(row for row in by_model if row["model"] == "text-basic")
    assert text["savings_usd"] == pytest.approx(2 * (LIST_COST - PAID_COST))
    by_day = metered.admin(
        "GET", "/admin/usage", params={"group_by": "day", "key_id": key_id}
    ).json()["data"]
    assert by_day[0]["day"] == datetime.now(UTC).date().isoformat()
    page = metered.admin(
        "GET", "/admin/usage/requests", params={"key_id": key_id, "limit": 2}
    ).json()
    assert len(page["data"]) == 2 and page["has_more"]
    assert metered.admin("GET", "/admin/usage", params={"group_by": "color"}).status_code == 400


def test_unpriced_route_is_priced_by_the_answering_model(metered: Metered):
    key_id, secret = metered.new_key()
    metered.client(secret).chat.completions.create(model="refusal", messages=MESSAGES)
    (row,) = metered.rows(key_id)
    assert row["model"] == "gpt-4o-2024-08-06"
    tokens = (row["prompt_tokens"], row["completion_tokens"])
    assert row["list_cost_usd"] == pytest.approx((tokens[0] * 2.5 + tokens[1] * 10.0) / 1e6)
    assert row["cost_usd"] == pytest.approx(row["list_cost_usd"] * 0.75)


def test_cli_usage_report(metered: Metered, tmp_path):
    import subprocess
    import sys

    key_id, secret = metered.new_key()
    metered.client(secret).chat.completions.create(model="text-basic", messages=MESSAGES)
    metered.rows(key_id)  # flushes the buffer
    config = tmp_path / "cli.yaml"
    config.write_text(f"database_url: {metered.url}\n")
    result = subprocess.run(
        [sys.executable, "-m", "savegate", "usage", "--key", key_id, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "text-basic" in result.stdout and "$0.0001" in result.stdout
