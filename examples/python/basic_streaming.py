"""The streaming guide's "Basic Streaming" sample; only api_key and base_url differ."""

import os

from openai import OpenAI

client = OpenAI(
    api_key=os.environ.get("SAVEGATE_API_KEY", "sk-savegate-xxxxxxxxxxxxx"),
    base_url=os.environ.get("SAVEGATE_BASE_URL", "http://127.0.0.1:8000/v1"),
)


def stream_response(message, model="gpt-4"):
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": message}],
        stream=True,
    )

    print("Response: ", end="")
    for chunk in stream:
        if chunk.choices[0].delta.content:
            content = chunk.choices[0].delta.content
            print(content, end="", flush=True)
    print()  # New line at end


# Usage
stream_response("Tell me a story about a robot")
