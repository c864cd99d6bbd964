"""The operator dashboard in a real Chromium: charts of real usage, keys, budget alerts."""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Service, start_gateway, stop
from tests.web.browser import screenshot


def chat(
    gateway: Service, key: str, model: str = "text-basic", stream: bool = False
) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def admin_get(gateway: Service, path: str) -> Any:
    headers = {"Authorization": f"Bearer {gateway.keys['admin']}"}
    return httpx.get(gateway.url + path, headers=headers, timeout=10).json()


def chart(page: Page, canvas: str) -> dict[str, Any]:
    return page.evaluate(
        "id => { const c = Chart.getChart(id);"
        " return {labels: c.data.labels, data: c.data.datasets.map(d => d.data)}; }",
        canvas,
    )


def connect(page: Page, gateway: Service) -> None:
    page.goto(gateway.url + "/dashboard")
    page.fill("#admin-key", gateway.keys["admin"])
    page.click("#key-form button")
    expect(page.locator("#key-status")).to_have_text("Connected")


def prompt_tokens_by_model(page: Page) -> dict[str, int]:
    by_model = chart(page, "chart-model")
    return dict(zip(by_model["labels"], by_model["data"][0], strict=True))


def test_charts_and_tables_show_the_requests_just_made(page: Page, web_gateway: Service):
    connect(page, web_gateway)
    before = prompt_tokens_by_model(page)
    assert chat(web_gateway, web_gateway.key, "text-basic").status_code == 200
    assert chat(web_gateway, web_gateway.key, "tool-call-single").status_code == 200
    assert chat(web_gateway, web_gateway.key, "text-basic", stream=True).status_code == 200
    page.click("#refresh")

    # The recorded answers' usage: 14 prompt tokens for text-basic, 76 for the tool call.
    expected = {"text-basic": before.get("text-basic", 0) + 28}
    expected["tool-call-single"] = before.get("tool-call-single", 0) + 76
    page.wait_for_function(
        "n => Chart.getChart('chart-model').data.datasets[0].data.reduce((a, b) => a + b, 0) == n",
        arg=sum({**before, **expected}.values()),
    )
    assert prompt_tokens_by_model(page) == {**before, **expected}
    by_key = chart(page, "chart-key")
    assert by_key["data"][0][by_key["labels"].index("default")] >= 3
    requests_card = page.locator("#summary .card", has_text="Requests").locator(".value")
    shown = int(requests_card.inner_text().replace(",", ""))
    assert sum(chart(page, "chart-day")["data"][0]) == shown
    expect(page.locator("#summary .savings .value")).not_to_have_text("$0.00")
    expect(page.locator("#by-model")).to_contain_text("tool-call-single")
    rows = page.locator("#requests tbody tr")
    expect(rows.first).to_contain_text("default")
    # The streamed request, newest: its latency and its time to first token.
    expect(rows.first.locator("td").nth(-1)).to_have_text(re.compile(r"^\d+ ms$"))
    expect(rows.first.locator("td").nth(-2)).to_have_text(re.compile(r"^\d+ ms$"))
    screenshot(page, "dashboard")


def test_create_edit_and_revoke_a_key(page: Page, web_gateway: Service):
    page.on("dialog", lambda dialog: dialog.accept())  # the revoke confirmation
    connect(page, web_gateway)

    page.click("#create-details summary")
    page.fill("#create-form [name=name]", "browser-made")
    page.fill("#create-form [name=owner]", "web-team")
    page.select_option("#create-form [name=budget_mode]", "soft")
    page.click("#create-form button[type=submit]")
    expect(page.locator("#secret")).to_be_visible()
    secret = page.inner_text("#secret-value")
    assert re.fullmatch(r"sk-savegate-\w{32}", secret)
    row = page.locator("#keys tbody tr", has_text="browser-made")
    expect(row).to_contain_text("web-team")
    screenshot(page, "dashboard-key-created")

    # The new key works; its spend this month is then put at 90% of a budget set in the page.
    assert chat(web_gateway, secret).status_code == 200
    key_id = row.get_attribute("data-key-id")
    month = admin_get(web_gateway, f"/admin/usage?group_by=key&key_id={key_id}")["data"][0]
    assert month["cost_usd"] > 0
    row.get_by_role("button", name="Edit").click()
    page.fill("#edit-form [name=monthly_budget_usd]", f"{month['cost_usd'] / 0.9:.10f}")
    page.fill("#edit-form [name=rpm]", "120")
    page.click("#edit-form button[type=submit]")
    expect(page.locator("#edit-dialog")).not_to_be_visible()
    settings = admin_get(web_gateway, f"/admin/keys/{key_id}")
    assert settings["rpm"] == 120 and settings["budget_mode"] == "soft"
    assert abs(settings["monthly_budget_usd"] - month["cost_usd"] / 0.9) < 1e-9
    alert = page.locator(f"#alerts [data-key-id={key_id}]")
    expect(alert).to_contain_text("browser-made has used 90% of its monthly budget")
    expect(row).to_contain_text("120 rpm")
    page.locator("#alerts-panel").scroll_into_view_if_needed()
    screenshot(page, "dashboard-budget-alert")

    row.get_by_role("button", name="Revoke").click()
    expect(row).to_be_hidden()
    page.check("#show-revoked")
    expect(row).to_contain_text("revoked")
    refused = chat(web_gateway, secret)
    assert refused.status_code == 401, refused.text
    assert admin_get(web_gateway, f"/admin/keys/{key_id}")["revoked_at"] is not None


