"""LangChain's ChatOpenAI streaming through the gateway, text and tool calls."""

from __future__ import annotations

import json

import pytest
from langchain_openai import ChatOpenAI

from tests.conftest import Service


def chat(service: Service, model: str) -> ChatOpenAI:
    return ChatOpenAI(model=model, api_key=service.key, base_url=service.base_url, max_retries=0)


def test_streaming_text(relay_gateway: Service):
    pieces = [chunk.content for chunk in chat(relay_gateway, "text-basic").stream("Weather?")]
    assert "".join(pieces).startswith("I'm unable to provide real-time weather")


@pytest.mark.parametrize("model", ["tool-call-single", "tool-calls-parallel"])
def test_streaming_tool_calls(relay_gateway: Service, model: str):
    def GetWeatherArgs(city: str, country: str, units: str) -> str:
        """Weather for a city."""
        return "sunny"

    def get_stock_price(ticker: str, exchange: str) -> str:
        """A stock price."""
        return "1"

    llm = chat(relay_gateway, model).bind_tools([GetWeatherArgs, get_stock_price])
    total = None
    for chunk in llm.stream("Weather in Edinburgh?"):
        total = chunk if total is None else total + chunk
    assert total is not None
    calls = total.tool_calls
    assert calls and calls[0]["name"] == "GetWeatherArgs"
    assert calls[0]["id"].startswith("call_")
    assert isinstance(calls[0]["args"], dict) and calls[0]["args"]
    if model == "tool-calls-parallel":
        assert [call["name"] for call in calls] == ["GetWeatherArgs", "get_stock_price"]
    assert all(json.dumps(call["args"]) for call in calls)
