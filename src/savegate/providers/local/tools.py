"""Tool calling by grammar-constrained decoding.

A call is generated as one JSON object `{"name": …, "arguments": {…}}`. A GBNF grammar
built from the offered tools' JSON schemas makes any other output impossible, so the
name is always an offered one and the arguments always match its schema (as far as GBNF
can express it: numeric bounds are not enforced). One call per choice: a 135M model
cannot plan parallel calls usefully, so `parallel_tool_calls` changes nothing.

With `tool_choice: "auto"` the answer either opens with `<tool_call>` and continues as a
call, or is free text; the first visible character decides (text may not start with `<`).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from llama_cpp.llama_grammar import json_schema_to_gbnf

from savegate.core.errors import InvalidRequest
from savegate.providers.local.output import CallArgs, CallName, Output, Part, TextOutput

MARKER = "<tool_call>"
_BLANK = " \t\n"

Mode = Literal["none", "auto", "required"]

_NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolPlan:
    tools: tuple[Tool, ...]  # every offered tool: all are described to the model
    allowed: tuple[Tool, ...]  # those the answer may call
    mode: Mode
    legacy: bool  # `functions`/`function_call`: answer with `message.function_call`


def plan_tools(body: dict[str, Any]) -> ToolPlan | None:
    """The request's tools and tool choice, or None when it offers no tools."""
    if body.get("tools"):
        offered = tuple(_tool(item, f"tools[{i}]") for i, item in enumerate(body["tools"]))
        return _plan(offered, body.get("tool_choice"), "tool_choice", legacy=False)
    if body.get("functions"):
        offered = tuple(
            _function(item, f"functions[{i}]") for i, item in enumerate(body["functions"])
        )
        return _plan(offered, body.get("function_call"), "function_call", legacy=True)
    for param in ("tool_choice", "function_call"):
        choice = body.get(param)
        if choice == "required" or isinstance(choice, dict):
            raise InvalidRequest(
                f"Invalid value for '{param}': '{param}' is only allowed when tools are given.",
                param=param,
            )
    return None


def _tool(item: Any, where: str) -> Tool:
    if not isinstance(item, dict):
        raise InvalidRequest(f"Invalid type for '{where}': expected an object.", param=where)
    if item.get("type", "function") != "function":
        raise InvalidRequest(
            f"Only function tools are supported by this model, not {item.get('type')!r}.",
            param=f"{where}.type",
        )
    return _function(item.get("function"), f"{where}.function")


def _function(function: Any, where: str) -> Tool:
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise InvalidRequest(f"Missing required parameter: '{where}.name'.", param=f"{where}.name")
    parameters = function.get("parameters") or _NO_PARAMETERS
    if not isinstance(parameters, dict):
        raise InvalidRequest(
            f"Invalid type for '{where}.parameters': expected an object.",
            param=f"{where}.parameters",
        )
    return Tool(function["name"], str(function.get("description") or ""), parameters)


def _plan(offered: tuple[Tool, ...], choice: Any, param: str, *, legacy: bool) -> ToolPlan:
    if choice is None or choice == "auto":
        return ToolPlan(offered, offered, "auto", legacy)
    if choice == "none":
        return ToolPlan(offered, (), "none", legacy)
    if choice == "required" and not legacy:
        return ToolPlan(offered, offered, "required", legacy)
    if isinstance(choice, dict):
        if choice.get("type") == "allowed_tools" and not legacy:
            spec = choice.get("allowed_tools") or {}
            mode = spec.get("mode")
            names = [_chosen_name(item) for item in spec.get("tools") or []]
            if mode in ("auto", "required") and names:
                allowed = tuple(_lookup(offered, name, param) for name in names)
                return ToolPlan(offered, allowed, mode, legacy)
        elif (name := _chosen_name(choice)) is not None:
            return ToolPlan(offered, (_lookup(offered, name, param),), "required", legacy)
    raise InvalidRequest(f"Invalid value for '{param}': {json.dumps(choice)}.", param=param)


def _chosen_name(choice: Any) -> str | None:
    """The name in `{"type": "function", "function": {"name": …}}` or legacy `{"name": …}`."""
    if not isinstance(choice, dict):
        return None
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    return name if isinstance(name, str) else None


