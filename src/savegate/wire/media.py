"""Validation of image, audio and moderation requests, with OpenAI's messages and params.

JSON bodies (image generation, speech, moderations) and multipart forms (transcriptions,
translations, image edits and variations) are checked whole before anything goes
upstream. A request that names no model gets OpenAI's default for the endpoint, so that
it can be routed and priced.
"""

from __future__ import annotations

from typing import Any

from savegate.core.errors import InvalidRequest
from savegate.wire.checks import (
    boolean,
    integer,
    invalid_type,
    missing,
    number,
    one_of,
    required_string,
    string,
)
from savegate.wire.multipart import Form
from savegate.wire.validate import model

DEFAULT_IMAGE_MODEL = "dall-e-2"
DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
MAX_IMAGES = 10
MAX_IMAGE_PROMPT = 32_000
MAX_SPEECH_INPUT = 4096
TRANSCRIPTION_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
SPEECH_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
_QUALITIES = ("standard", "hd", "low", "medium", "high", "auto")


def _image_options(body: dict[str, Any]) -> None:
    integer(body.get("n"), "n", 1, MAX_IMAGES)
    string(body.get("size"), "size", 32)
    one_of(body.get("quality"), "quality", _QUALITIES)
    one_of(body.get("response_format"), "response_format", ("url", "b64_json"))


def validate_image_request(body: dict[str, Any]) -> dict[str, Any]:
    """`POST /v1/images/generations`."""
    required_string(body.get("prompt"), "prompt", MAX_IMAGE_PROMPT)
    if body.get("model") is None:
        body = {**body, "model": DEFAULT_IMAGE_MODEL}
    model(body)
    _image_options(body)
    boolean(body.get("stream"), "stream")
    if body.get("stream"):
        raise InvalidRequest(
            "Streaming image generation (`stream: true`) is not supported by this gateway.",
            param="stream",
        )
    return body


def validate_speech_request(body: dict[str, Any]) -> dict[str, Any]:
    """`POST /v1/audio/speech`."""
    model(body)
    required_string(body.get("input"), "input", MAX_SPEECH_INPUT)
    voice = body.get("voice")
    if voice is None:
        raise missing("voice")
    if isinstance(voice, dict):
        required_string(voice.get("id"), "voice.id", 256)
    else:
        string(voice, "voice", 256)
    one_of(body.get("response_format"), "response_format", SPEECH_FORMATS)
    one_of(body.get("stream_format"), "stream_format", ("sse", "audio"))
    number(body.get("speed"), "speed", 0.25, 4.0)
    string(body.get("instructions"), "instructions", MAX_SPEECH_INPUT)
    return body


def validate_moderation_request(body: dict[str, Any]) -> dict[str, Any]:
    """`POST /v1/moderations`."""
    value = body.get("input")
    if value is None:
        raise missing("input")
    if not isinstance(value, str | list):
        raise invalid_type("input", "a string or an array", value)
    if body.get("model") is None:
        body = {**body, "model": DEFAULT_MODERATION_MODEL}
    model(body)
    return body


def _form_integer(form: dict[str, str], name: str, low: int, high: int) -> None:
    value = form.get(name)
    if value is None:
        return
    if not value.strip().isdigit():
        raise invalid_type(name, "an integer", value)
    integer(int(value), name, low, high)


def _form_model(form: Form, default: str | None) -> dict[str, str]:
    values = form.values()
    if not values.get("model"):
        if default is None:
            raise InvalidRequest("you must provide a model parameter", param="model")
        form.fields = [(n, v) for n, v in form.fields if n != "model"] + [("model", default)]
        values = form.values()
    return values


def validate_transcription_form(form: Form, *, translation: bool) -> dict[str, str]:
    """`POST /v1/audio/transcriptions` and `/translations`: the form's text fields."""
    if form.file("file") is None:
        raise InvalidRequest(
            "Missing required parameter: 'file' (an audio file part).",
            param="file",
            code="missing_required_parameter",
        )
    values = _form_model(form, None)
    formats = ("json", "text", "srt", "verbose_json", "vtt")
    one_of(
        values.get("response_format"),
        "response_format",
        formats if translation else TRANSCRIPTION_FORMATS,
    )
    stream = values.get("stream")
    if stream is not None:
        one_of(stream.lower(), "stream", ("true", "false"))
        if translation and stream.lower() == "true":
            raise InvalidRequest("Translations cannot be streamed.", param="stream")
    return values


def validate_image_form(form: Form, *, edit: bool) -> dict[str, str]:
    """`POST /v1/images/edits` (`edit`) and `/variations`: the form's text fields."""
    names = ("image", "image[]") if edit else ("image",)
    if form.file(*names) is None:
        raise InvalidRequest(
            "Missing required parameter: 'image' (an image file part).",
            param="image",
            code="missing_required_parameter",
        )
    values = _form_model(form, DEFAULT_IMAGE_MODEL)
    if edit:
        required_string(values.get("prompt"), "prompt", MAX_IMAGE_PROMPT)
    _form_integer(values, "n", 1, MAX_IMAGES)
    _image_options({**values, "n": None})  # checked as the text it is, above
    return values


def is_stream(values: dict[str, Any]) -> bool:
    """A form's or body's `stream`, which a form spells as text."""
    stream = values.get("stream")
    return stream is True or (isinstance(stream, str) and stream.lower() == "true")
