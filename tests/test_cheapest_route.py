"""`strategy: cheapest`: the deployment with the lowest paid price for the request's
estimated tokens serves it, the next cheapest if it fails, and the saving against the
group's dearest deployment is recorded as a `route` saving. A real gateway in front of
the fake upstream; the openai SDK is the client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import Service, start_gateway, stop

# text-basic always reports 14 prompt and 30 completion tokens.
PROMPT, COMPLETION = 14, 30


def cost(input: float, output: float) -> float:
    return (PROMPT * input + COMPLETION * output) / 1e6


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service) -> Iterator[Service]:
    def provider(**settings: Any) -> dict[str, Any]:
        return {"base_url": fake_upstream.base_url, "models": [], **settings}

    cheapest = {"strategy": "cheapest"}
    config = {
        "local": {"enabled": False},
        "usage": {"flush_seconds": 0.1},
        "routing": {"backoff_seconds": 0.01},
        "prices": {
            "text-basic": {"input": 5.0, "output": 10.0},
            "status-503": {"input": 0.1, "output": 0.1},
        },
        "providers": {
            "dear": provider(),
            "cheap": provider(discount=0.5),
            "unpriced": provider(),
            # The same model at prices of their own: one cheap to read, one cheap to write.
            "reader": provider(prices={"text-basic": {"input": 1.0, "output": 10.0}}),
            "writer": provider(prices={"text-basic": {"input": 5.0, "output": 1.0}}),
        },
        "models": {
            "by-discount": {
                **cheapest,
                "deployments": [
                    {"provider": "dear", "model": "text-basic"},
                    {"provider": "unpriced", "model": "tool-call-single"},
                    {"provider": "cheap", "model": "text-basic"},
                ],
            },
            "by-shape": {
                **cheapest,
                "deployments": [
                    {"provider": "reader", "model": "text-basic"},
                    {"provider": "writer", "model": "text-basic"},
                ],
            },
            "failing-cheapest": {
                **cheapest,
                "deployments": [
                    {"provider": "dear", "model": "text-basic"},
                    {"provider": "cheap", "model": "status-503"},
                ],
            },
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("cheapest"), config)
    yield service
    stop(service.process)


def admin(service: Service, path: str, **params: Any) -> Any:
    headers = {"Authorization": f"Bearer {service.keys['admin']}"}
    response = httpx.get(service.url + path, headers=headers, params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def new_client(service: Service) -> tuple[str, openai.OpenAI]:
    headers = {"Authorization": f"Bearer {service.keys['admin']}"}
    made = httpx.post(service.url + "/admin/keys", headers=headers, json={"name": "route"}).json()
    return made["id"], openai.OpenAI(
        api_key=made["secret"], base_url=service.base_url, max_retries=0
    )


def rows(service: Service, key_id: str) -> list[dict[str, Any]]:
    return list(reversed(admin(service, "/admin/usage/requests", key_id=key_id)["data"]))


def ask(client: openai.OpenAI, model: str, content: str = "hi", **options: Any) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **options
    )


def test_the_cheapest_deployment_serves_and_its_saving_is_a_route_saving(routed: Service):
    key_id, client = new_client(routed)
    for stream in (False, True, False):
        if stream:
            assert "".join(
                c.choices[0].delta.content or "" for c in ask(client, "by-discount", stream=True)
            )
        else:
            assert ask(client, "by-discount").choices[0].message.content
    served = rows(routed, key_id)
    assert [row["provider"] for row in served] == ["cheap"] * 3
    listed = cost(5.0, 10.0)
    for row in served:
        # Against the dearest deployment (the same model at list price, undiscounted).
        assert row["cost_usd"] == pytest.approx(listed / 2, abs=1e-12)
        assert row["list_cost_usd"] == pytest.approx(listed, abs=1e-12)
        assert row["saving_route_usd"] == pytest.approx(listed / 2, abs=1e-12)
        assert row["saving_discount_usd"] == pytest.approx(0, abs=1e-12)
        assert row["saving_prompt_cache_usd"] == 0
    spend = admin(routed, "/admin/spend", key_id=key_id)
    assert spend["savings_by_source"]["route"] == pytest.approx(3 * listed / 2)
    assert round(spend["cost_usd"] + spend["savings_by_source"]["route"], 10) == round(
        spend["list_cost_usd"], 10
    )


def test_the_price_is_for_the_requests_own_tokens(routed: Service):
    key_id, client = new_client(routed)
    # A short prompt and a long answer: the deployment cheap to write wins.
    ask(client, "by-shape", max_tokens=1000)
    # A long prompt (some 10,000 tokens) and a one-token answer: cheap to read wins.
    ask(client, "by-shape", "word " * 8000, max_tokens=1)
    short, long = rows(routed, key_id)
    assert (short["provider"], long["provider"]) == ("writer", "reader")
    # For the tokens really used (14 in, 30 out) the writer was cheaper than the reader:
    # that difference is the route's saving, and the list price's excess the discount.
    writer, reader, listed = cost(5.0, 1.0), cost(1.0, 10.0), cost(5.0, 10.0)
    assert short["cost_usd"] == pytest.approx(writer, abs=1e-12)
    assert short["saving_route_usd"] == pytest.approx(reader - writer, abs=1e-12)
    assert short["saving_discount_usd"] == pytest.approx(listed - reader, abs=1e-12)
    assert short["list_cost_usd"] == pytest.approx(listed, abs=1e-12)
    # The reader, chosen by the estimate, was the dearer for those tokens: no route saving.
    assert long["cost_usd"] == pytest.approx(reader, abs=1e-12)
    assert long["saving_route_usd"] == 0
    assert long["saving_discount_usd"] == pytest.approx(listed - reader, abs=1e-12)


def test_a_failing_cheapest_deployment_falls_back_to_the_next(routed: Service):
    key_id, client = new_client(routed)
    answer = ask(client, "failing-cheapest")
    assert answer.choices[0].message.content
    failed, served = rows(routed, key_id)
    assert (failed["provider"], failed["status"]) == ("cheap", 503)
    assert (served["provider"], served["status"]) == ("dear", 200)
    assert served["saving_route_usd"] == 0  # it was the dearest: nothing saved
    assert served["cost_usd"] == pytest.approx(cost(5.0, 10.0), abs=1e-12)
