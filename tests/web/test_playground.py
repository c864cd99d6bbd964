"""The playground page in a real Chromium: streaming, stop, usage, tool calls, errors."""

from __future__ import annotations

import re
import time

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import Service
from tests.web.browser import screenshot
from tests.web.conftest import MODELS

# How the recorded `text-basic` answer begins.
TEXT_BASIC = "I'm unable to provide real-time weather updates."


def open_playground(page: Page, gateway: Service, key: str | None = None) -> None:
    page.goto(gateway.url + "/")
    page.fill("#api-key", key or gateway.key)
    page.click("#key-form button")
    expect(page.locator("#key-status")).to_contain_text("models available")


def ask(page: Page, model: str, text: str) -> None:
    page.fill("#model", model)
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def disconnects(fake_upstream: Service) -> int:
    return httpx.get(fake_upstream.url + "/_log").json()["disconnects"].count("slow")


def test_models_are_listed_and_key_stays_in_the_tab(page: Page, web_gateway: Service):
    open_playground(page, web_gateway)
    options = page.locator("#models option")
    assert sorted(options.evaluate_all("nodes => nodes.map(n => n.value)")) == sorted(MODELS)
    assert page.evaluate("sessionStorage.getItem('savegate.playground.key')") == web_gateway.key
    assert page.evaluate("localStorage.length") == 0
    page.reload()
    assert page.input_value("#api-key") == web_gateway.key


def test_send_streams_text_with_usage_and_request_id(page: Page, web_gateway: Service):
    open_playground(page, web_gateway)
    ask(page, "text-basic", "Hello there")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".text")).to_contain_text(TEXT_BASIC)
    expect(answer.locator(".usage")).to_have_text("14 prompt + 30 completion = 44 tokens")
    expect(answer.locator(".request-id")).to_have_text(re.compile(r"^req_\w+$"))
    expect(answer).not_to_have_class(re.compile("streaming"))
    expect(page.locator(".msg.user .text")).to_have_text("Hello there")

    # The conversation goes on: the second request carries the first exchange.
    requests: list[dict] = []
    page.on("request", lambda r: requests.append(r.post_data_json) if r.method == "POST" else None)
    ask(page, "text-basic", "And again")
    expect(page.locator(".msg.assistant .usage")).to_have_count(2)
    roles = [message["role"] for message in requests[-1]["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert requests[-1]["stream_options"] == {"include_usage": True}
    screenshot(page, "playground-answer")


def test_stop_aborts_the_stream_and_the_upstream_call(
    page: Page, web_gateway: Service, fake_upstream: Service
):
    before = disconnects(fake_upstream)
    open_playground(page, web_gateway)
    ask(page, "slow", "Count for me")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".text")).to_contain_text("tick3")
    expect(page.locator("#stop")).to_be_enabled()
    screenshot(page, "playground-streaming")
    page.click("#stop")
    expect(answer.locator(".stopped")).to_have_text("Stopped")
    stopped_text = answer.locator(".text").inner_text()
    time.sleep(0.3)
    assert answer.locator(".text").inner_text() == stopped_text  # nothing arrives after Stop
    assert "tick" in stopped_text and "tick100" not in stopped_text
    expect(page.locator("#send")).to_be_enabled()
    deadline = time.monotonic() + 10
    while disconnects(fake_upstream) == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert disconnects(fake_upstream) == before + 1, "the upstream call was not cancelled"


def test_tool_calls_are_shown(page: Page, web_gateway: Service):
    open_playground(page, web_gateway)
    ask(page, "tool-call-single", "Weather in Paris?")
    call = page.locator(".msg.assistant .tool-call")
    expect(call.locator(".name")).to_have_text("GetWeatherArgs")
    expect(call.locator("pre")).to_contain_text('"city": "Edinburgh"')
    expect(page.locator(".msg.assistant .meta")).to_contain_text("finish: tool_calls")
    screenshot(page, "playground-tool-call")


def test_errors_are_shown(page: Page, web_gateway: Service):
    open_playground(page, web_gateway)
    ask(page, "no-such-model", "Hello")
    error = page.locator(".msg.assistant .banner.error")
    expect(error).to_contain_text("404")
    expect(error).to_contain_text("model_not_found")
    screenshot(page, "playground-error")

    page.fill("#api-key", "sk-savegate-" + "x" * 32)
    page.click("#key-form button")
    expect(page.locator("#key-status.error")).to_contain_text("401")


def test_sse_reader_keeps_events_cut_across_reads(page: Page, web_gateway: Service):
    page.goto(web_gateway.url + "/")
    reads = ['data: {"a":', " 1}\r", "\n\r\n: keep-alive\n\ndata: \xc3", "\xa9\n", "\ndata: [DONE]"]
    events = page.evaluate(
        """async reads => {
            const { sseData } = await import("/static/common.js");
            const body = new ReadableStream({
                start(controller) {
                    for (const read of reads) {
                        controller.enqueue(Uint8Array.from(read, c => c.charCodeAt(0)));
                    }
                    controller.close();
                }
            });
            const events = [];
            for await (const data of sseData(body)) events.push(data);
            return events;
        }""",
        reads,
    )
    assert events == ['{"a": 1}', "\u00e9", "[DONE]"]


def test_image_tab_generates_and_shows_the_images(page: Page, web_gateway: Service):
    open_playground(page, web_gateway)
    page.click("#tab-images")
    expect(page.locator("#images")).to_be_visible()
    expect(page.locator("#composer")).to_be_hidden()
    page.fill("#model", "gpt-image-1")
    page.select_option("#image-size", "1536x1024")
    page.select_option("#image-quality", "low")
    page.fill("#image-n", "2")
    requests: list[dict] = []
    page.on("request", lambda r: requests.append(r.post_data_json) if r.method == "POST" else None)
    page.fill("#image-prompt", "An otter in a hat")
    page.press("#image-prompt", "Enter")
    generation = page.locator(".generation").last
    expect(generation.locator(".count")).to_have_text("2 images")
    images = generation.locator("img")
    expect(images).to_have_count(2)
    # Each picture really decoded: the fake draws an 8x8 PNG.
    sizes = images.evaluate_all("nodes => nodes.map(n => [n.complete, n.naturalWidth])")
    assert sizes == [[True, 8], [True, 8]]
    expect(generation.locator(".request-id")).to_have_text(re.compile(r"^req_\w+$"))
    assert requests[-1] == {
        "model": "gpt-image-1",
        "prompt": "An otter in a hat",
        "n": 2,
        "size": "1536x1024",
        "quality": "low",
    }
    screenshot(page, "playground-images")

    page.fill("#model", "tool-call-single-no-such")
    page.fill("#image-prompt", "Another")
    page.press("#image-prompt", "Enter")
    expect(page.locator(".generation").last.locator(".banner.error")).to_contain_text("404")
    page.click("#tab-chat")
    expect(page.locator("#composer")).to_be_visible()
    expect(page.locator("#images")).to_be_hidden()