def test_a_user_key_is_refused_clearly(page: Page, web_gateway: Service):
    page.goto(web_gateway.url + "/dashboard")
    page.fill("#admin-key", web_gateway.key)
    page.click("#key-form button")
    expect(page.locator("#error")).to_contain_text("403")
    expect(page.locator("#error")).to_contain_text("admin key")


@pytest.fixture(scope="module")
def savings_gateway(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service):
    """A gateway where every lever saves: a discount, Anthropic prompt caching (the fake
    Anthropic answers cache marks) and a cheaper route."""
    os.environ.setdefault("FAKE_ANTHROPIC_KEY", "sk-ant-fake")
    config = {
        "local": {"enabled": False},
        "prices": {"text-basic": {"input": 5.0, "output": 10.0}},
        "providers": {
            "claude": {
                "type": "anthropic",
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_ANTHROPIC_KEY",
                "discount": 0.1,
                "prompt_cache": "auto",
                "models": ["basic_response"],
            },
            "listed": {"base_url": fake_upstream.base_url, "models": []},
            "resold": {"base_url": fake_upstream.base_url, "discount": 0.4, "models": []},
        },
        "models": {
            "cheap-route": {
                "strategy": "cheapest",
                "deployments": [
                    {"provider": "listed", "model": "text-basic"},
                    {"provider": "resold", "model": "text-basic"},
                ],
            }
        },
    }
    service = start_gateway(tmp_path_factory.mktemp("web-savings"), config, name="savings")
    yield service
    stop(service.process)


def test_savings_panel_shows_every_source(page: Page, savings_gateway: Service):
    system = f"[{uuid.uuid4()}] " + "Answer from the handbook only. " * 200
    cached = [{"role": "system", "content": system}, {"role": "user", "content": "hi"}]
    for _ in range(2):  # the first call writes the cache, the second reads it
        response = httpx.post(
            savings_gateway.base_url + "/chat/completions",
            json={"model": "basic_response", "messages": cached},
            headers={"Authorization": f"Bearer {savings_gateway.key}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
    assert chat(savings_gateway, savings_gateway.key, "cheap-route").status_code == 200
    sources = admin_get(savings_gateway, "/admin/spend")["savings_by_source"]
    assert sources["discount"] > 0 and sources["prompt_cache"] > 0 and sources["route"] > 0

    connect(page, savings_gateway)
    rows = page.locator("#savings-sources tbody tr")
    expect(rows).to_have_count(5)
    shown = {}
    for index in range(5):
        cells = rows.nth(index).locator("td")
        shown[cells.nth(0).inner_text()] = cells.nth(1).inner_text()
    labels = {
        "discount": "Provider discount",
        "prompt_cache": "Prompt caching",
        "route": "Cheaper route",
        "response_cache": "Response cache",
        "semantic_cache": "Semantic cache",
    }
    usd = "async value => (await import('/static/common.js')).usd(value)"
    for source, label in labels.items():
        assert shown[label] == page.evaluate(usd, sources[source])
    # The chart stacks the same savings by day, a series per source in the table's order.
    order = ["discount", "response_cache", "semantic_cache", "prompt_cache", "route"]
    totals = [sum(series) for series in chart(page, "chart-savings")["data"]]
    assert totals == pytest.approx([sources[source] for source in order])
    expect(page.locator("#by-model")).to_contain_text("Cheaper route")
    page.locator("#savings-panel").scroll_into_view_if_needed()
    screenshot(page, "dashboard-savings")
