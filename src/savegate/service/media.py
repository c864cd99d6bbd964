"""Images, audio and moderations: routed like chat, admitted and billed by their units.

Image generation is served by every provider with the ability (OpenAI-compatible ones
pass it through, Gemini translates it); the other endpoints are passed through to
OpenAI-compatible providers as the client sent them, only `model` renamed. A model no
deployment of which can serve the endpoint (the embedded model) gets a 400 naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from savegate.core.media import MediaAnswer, MediaUse
from savegate.core.request import ChatRequest
from savegate.providers.base import ByteStream, ImageProvider, PassThroughProvider, Relayed
from savegate.routing.executor import Capability
from savegate.routing.router import Route
from savegate.service.pipeline import Pipeline, Reply
from savegate.wire import media_use
from savegate.wire.multipart import Form

IMAGES = Capability("image generation", lambda p: isinstance(p, ImageProvider))


@dataclass(frozen=True, slots=True)
class PassThrough:
    """One passed-through endpoint: its upstream path, usage-row name and ability."""

    path: str
    endpoint: str
    supports: Capability


def _passes(path: str, endpoint: str, name: str) -> PassThrough:
    return PassThrough(
        path, endpoint, Capability(name, lambda p: isinstance(p, PassThroughProvider))
    )


IMAGE_EDITS = _passes("/images/edits", "images.edits", "image edits")
IMAGE_VARIATIONS = _passes("/images/variations", "images.variations", "image variations")
TRANSCRIPTIONS = _passes("/audio/transcriptions", "audio.transcriptions", "audio transcriptions")
TRANSLATIONS = _passes("/audio/translations", "audio.translations", "audio translations")
SPEECH = _passes("/audio/speech", "audio.speech", "speech")
MODERATIONS = _passes("/moderations", "moderations", "moderations")


async def _relay(
    route: Route, request: ChatRequest, endpoint: PassThrough, form: Form | None
) -> Relayed:
    provider = route.provider
    assert isinstance(provider, PassThroughProvider)
    return await provider.relay(endpoint.path, request, route.upstream_model, form)


class MediaService:
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def generate_images(self, request: ChatRequest) -> Reply[MediaAnswer]:
        async def generate(route: Route, request: ChatRequest) -> MediaAnswer:
            provider = route.provider
            assert isinstance(provider, ImageProvider)
            body = await provider.generate_images(request, route.upstream_model)
            use = media_use.images_use(body.raw, request.body)
            return MediaAnswer(body.raw, body.content_type, use)

        bound = media_use.image_bound(request.body)
        return await self._pipeline.media(request, "images.generations", generate, IMAGES, bound)

    async def edit_images(
        self, request: ChatRequest, form: Form, endpoint: PassThrough
    ) -> Reply[MediaAnswer]:
        """`/v1/images/edits` and `/variations`."""

        async def edit(route: Route, request: ChatRequest) -> MediaAnswer:
            body = await _relay(route, request, endpoint, form)
            use = media_use.images_use(body.raw, request.body)
            return MediaAnswer(body.raw, body.content_type, use)

        bound = media_use.image_bound(request.body)
        return await self._pipeline.media(
            request, endpoint.endpoint, edit, endpoint.supports, bound
        )

    async def transcribe(
        self, request: ChatRequest, form: Form, endpoint: PassThrough
    ) -> Reply[MediaAnswer]:
        """`/v1/audio/transcriptions` and `/translations`, answered whole."""
        audio = form.file("file")
        assert audio is not None
        response_format = request.body.get("response_format") or "json"

        async def transcribe(route: Route, request: ChatRequest) -> MediaAnswer:
            body = await _relay(route, request, endpoint, form)
            use = media_use.transcription_use(body.raw, response_format, audio)
            return MediaAnswer(body.raw, body.content_type, use)

        bound = media_use.audio_bound(audio)
        return await self._pipeline.media(
            request, endpoint.endpoint, transcribe, endpoint.supports, bound
        )

    async def stream_transcription(self, request: ChatRequest, form: Form) -> Reply[ByteStream]:
        """A transcription's events relayed as the upstream sends them; billed by the
        audio's length as the file tells it."""
        audio = form.file("file")
        assert audio is not None

        async def open_stream(route: Route, request: ChatRequest) -> ByteStream:
            provider = route.provider
            assert isinstance(provider, PassThroughProvider)
            return await provider.relay_stream(
                TRANSCRIPTIONS.path, request, route.upstream_model, form
            )

        return await self._pipeline.media_stream(
            request,
            TRANSCRIPTIONS.endpoint,
            open_stream,
            TRANSCRIPTIONS.supports,
            media_use.audio_bound(audio),
            media_use.audio_estimate(audio),
        )

    async def speak(self, request: ChatRequest) -> Reply[ByteStream]:
        """The audio relayed as it arrives, billed by the input's characters."""

        async def open_stream(route: Route, request: ChatRequest) -> ByteStream:
            provider = route.provider
            assert isinstance(provider, PassThroughProvider)
            return await provider.relay_stream(SPEECH.path, request, route.upstream_model, None)

        use = media_use.speech_use(request.body)
        return await self._pipeline.media_stream(
            request, SPEECH.endpoint, open_stream, SPEECH.supports, use, use
        )

    async def moderate(self, request: ChatRequest) -> Reply[MediaAnswer]:
        async def moderate(route: Route, request: ChatRequest) -> MediaAnswer:
            body = await _relay(route, request, MODERATIONS, None)
            return MediaAnswer(body.raw, body.content_type, MediaUse())

        return await self._pipeline.media(
            request, MODERATIONS.endpoint, moderate, MODERATIONS.supports, MediaUse()
        )
