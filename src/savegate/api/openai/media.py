"""`/v1/images/*`, `/v1/audio/*` and `/v1/moderations`.

JSON bodies are read whole like chat's (`server.max_body_bytes`); multipart uploads are
parsed as they arrive (`api/forms.py`, before the handler), bounded by their own,
larger limits.
"""

from __future__ import annotations

from typing import Any

from savegate.api.http import HttpRequest, Response, media_response, relay_response
from savegate.core.keys import ApiKey
from savegate.core.request import ChatRequest
from savegate.service.media import (
    IMAGE_EDITS,
    IMAGE_VARIATIONS,
    TRANSCRIPTIONS,
    TRANSLATIONS,
    MediaService,
    PassThrough,
)
from savegate.wire.media import (
    is_stream,
    validate_image_form,
    validate_image_request,
    validate_moderation_request,
    validate_speech_request,
    validate_transcription_form,
)
from savegate.wire.multipart import Form
from savegate.wire.validate import parse_json_object


def _request(request: HttpRequest, parsed: dict[str, Any], body: dict[str, Any]) -> ChatRequest:
    """The neutral request: the client's bytes, with the default model spliced in where
    the validation gave one."""
    api_request = ChatRequest(parsed, request.body, request.context)
    return api_request if body is parsed else api_request.with_field("model", body["model"])


async def generate_images(request: HttpRequest, key: ApiKey, media: MediaService) -> Response:
    parsed = parse_json_object(request.body)
    body = validate_image_request(parsed)
    answer = await media.generate_images(_request(request, parsed, body))
    return media_response(answer.value, answer.headers)


async def create_speech(request: HttpRequest, key: ApiKey, media: MediaService) -> Response:
    body = validate_speech_request(parse_json_object(request.body))
    reply = await media.speak(ChatRequest(body, request.body, request.context))
    return relay_response(reply.value, reply.headers, request.request_id)


async def create_moderation(request: HttpRequest, key: ApiKey, media: MediaService) -> Response:
    parsed = parse_json_object(request.body)
    body = validate_moderation_request(parsed)
    answer = await media.moderate(_request(request, parsed, body))
    return media_response(answer.value, answer.headers)


def _form(request: HttpRequest) -> Form:
    assert request.form is not None  # the route reads it
    return request.form


async def _transcribe(request: HttpRequest, media: MediaService, endpoint: PassThrough) -> Response:
    form = _form(request)
    translation = endpoint is TRANSLATIONS
    values = validate_transcription_form(form, translation=translation)
    api_request = ChatRequest(dict(values), b"", request.context)
    if is_stream(values):
        reply = await media.stream_transcription(api_request, form)
        return relay_response(reply.value, reply.headers, request.request_id)
    answer = await media.transcribe(api_request, form, endpoint)
    return media_response(answer.value, answer.headers)


async def create_transcription(request: HttpRequest, key: ApiKey, media: MediaService) -> Response:
    return await _transcribe(request, media, TRANSCRIPTIONS)


async def create_translation(request: HttpRequest, key: ApiKey, media: MediaService) -> Response:
    return await _transcribe(request, media, TRANSLATIONS)


async def _edit(request: HttpRequest, media: MediaService, endpoint: PassThrough) -> Response:
    form = _form(request)
    values = validate_image_form(form, edit=endpoint is IMAGE_EDITS)
    answer = await media.edit_images(
        ChatRequest(dict(values), b"", request.context), form, endpoint
    )
    return media_response(answer.value, answer.headers)


async def edit_images(request: HttpRequest, key: ApiKey, media: MediaService) -> Response:
    return await _edit(request, media, IMAGE_EDITS)


async def create_image_variation(
    request: HttpRequest, key: ApiKey, media: MediaService
) -> Response:
    return await _edit(request, media, IMAGE_VARIATIONS)
