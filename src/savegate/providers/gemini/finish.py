"""Gemini's finishReason values → OpenAI finish reasons, or errors when there is no answer.

Per Google's documented FinishReason list: blocks of the output are `content_filter`;
reasons that mean the model broke down (a malformed or unexpected tool call, too many
tool calls, a malformed response, an unspecified other reason) carry no usable answer,
and a client given an empty `stop` would take it for one. They are retryable errors: the
same request often succeeds on another try or another deployment. A missing thought
signature is the conversation's fault, so retrying it cannot help.
"""

from __future__ import annotations

from typing import Any

from savegate.core.errors import ProviderError

BLOCKED = {
    "SAFETY",
    "RECITATION",
    "LANGUAGE",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "MODEL_ARMOR",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
}
FAILED = {
    "MALFORMED_FUNCTION_CALL": "generated an invalid function call",
    "UNEXPECTED_TOOL_CALL": "called a tool that was not enabled",
    "TOO_MANY_TOOL_CALLS": "called too many tools in a row",
    "MALFORMED_RESPONSE": "generated a malformed response",
    "NO_IMAGE": "generated no image",
    "IMAGE_OTHER": "stopped generating an image",
    "OTHER": "stopped for an unspecified reason",
}
MISSING_SIGNATURE = "MISSING_THOUGHT_SIGNATURE"


def finish_reason(reason: str | None, has_calls: bool) -> str:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in BLOCKED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def failure(candidate: dict[str, Any], model: str) -> ProviderError | None:
    """The error a candidate's finishReason stands for, if it is no answer."""
    reason = candidate.get("finishReason")
    detail = candidate.get("finishMessage")
    suffix = f": {detail}" if detail else "."
    if reason == MISSING_SIGNATURE:
        return ProviderError(
            f"Gemini refused the conversation ({reason}): a model turn lacks the thought "
            f"signature Gemini requires{suffix}",
            status=400,
            type="invalid_request_error",
            code="missing_thought_signature",
            param="messages",
        )
    if reason not in FAILED:
        return None
    return ProviderError(
        f"The model '{model}' {FAILED[reason]} (Gemini finishReason {reason}){suffix}",
        code=f"upstream_{reason.lower()}",
        retryable=True,
    )


def no_candidates(model: str) -> ProviderError:
    return ProviderError(
        f"The model '{model}' returned no candidates and no reason.",
        code="upstream_empty_response",
        retryable=True,
    )
