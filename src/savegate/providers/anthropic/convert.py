"""OpenAI chat ⇄ Anthropic Messages, as pure functions (tested against recorded fixtures)."""

from __future__ import annotations

from typing import Any

import orjson

from savegate.core.errors import InvalidRequest
from savegate.wire import openai_chat
from savegate.wire.content import text_of

DEFAULT_MAX_TOKENS = 4096
STRUCTURED_TOOL = "structured_output"

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _text(content: Any) -> str:
    return text_of(content, "\n")


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header.removeprefix("data:").split(";")[0] or "image/png"
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _marked(block: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    """`block` with the prompt-caching breakpoint of the OpenAI part it came from."""
    if "cache_control" in part:
        block["cache_control"] = part["cache_control"]
    return block


def _mark_last(blocks: list[dict[str, Any]], message: dict[str, Any]) -> list[dict[str, Any]]:
    """A breakpoint set on a whole message goes on its last block, where Anthropic takes it."""
    if blocks and "cache_control" in message:
        blocks[-1]["cache_control"] = message["cache_control"]
    return blocks


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        kind = part.get("type")
        if kind == "text":
            blocks.append(_marked({"type": "text", "text": part.get("text", "")}, part))
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url", "") if isinstance(image, dict) else str(image or "")
            blocks.append(_marked(_image(url), part))
        else:
            raise InvalidRequest(
                f"Content parts of type '{kind}' are not supported by Anthropic models.",
                param="messages",
            )
    return blocks


def _part_marker(content: Any) -> dict[str, Any]:
    """The breakpoint of any part of `content` (parts joined into one block carry it)."""
    if isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and "cache_control" in part:
                return {"cache_control": part["cache_control"]}
    return {}


def _arguments(raw: str) -> Any:
    try:
        return orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "Tool call arguments in the conversation are not valid JSON.", param="messages"
        ) from None


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = _text(message.get("content"))
    if text:
        blocks.append(_marked({"type": "text", "text": text}, _part_marker(message.get("content"))))
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": _arguments(function.get("arguments", "")),
            }
        )
    legacy = message.get("function_call")
    if legacy:
        blocks.append(
            {
                "type": "tool_use",
                "id": _legacy_id(legacy.get("name", "")),
                "name": legacy.get("name"),
                "input": _arguments(legacy.get("arguments", "")),
            }
        )
    return _mark_last(blocks, message)


def _legacy_id(name: str) -> str:
    # Legacy function calls carry no id; results are matched to calls by name.
    return f"toolu_fn_{name}"


def _merge(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if turns and turns[-1]["role"] == role:
        existing = turns[-1]["content"]
        if role == "user" and blocks and blocks[0]["type"] == "tool_result":
            # Tool results must come first in a user turn.
            results = [b for b in existing if b["type"] == "tool_result"]
            others = [b for b in existing if b["type"] != "tool_result"]
            turns[-1]["content"] = [*results, *blocks, *others]
        else:
            existing.extend(blocks)
    else:
        turns.append({"role": role, "content": blocks})


def _system_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, list):
        blocks = [
            _marked({"type": "text", "text": part.get("text", "")}, part)
            for part in content
            if part.get("type") == "text"
        ]
    else:
        blocks = [{"type": "text", "text": _text(content)}]
    return _mark_last(blocks, message)


