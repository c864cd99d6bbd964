"""A batch on the embedded model (no provider configured): its lines queue behind live
requests in the model process like any other request, and are metered as free."""

from __future__ import annotations

import openai

from tests.batch_helpers import chat_line, results, upload, wait
from tests.conftest import Service
from tests.stores import query


def test_a_batch_on_the_embedded_model(gateway: Service) -> None:
    client = openai.OpenAI(api_key=gateway.key, base_url=gateway.base_url, max_retries=0)
    lines = [chat_line(f"embedded-{i}", "gpt-4o", max_tokens=8) for i in range(2)]
    batch = client.batches.create(
        input_file_id=upload(client, lines),
        endpoint="/v1/chat/completions",
        completion_window="24h",
    )
    live = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert live.choices[0].message.content is not None  # live traffic is still served
    batch = wait(client, batch.id, timeout=180)
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == 2 and batch.request_counts.failed == 0
    output = results(client, batch.output_file_id)
    assert [line["custom_id"] for line in output] == ["embedded-0", "embedded-1"]
    for line in output:
        body = line["response"]["body"]
        assert body["model"] == "SmolLM2-135M-Instruct"
        assert body["choices"][0]["message"]["content"]
        assert 0 < body["usage"]["completion_tokens"] <= 8
    url = f"sqlite+aiosqlite:///{gateway.log.parent / 'data' / 'savegate.db'}"
    rows = query(
        url,
        "SELECT request_id, provider, cost_usd, status FROM usage WHERE batch_id = :b",
        {"b": batch.id},
    )
    assert sorted(rows) == sorted((line["id"], "local", 0.0, 200) for line in output)
