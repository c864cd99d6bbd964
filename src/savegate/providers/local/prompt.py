"""The prompt: OpenAI messages rendered with the model's own chat template.

Small chat templates know only plain `system`/`user`/`assistant` text, so everything
else is turned into such text first: content parts, developer messages, earlier tool
calls and their results, and the description of the offered tools.
"""

from __future__ import annotations

from typing import Any

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from savegate.providers.local.tools import render_call

# For GGUF files without a template of their own.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_OMITTED = {
    "image_url": "[an image was attached here; this model cannot see images]",
    "input_audio": "[an audio clip was attached here; this model cannot hear audio]",
}


class PromptBuilder:
    def __init__(self, template: str | None, *, bos_token: str, eos_token: str) -> None:
        self._formatter = Jinja2ChatFormatter(
            template or CHATML, eos_token=eos_token, bos_token=bos_token
        )

    def render(self, messages: list[dict[str, Any]], system_note: str | None = None) -> str:
        # llama-cpp types its messages as TypedDicts; ours are the same plain dicts.
        plain: Any = plain_messages(messages, system_note)
        return self._formatter(messages=plain).prompt


def plain_messages(
    messages: list[dict[str, Any]], system_note: str | None = None
) -> list[dict[str, Any]]:
    """The conversation as plain-text system/user/assistant messages; `system_note`
    joins the leading system message (or becomes one)."""
    tool_names: dict[str, str] = {}  # call id → function name, to label tool results
    plain: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        content = _text(message.get("content"))
        if role in ("system", "developer"):
            plain.append({"role": "system", "content": content})
        elif role == "assistant":
            pieces = [content or _text(message.get("refusal"))]
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                name = str(function.get("name", ""))
                tool_names[str(call.get("id"))] = name
                pieces.append(render_call(name, str(function.get("arguments") or "")))
            if function_call := message.get("function_call"):
                pieces.append(
                    render_call(
                        str(function_call.get("name", "")),
                        str(function_call.get("arguments") or ""),
                    )
                )
            plain.append({"role": "assistant", "content": "\n".join(p for p in pieces if p)})
        elif role in ("tool", "function"):
            tool = (
                tool_names.get(str(message.get("tool_call_id")))
                if role == "tool"
                else message.get("name")
            )
            label = f"Result of the tool {tool}:" if tool else "Tool result:"
            plain.append({"role": "user", "content": f"{label}\n{content}"})
        else:
            plain.append({"role": "user", "content": content})
    if system_note:
        if plain and plain[0]["role"] == "system":
            plain[0] = {"role": "system", "content": f"{plain[0]['content']}\n\n{system_note}"}
        else:
            plain.insert(0, {"role": "system", "content": system_note})
    return plain


def _text(content: Any) -> str:
    """Message content as text: parts joined, non-text parts replaced by a short note."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    pieces: list[str] = []
    for part in content if isinstance(content, list) else [content]:
        if not isinstance(part, dict):
            pieces.append(str(part))
            continue
        kind = part.get("type")
        if kind in ("text", "refusal"):
            pieces.append(str(part.get(kind) or ""))
        elif kind == "file":
            filename = (part.get("file") or {}).get("filename") or "a file"
            pieces.append(f"[{filename} was attached here; this model cannot read files]")
        else:
            pieces.append(_OMITTED.get(str(kind), f"[{kind} content omitted]"))
    return "\n".join(pieces)
