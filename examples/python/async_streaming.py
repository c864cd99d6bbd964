"""The streaming guide's "Async Streaming" sample; only api_key and base_url differ."""

import asyncio
import os

from openai import AsyncOpenAI

async_client = AsyncOpenAI(
    api_key=os.environ.get("SAVEGATE_API_KEY", "sk-savegate-xxxxxxxxxxxxx"),
    base_url=os.environ.get("SAVEGATE_BASE_URL", "http://127.0.0.1:8000/v1"),
)


async def async_stream(message, model="gpt-4"):
    stream = await async_client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": message}],
        stream=True,
    )

    full_response = ""
    async for chunk in stream:
        if chunk.choices[0].delta.content:
            content = chunk.choices[0].delta.content
            print(content, end="", flush=True)
            full_response += content

    return full_response


# Usage
asyncio.run(async_stream("Explain quantum computing"))
