"""One choice of the answer in OpenAI shapes: a whole message, or stream chunks.

Both are built from the same parts, so a streamed tool call's argument fragments join
into exactly the arguments of the non-streamed answer.
"""

from __future__ import annotations

from typing import Any

from savegate.core.ids import tool_call_id
from savegate.core.payload import Json
from savegate.providers.local.output import CallArgs, CallName, Part, Text
from savegate.providers.local.tools import ToolPlan
from savegate.wire.openai_chat import ChunkBuilder, choice


def _finish_reason(reason: str, called: bool, plan: ToolPlan | None) -> str:
    if called and reason == "stop":
        return "function_call" if plan is not None and plan.legacy else "tool_calls"
    return reason


class ChoiceAnswer:
    """Collects the parts of one choice for a non-streaming answer."""

    def __init__(self, index: int, plan: ToolPlan | None) -> None:
        self._index = index
        self._plan = plan
        self._text: list[str] = []
        self._name: str | None = None
        self._args: list[str] = []

    def add(self, part: Part) -> None:
        if isinstance(part, Text):
            self._text.append(part.text)
        elif isinstance(part, CallName):
            self._name = part.name
        else:
            self._args.append(part.fragment)

    def choice(self, reason: str) -> dict[str, Any]:
        message: dict[str, Any]
        if self._name is None:
            forced = self._plan is not None and self._plan.mode == "required"
            # A forced call cut short before its name is no text answer either.
            text = "".join(self._text)
            message = {"content": None if forced and not text else text}
        else:
            call = {"name": self._name, "arguments": "".join(self._args)}
            if self._plan is not None and self._plan.legacy:
                message = {"function_call": call}
            else:
                message = {
                    "tool_calls": [{"id": tool_call_id(), "type": "function", "function": call}]
                }
        return choice(
            self._index, message, _finish_reason(reason, self._name is not None, self._plan)
        )


class ChoiceChunks:
    """Translates the parts of one choice into `chat.completion.chunk` payloads.

    The role chunk says `content: ""` for text and `content: null` for a call, so with
    `tool_choice: "auto"` it waits for the first part; otherwise it goes out at once.
    """

    def __init__(self, builder: ChunkBuilder, index: int, plan: ToolPlan | None) -> None:
        self._builder = builder
        self._index = index
        self._plan = plan
        self._legacy = plan is not None and plan.legacy
        self._role_sent = False
        self._called = False
        self._call_id = tool_call_id()

    def opening(self) -> list[Json]:
        if self._plan is not None and self._plan.mode == "auto":
            return []
        return [self._role(call=self._plan is not None and self._plan.mode == "required")]

    def part(self, part: Part) -> list[Json]:
        chunks = [] if self._role_sent else [self._role(call=not isinstance(part, Text))]
        if isinstance(part, Text):
            chunks.append(self._chunk({"content": part.text}))
        elif isinstance(part, CallName):
            self._called = True
            chunks.append(self._call_delta({"name": part.name, "arguments": ""}, first=True))
        elif isinstance(part, CallArgs):
            chunks.append(self._call_delta({"arguments": part.fragment}, first=False))
        return chunks

    def finish(self, reason: str) -> list[Json]:
        chunks = [] if self._role_sent else [self._role(call=False)]
        chunks.append(self._chunk({}, _finish_reason(reason, self._called, self._plan)))
        return chunks

    def _role(self, *, call: bool) -> Json:
        self._role_sent = True
        return self._chunk({"role": "assistant", "content": None if call else ""})

    def _call_delta(self, function: dict[str, str], *, first: bool) -> Json:
        if self._legacy:
            return self._chunk({"function_call": function})
        # id, type and name go out once only: client stream helpers concatenate repeats.
        call: dict[str, Any] = {"index": 0}
        if first:
            call |= {"id": self._call_id, "type": "function"}
        call["function"] = function
        return self._chunk({"tool_calls": [call]})

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> Json:
        return self._builder.chunk(self._index, delta, finish_reason)
