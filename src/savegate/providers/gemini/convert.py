"""OpenAI chat ⇄ Gemini `generateContent`, as pure functions."""

from __future__ import annotations

from typing import Any

import orjson

from savegate.core.errors import InvalidRequest
from savegate.core.ids import tool_call_id
from savegate.providers.gemini.finish import failure, finish_reason, no_candidates
from savegate.wire import openai_chat
from savegate.wire.content import text_of


def _user_parts(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[dict[str, Any]] = []
    for part in content or []:
        if part.get("type") == "text":
            parts.append({"text": part.get("text", "")})
        elif part.get("type") == "image_url":
            image = part.get("image_url")
            url = image.get("url", "") if isinstance(image, dict) else str(image or "")
            if not url.startswith("data:"):
                raise InvalidRequest(
                    "Gemini models take images as data URIs, not links.", param="messages"
                )
            header, _, data = url.partition(",")
            mime = header.removeprefix("data:").split(";")[0] or "image/png"
            parts.append({"inline_data": {"mime_type": mime, "data": data}})
        else:
            raise InvalidRequest(
                f"Content parts of type '{part.get('type')}' are not supported by Gemini models.",
                param="messages",
            )
    return parts


def _args(raw: str) -> Any:
    try:
        return orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("Tool call arguments are not valid JSON.", param="messages") from None


def _contents(messages: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name, for functionResponse

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        elif parts:
            contents.append({"role": role, "parts": parts})

    for message in messages:
        role = message["role"]
        if role in ("system", "developer"):
            system.append(text_of(message.get("content")))
        elif role == "user":
            add("user", _user_parts(message.get("content")))
        elif role == "assistant":
            parts: list[dict[str, Any]] = []
            if text_of(message.get("content")):
                parts.append({"text": text_of(message.get("content"))})
            calls = [call.get("function") or {} for call in message.get("tool_calls") or []]
            for call in message.get("tool_calls") or []:
                names[call.get("id", "")] = (call.get("function") or {}).get("name", "")
            if message.get("function_call"):
                calls.append(message["function_call"])
            parts += [
                {"functionCall": {"name": c.get("name"), "args": _args(c.get("arguments", ""))}}
                for c in calls
            ]
            add("model", parts)
        else:
            name = message.get("name") or names.get(message.get("tool_call_id", ""), "")
            text = text_of(message.get("content"))
            try:
                response = orjson.loads(text)
            except orjson.JSONDecodeError:
                response = None
            if not isinstance(response, dict):
                response = {"content": text}
            add("user", [{"functionResponse": {"name": name, "response": response}}])
    return system, contents


def _tool_config(body: dict[str, Any]) -> dict[str, Any] | None:
    choice = body.get("tool_choice", body.get("function_call"))
    if choice is None or choice == "auto":
        return None
    if choice == "none":
        return {"functionCallingConfig": {"mode": "NONE"}}
    if choice == "required":
        return {"functionCallingConfig": {"mode": "ANY"}}
    name = (choice.get("function") or {}).get("name") or choice.get("name")
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [name]}}


def to_gemini(body: dict[str, Any]) -> dict[str, Any]:
    system, contents = _contents(body["messages"])
    request: dict[str, Any] = {"contents": contents}
    if system:
        request["systemInstruction"] = {"parts": [{"text": "\n".join(system)}]}
    functions = [tool.get("function") or {} for tool in body.get("tools") or []]
    functions += body.get("functions") or []
    if functions:
        request["tools"] = [
            {
                "functionDeclarations": [
                    {key: f[key] for key in ("name", "description", "parameters") if f.get(key)}
                    for f in functions
                ]
            }
        ]
    tool_config = _tool_config(body)
    if tool_config:
        request["toolConfig"] = tool_config
    config: dict[str, Any] = {}
    for ours, theirs in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if body.get(ours) is not None:
            config[theirs] = body[ours]
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        config["maxOutputTokens"] = max_tokens
    if (body.get("n") or 1) > 1:
        config["candidateCount"] = body["n"]
    stop = body.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = body.get("response_format") or {}
    if response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if schema:
            config["responseJsonSchema"] = schema
    if config:
        request["generationConfig"] = config
    return request


def usage_of(metadata: dict[str, Any] | None) -> dict[str, Any]:
    metadata = metadata or {}
    thoughts = metadata.get("thoughtsTokenCount") or 0
    result = openai_chat.usage(
        metadata.get("promptTokenCount") or 0,
        (metadata.get("candidatesTokenCount") or 0) + thoughts,  # thinking is billed as output
        metadata.get("cachedContentTokenCount") or 0,
    )
    result["completion_tokens_details"] = {"reasoning_tokens": thoughts}
    return result


def split_parts(parts: list[dict[str, Any]]) -> tuple[str, str, list[dict[str, Any]]]:
    """Text, thoughts and function calls (as OpenAI tool calls) of a candidate's parts."""
    text, thoughts, calls = [], [], []
    for part in parts:
        if "functionCall" in part:
            call = part["functionCall"]
            calls.append(
                {
                    "id": call.get("id") or tool_call_id(),
                    "type": "function",
                    "function": {
                        "name": call.get("name", ""),
                        "arguments": orjson.dumps(call.get("args") or {}).decode(),
                    },
                }
            )
        elif part.get("thought"):
            thoughts.append(part.get("text", ""))
        elif "text" in part:
            text.append(part["text"])
    return "".join(text), "".join(thoughts), calls


def from_gemini(response: dict[str, Any], model: str, legacy: bool) -> dict[str, Any]:
    """The OpenAI completion of a Gemini response; `ProviderError` when it holds no answer."""
    model = response.get("modelVersion") or model
    candidates = response.get("candidates") or []
    for candidate in candidates:
        if (error := failure(candidate, model)) is not None:
            raise error
    choices = []
    if not candidates:
        # Every documented blockReason means the prompt itself was blocked.
        if not (response.get("promptFeedback") or {}).get("blockReason"):
            raise no_candidates(model)
        choices.append(openai_chat.choice(0, {"content": ""}, "content_filter"))
    for position, candidate in enumerate(candidates):
        parts = (candidate.get("content") or {}).get("parts") or []
        text, thoughts, calls = split_parts(parts)
        message: dict[str, Any] = {"content": text if text or not calls else None}
        if thoughts:
            message["reasoning_content"] = thoughts
        finish = finish_reason(candidate.get("finishReason"), bool(calls))
        if calls and legacy:
            message["function_call"] = calls[0]["function"]
            finish = "function_call"
        elif calls:
            message["tool_calls"] = calls
        choices.append(openai_chat.choice(candidate.get("index", position), message, finish))
    completion: dict[str, Any] = openai_chat.completion(
        model, choices, usage_of(response.get("usageMetadata"))
    ).data
    return completion
