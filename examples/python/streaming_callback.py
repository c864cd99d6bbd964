"""The streaming guide's "Streaming with Callback" sample; only api_key and base_url differ."""

import os

from openai import OpenAI

client = OpenAI(
    api_key=os.environ.get("SAVEGATE_API_KEY", "sk-savegate-xxxxxxxxxxxxx"),
    base_url=os.environ.get("SAVEGATE_BASE_URL", "http://127.0.0.1:8000/v1"),
)


def stream_with_callback(message, callback, model="gpt-4"):
    """Stream response and call callback for each chunk"""
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": message}],
        stream=True,
    )

    full_response = ""
    for chunk in stream:
        if chunk.choices[0].delta.content:
            content = chunk.choices[0].delta.content
            full_response += content
            callback(content)

    return full_response


# Usage with custom callback
def print_colored(text):
    print(f"\033[92m{text}\033[0m", end="", flush=True)


response = stream_with_callback("Write a poem", callback=print_colored)