def _lookup(offered: tuple[Tool, ...], name: str | None, param: str) -> Tool:
    for tool in offered:
        if tool.name == name:
            return tool
    raise InvalidRequest(
        f"Invalid value for '{param}': no function named {name!r} was offered.", param=param
    )


# --- what the model reads --------------------------------------------------------------


def describe(plan: ToolPlan) -> str:
    """A system-message text presenting the tools and how to call them."""
    lines = ["You can use these tools (arguments are given as JSON schemas):"]
    lines += [
        json.dumps(
            {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
            ensure_ascii=False,
        )
        for tool in plan.tools
    ]
    shape = '{"name": <tool name>, "arguments": <arguments object>}'
    if plan.mode == "none":
        lines.append("Do not call a tool now: answer in plain text.")
    elif plan.mode == "required":
        which = f"the tool {plan.allowed[0].name}" if len(plan.allowed) == 1 else "a tool"
        lines.append(f"Call {which} now: reply with only a JSON object {shape}.")
    else:
        lines.append(
            f"To call a tool, reply with {MARKER} followed by a JSON object {shape} and "
            "nothing else. Otherwise answer in plain text."
        )
    return "\n".join(lines)


def render_call(name: str, arguments: str) -> str:
    """An earlier call, written in the form the model is asked to use."""
    try:
        parsed: Any = json.loads(arguments) if arguments else {}
    except ValueError:
        parsed = arguments
    return MARKER + json.dumps({"name": name, "arguments": parsed}, ensure_ascii=False)


# --- grammars --------------------------------------------------------------------------

_ROOT_RULE = re.compile(r"^root ::=", re.MULTILINE)
_CHAR_RULE = re.compile(r"^char ::= .*$", re.MULTILINE)
# The converter's `char` lets raw control characters into strings, which is not JSON.
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'

# Auto mode, first tokens: blanks, then either the `<` that opens the marker (and nothing
# more, so the decision is made on that token) or any text that does not start with `<`.
AUTO_OPENING = 'root ::= [ \\t\\n]* ("<" | [^< \\t\\n] .*)?'


@dataclass(frozen=True, slots=True)
class Branching:
    """Auto mode: what to constrain once the opening tokens have chosen call or text."""

    call_grammar: str  # the rest of the marker, then the call

    def decide(self, generated: bytes) -> tuple[bool, str | None]:
        """(decided, grammar from here on): undecided while only blanks were generated."""
        head = generated.lstrip(_BLANK.encode())
        if not head:
            return False, None
        return True, self.call_grammar if head.startswith(b"<") else None


def _call_rules(tools: tuple[Tool, ...]) -> str:
    """GBNF rules whose `tool-call` rule is one call of one of `tools`, name first."""
    defs: dict[str, Any] = {}
    alternatives = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.name},
                "arguments": _hoist_refs(tool.parameters, f"tool{i}", defs),
            },
            "required": ["name", "arguments"],
        }
        for i, tool in enumerate(tools)
    ]
    schema: dict[str, Any] = {"oneOf": alternatives}
    if defs:
        schema["$defs"] = defs
    try:
        rules = json_schema_to_gbnf(json.dumps(schema), prop_order=["name", "arguments"])
    except Exception as exc:  # the converter asserts on schemas it cannot express
        raise InvalidRequest(
            f"A tool's parameters schema is not supported by this model: {exc}", param="tools"
        ) from exc
    rules = _ROOT_RULE.sub("tool-call ::=", rules)
    return _CHAR_RULE.sub(lambda _: _JSON_CHAR, rules)


