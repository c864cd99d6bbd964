"""The guide's SSE relays (FastAPI, Express) and its chat page, against the embedded model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import Service, stop
from tests.examples.conftest import EXAMPLES, RELAYS, start_relay
from tests.web.browser import screenshot

PROMPT = "Reply with one word: yes or no?"  # short answers from the small model


def relay_events(relay: Service) -> list[str]:
    events: list[str] = []
    with httpx.stream("POST", relay.url + "/stream", json={"message": PROMPT}, timeout=300) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
    return events


def test_relay_streams_the_json_body_message(relay: Service):
    events = relay_events(relay)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all("error" not in chunk for chunk in chunks), chunks
    assert "".join(chunk["content"] for chunk in chunks).strip()


@pytest.mark.parametrize("name", sorted(RELAYS))
def test_relay_ends_with_an_error_event_when_refused(
    name: str, gateway: Service, node_modules: Path, tmp_path: Path
):
    relay = start_relay(name, gateway, tmp_path, key="sk-savegate-" + "x" * 32)
    try:
        events = relay_events(relay)
    finally:
        stop(relay.process)
    assert len(events) == 2 and events[1] == "[DONE]", events
    assert "401" in json.loads(events[0])["error"]


def test_chat_page_through_the_relay(page: Page, relay: Service):
    page.goto(relay.url + "/")
    page.fill("#user-input", PROMPT)
    with page.expect_response("**/stream") as stream:
        page.click("button")
    stream.value.finished()
    messages = page.locator("#messages div")
    expect(messages.nth(0)).to_have_text(f"User: {PROMPT}")
    # The page may still be rendering the last read when the response has finished.
    expect(messages.nth(1).locator("span")).to_have_text(re.compile(r"\S"))
    answer = messages.nth(1).locator("span").inner_text()
    assert answer.strip() and "error" not in answer and "undefined" not in answer, answer
    screenshot(page, f"example-chat-page-{relay.log.stem.removesuffix('-relay')}")


# Events cut mid-line, mid-JSON and inside a UTF-8 character, as reads can come.
READS = [
    'data: {"content": "Hel',
    'lo, w"}\n',
    '\ndata: {"content": "\xc3',
    '\xb6rld"}\n\ndata: {"content": "!"}\n\nda',
    "ta: [DONE]\n\n",
]
FAKE_FETCH = """reads => {
    window.fetch = async () => new Response(new ReadableStream({
        start(controller) {
            for (const read of reads) {
                controller.enqueue(Uint8Array.from(read, c => c.charCodeAt(0)));
            }
            controller.close();
        }
    }), {headers: {"content-type": "text/event-stream"}});
}"""


def test_chat_page_keeps_events_split_across_reads(page: Page):
    page.set_content((EXAMPLES / "web" / "chat.html").read_text())
    page.evaluate(FAKE_FETCH, READS)
    page.fill("#user-input", "hi")
    page.click("button")
    expect(page.locator("#messages div").nth(1)).to_have_text("Assistant: Hello, w\u00f6rld!")
