"""The streaming guide's "Error Handling in Streams" sample; only api_key and base_url differ."""

import os

from openai import OpenAI

client = OpenAI(
    api_key=os.environ.get("SAVEGATE_API_KEY", "sk-savegate-xxxxxxxxxxxxx"),
    base_url=os.environ.get("SAVEGATE_BASE_URL", "http://127.0.0.1:8000/v1"),
)


def safe_stream(message, model="gpt-4"):
    try:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": message}],
            stream=True,
        )

        for chunk in stream:
            try:
                if chunk.choices[0].delta.content:
                    print(chunk.choices[0].delta.content, end="", flush=True)
            except (AttributeError, IndexError):
                # Handle malformed chunks
                continue

    except Exception as e:
        print(f"\nError during streaming: {e}")
        return None

    print()  # New line at end


safe_stream("Tell me a joke")