def _system(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """The system prompt: one string, or blocks when some carry a caching breakpoint."""
    if any("cache_control" in block for block in blocks):
        return blocks
    return "\n".join(block["text"] for block in blocks)


def _messages(
    messages: list[dict[str, Any]],
) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            system.extend(_system_blocks(message))
        elif role == "user":
            _merge(turns, "user", _mark_last(_user_blocks(message.get("content")), message))
        elif role == "assistant":
            blocks = _assistant_blocks(message)
            if blocks:
                _merge(turns, "assistant", blocks)
        else:
            tool_use_id = message.get("tool_call_id") or _legacy_id(message.get("name", ""))
            result = {
                "type": "tool_result",
                "tool_use_id": tool_use_id,
                "content": _text(message.get("content")),
            }
            marked = _marked(result, _part_marker(message.get("content")))
            _merge(turns, "user", _mark_last([marked], message))
    return _system(system), turns


def _tool_choice(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = body.get("tool_choice", body.get("function_call"))
    if choice is None:
        result: dict[str, Any] | None = None
    elif choice in ("auto", "none"):
        result = {"type": choice}
    elif choice == "required":
        result = {"type": "any"}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name") or choice.get("name")
        result = {"type": "tool", "name": name}
    else:
        result = None
    if body.get("parallel_tool_calls") is False:
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    return result


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    tools = [(tool.get("function") or {}, tool) for tool in body.get("tools") or []]
    tools += [(function, {}) for function in body.get("functions") or []]
    return [
        _marked(
            {
                "name": function["name"],
                "description": function.get("description", ""),
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            },
            tool,
        )
        for function, tool in tools
    ]


def to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An OpenAI chat request as an Anthropic Messages request."""
    if (body.get("n") or 1) != 1:
        raise InvalidRequest("Anthropic models support only n=1.", param="n")
    system, turns = _messages(body["messages"])
    request: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or DEFAULT_MAX_TOKENS,
    }
    if system:
        request["system"] = system
    if body.get("temperature") is not None:
        request["temperature"] = min(1.0, max(0.0, float(body["temperature"])))
    if body.get("top_p") is not None:
        request["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    tools = _tools(body)
    choice = _tool_choice(body)
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        # A forced tool whose input is the schema: Anthropic's most portable structured output.
        schema = (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
        tools.append(
            {
                "name": STRUCTURED_TOOL,
                "description": "Answer in this structure.",
                "input_schema": schema,
            }
        )
        choice = {"type": "tool", "name": STRUCTURED_TOOL}
    elif response_format.get("type") == "json_object":
        request["system"] = _with_instruction(system, "Respond with one JSON object only.")
    if tools:
        request["tools"] = tools
    if choice is not None and (tools or choice["type"] == "none"):
        request["tool_choice"] = choice
    user = body.get("user") or (body.get("metadata") or {}).get("user_id")
    if isinstance(user, str):
        request["metadata"] = {"user_id": user}
    if body.get("stream"):
        request["stream"] = True
    return request


def _with_instruction(
    system: str | list[dict[str, Any]], instruction: str
) -> str | list[dict[str, Any]]:
    if isinstance(system, list):
        return [*system, {"type": "text", "text": instruction}]
    return (system + "\n" if system else "") + instruction


def usage_of(usage: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's usage in OpenAI's shape: the prompt counts every input token, cache
    reads are `cached_tokens`, and writes `cache_creation_tokens` (split by lifetime in
    `cache_creation` when Anthropic splits them)."""
    cache_read = usage.get("cache_read_input_tokens") or 0
    cache_write = usage.get("cache_creation_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cache_read + cache_write
    result = openai_chat.usage(prompt, usage.get("output_tokens") or 0, cache_read)
    details = result["prompt_tokens_details"]
    details["cache_creation_tokens"] = cache_write
    creation = usage.get("cache_creation")
    if isinstance(creation, dict):
        details["cache_creation"] = {
            name: creation.get(name) or 0
            for name in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
        }
    return result


def from_anthropic(message: dict[str, Any], legacy: bool) -> dict[str, Any]:
    """An Anthropic Messages response as an OpenAI `chat.completion` dict."""
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            text.append(block.get("text", ""))
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
        elif kind == "tool_use" and block.get("name") == STRUCTURED_TOOL:
            text.append(orjson.dumps(block.get("input") or {}).decode())
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    finish = STOP_REASONS.get(message.get("stop_reason") or "end_turn", "stop")
    reply: dict[str, Any] = {"content": "".join(text) if text or not calls else None}
    if reasoning:
        reply["reasoning_content"] = "".join(reasoning)
    if calls and legacy:
        reply["function_call"] = calls[0]["function"]
        finish = "function_call"
    elif calls:
        reply["tool_calls"] = calls
    elif finish == "tool_calls":
        finish = "stop"  # the only tool use was the structured-output tool
    completion: dict[str, Any] = openai_chat.completion(
        message.get("model", ""),
        [openai_chat.choice(0, reply, finish)],
        usage_of(message.get("usage") or {}),
        id="chatcmpl-" + str(message.get("id", "")),
    ).data
    return completion
