"""The streaming guide's FastAPI SSE relay, fixed.

The guide's version called the synchronous client inside an async generator, which blocks
the event loop for the whole answer (one user at a time), and took `message` as a query
parameter while its page posts JSON. This one takes the JSON body `{"message": "..."}`,
streams with `AsyncOpenAI` (a browser that goes away cancels the upstream call), ends with
`data: [DONE]` like the Express relay, and reports a failure as an `error` event. It also
serves the chat page (examples/web/chat.html) at `/`.

Run: SAVEGATE_API_KEY=sk-savegate-… python examples/python/fastapi_relay.py  (PORT, default 8001)
"""

import json
import os
from pathlib import Path

import openai
import uvicorn
from fastapi import FastAPI
from fastapi.responses import FileResponse, StreamingResponse
from openai import AsyncOpenAI
from pydantic import BaseModel

app = FastAPI()

client = AsyncOpenAI(
    api_key=os.environ.get("SAVEGATE_API_KEY", "sk-savegate-xxxxxxxxxxxxx"),
    base_url=os.environ.get("SAVEGATE_BASE_URL", "http://127.0.0.1:8000/v1"),
)
CHAT_PAGE = Path(__file__).resolve().parent.parent / "web" / "chat.html"


class ChatRequest(BaseModel):
    message: str


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"


async def stream_generator(message: str):
    try:
        stream = await client.chat.completions.create(
            model="gpt-4",
            messages=[{"role": "user", "content": message}],
            stream=True,
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield sse({"content": chunk.choices[0].delta.content})
    except openai.APIError as e:
        yield sse({"error": str(e)})
    yield "data: [DONE]\n\n"


@app.post("/stream")
async def stream_chat(request: ChatRequest):
    return StreamingResponse(
        stream_generator(request.message),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


@app.get("/")
async def chat_page():
    return FileResponse(CHAT_PAGE)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8001")))