def _hoist_refs(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """A copy of `schema` whose local `$ref`s point into the shared top-level `defs`.

    Each tool's schema becomes a branch of one big schema, so its `#/…` references
    would resolve against the wrong root; and the converter names rules after the
    last path segment, so every target gets a name unique to its tool.
    """
    schema = copy.deepcopy(schema)
    pointers: dict[str, str] = {}

    def walk(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                if not ref.startswith("#"):
                    raise InvalidRequest(
                        f"Only local $ref values are supported in tool schemas, not {ref!r}.",
                        param="tools",
                    )
                name = prefix + re.sub(r"[^A-Za-z0-9]+", "-", ref[1:])
                pointers[name] = ref[1:]
                node["$ref"] = f"#/$defs/{name}"
            for value in node.values():
                walk(value)

    walk(schema)
    for name, pointer in pointers.items():
        target: Any = schema
        for step in filter(None, pointer.split("/")):
            step = step.replace("~1", "/").replace("~0", "~")
            if isinstance(target, list) and step.isdigit() and int(step) < len(target):
                target = target[int(step)]
            elif isinstance(target, dict) and step in target:
                target = target[step]
            else:
                raise InvalidRequest(
                    f"Cannot resolve $ref '#{pointer}' in a tool schema.", param="tools"
                )
        defs[name] = target
    return schema


def grammar_for(plan: ToolPlan | None) -> tuple[str | None, Branching | None]:
    """The grammar to start generating with, and how auto mode switches after it."""
    if plan is None or plan.mode == "none":
        return None, None
    rules = _call_rules(plan.allowed)
    if plan.mode == "required":
        return f"root ::= tool-call\n{rules}", None
    call = f'root ::= "{MARKER[1:]}" [ \\n]? tool-call\n{rules}'
    return AUTO_OPENING, Branching(call)


def output_for(plan: ToolPlan | None, stops: tuple[str, ...]) -> Output:
    if plan is None or plan.mode == "none":
        return TextOutput(stops)
    if plan.mode == "required":
        return ToolCallParser()
    return AutoOutput(stops)


# --- reading the generated call ----------------------------------------------------------


class ToolCallParser:
    """Reads the generated call object as it grows: the name as soon as its string
    closes, then the arguments' raw JSON fragment by fragment; done when the object
    closes. The grammar guarantees well-formed JSON with the name first."""

    __slots__ = (
        "_depth",
        "_escaped",
        "_in_args",
        "_in_string",
        "_key",
        "_last",
        "_named",
        "_string",
        "done",
    )

    def __init__(self) -> None:
        self.done = False
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._string: list[str] = []  # the top-level string being read
        self._last: str | None = None  # the last top-level string, decoded
        self._key: str | None = None  # the top-level key whose value is being read
        self._named = False
        self._in_args = False

    def feed(self, text: str) -> list[Part]:
        parts: list[Part] = []
        args: list[str] = []
        for char in text:
            if self.done:
                break
            if self._in_args:
                args.append(char)
            if self._in_string:
                self._read_string(char, parts)
            elif char == '"':
                self._in_string = True
                self._string = [char]
            elif char in "{[":
                if self._depth == 1 and self._key == "arguments":
                    self._in_args = True
                    args.append(char)
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                self._in_args = self._in_args and self._depth > 1
                self.done = self._depth == 0
            elif self._depth == 1 and char == ":":
                self._key = self._last
            elif self._depth == 1 and char == ",":
                self._key = None
        if args:
            parts.append(CallArgs("".join(args)))
        return parts

    def _read_string(self, char: str, parts: list[Part]) -> None:
        self._string.append(char)
        if self._escaped:
            self._escaped = False
        elif char == "\\":
            self._escaped = True
        elif char == '"':
            self._in_string = False
            if self._depth == 1:
                self._last = json.loads("".join(self._string))
                if self._key == "name" and not self._named:
                    self._named = True
                    parts.append(CallName(self._last))

    def flush(self) -> list[Part]:
        return []


class AutoOutput:
    """Auto tool choice: a call when the answer opens with the marker, else text."""

    __slots__ = ("_inner", "_pending", "_stops")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._pending = ""
        self._inner: Output | None = None

    @property
    def done(self) -> bool:
        return self._inner is not None and self._inner.done

    def feed(self, text: str) -> list[Part]:
        if self._inner is not None:
            return self._inner.feed(text)
        self._pending += text
        head = self._pending.lstrip(_BLANK)
        if not head or (len(head) < len(MARKER) and MARKER.startswith(head)):
            return []
        if head.startswith(MARKER):
            self._inner, rest = ToolCallParser(), head[len(MARKER) :]
        else:
            self._inner, rest = TextOutput(self._stops), self._pending
        self._pending = ""
        return self._inner.feed(rest)

    def flush(self) -> list[Part]:
        return self._inner.flush() if self._inner is not None else []
