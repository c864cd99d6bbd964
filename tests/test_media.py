"""Images, audio and moderations through the gateway, driven by the OpenAI SDK's own
methods against the fake upstream (OpenAI's wire formats) and the fake Gemini, with the
usage rows and costs each call leaves."""

from __future__ import annotations

import base64
import io
import os
import struct
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Service, start_gateway, start_process, stop
from tests.fakes.media import PNG_B64, png

LIMIT = 256 * 1024  # the audio and image upload limits of this gateway


def wav(seconds: float, rate: int = 8000) -> bytes:
    """A real WAV file: 16-bit mono silence."""
    data = b"\x00\x00" * int(seconds * rate)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


MP3 = b"ID3\x04" + bytes(range(256)) * 64  # not real audio: its length is not in it


class Media:
    def __init__(self, service: Service, fake: Service) -> None:
        self.service, self.fake = service, fake

    def admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.service.keys['admin']}"}
        return httpx.request(method, self.service.url + path, headers=headers, timeout=30, **kwargs)

    def new_key(self, **settings) -> tuple[str, openai.OpenAI]:
        response = self.admin("POST", "/admin/keys", json={"name": "media", **settings})
        assert response.status_code == 201, response.text
        return response.json()["id"], self.client(response.json()["secret"])

    def client(self, secret: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            api_key=secret or self.service.key, base_url=self.service.base_url, max_retries=0
        )

    def rows(self, key_id: str, count: int = 1) -> list[dict]:
        """The key's usage rows, oldest first, once `count` of them are written."""
        deadline = time.monotonic() + 20
        while True:
            response = self.admin("GET", "/admin/usage/requests", params={"key_id": key_id})
            rows = response.json()["data"]
            if len(rows) >= count or time.monotonic() > deadline:
                return rows[::-1]
            time.sleep(0.05)

    def upstream(self, path: str) -> dict:
        """The last request the fake upstream received at `path`."""
        requests = httpx.get(self.fake.url + "/_log").json()["requests"]
        return [r for r in requests if r["path"].endswith(path)][-1]

    def completed(self) -> list[str]:
        return httpx.get(self.fake.url + "/_log").json()["completed"]

    def release(self) -> None:
        httpx.get(self.fake.url + "/_release")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory, fake_upstream: Service) -> Iterator[Media]:
    os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-fake-upstream-key")
    config = {
        "usage": {"flush_seconds": 0.1},
        "server": {"max_audio_body_bytes": LIMIT, "max_image_body_bytes": LIMIT},
        "providers": {
            "google": {
                "type": "gemini",
                "base_url": fake_upstream.base_url + "beta",
                "models": ["gemini-*"],
            },
            "fake": {
                "base_url": fake_upstream.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                # Not `*`: the config is written with sorted keys, and wildcards match
                # in configuration order.
                "models": [
                    {"name": "my-whisper", "upstream": "whisper-1"},
                    *("dall-e-*", "gpt-image-*", "whisper-1", "gpt-4o-*", "tts-*"),
                    *("omni-moderation-*", "status-*"),
                ],
            },
        },
        "models": {
            "flaky-images": {
                "deployments": [{"provider": "fake", "model": "status-503"}],
                "fallbacks": ["gpt-image-1"],
            }
        },
        "routing": {"backoff_seconds": 0},
    }
    service = start_gateway(tmp_path_factory.mktemp("media"), config)
    yield Media(service, fake_upstream)
    stop(service.process)


# --- images ----------------------------------------------------------------------------


def test_images_generate_urls_at_their_price(media: Media):
    key_id, client = media.new_key()
    result = client.images.generate(
        model="dall-e-3", prompt="an otter", n=2, size="1024x1792", quality="hd"
    )
    assert [image.url for image in result.data] == [
        "https://images.example/fake-0.png",
        "https://images.example/fake-1.png",
    ]
    sent = media.upstream("/images/generations")
    assert sent["body"] == {
        "model": "dall-e-3",
        "prompt": "an otter",
        "n": 2,
        "size": "1024x1792",
        "quality": "hd",
    }
    assert sent["headers"]["authorization"] == "Bearer sk-fake-upstream-key"
    (row,) = media.rows(key_id)
    assert row["endpoint"] == "images.generations"
    assert (row["unit"], row["units"]) == ("image", 2)
    assert row["cost_usd"] == pytest.approx(2 * 0.12)
    assert row["status"] == 200


def test_images_generate_b64_json_and_the_default_model(media: Media):
    key_id, client = media.new_key()
    result = client.images.generate(prompt="an otter", response_format="b64_json")
    assert base64.b64decode(result.data[0].b64_json) == png()
    assert result.data[0].revised_prompt == "an otter"
    assert media.upstream("/images/generations")["body"]["model"] == "dall-e-2"  # OpenAI's
    (row,) = media.rows(key_id)
    assert row["requested_model"] == "dall-e-2"
    assert row["cost_usd"] == pytest.approx(0.02)  # dall-e-2 has one quality; 1024x1024 dearest


def test_gpt_image_is_priced_by_the_quality_and_size_it_reports(media: Media):
    key_id, client = media.new_key()
    result = client.images.generate(model="gpt-image-1", prompt="an otter", quality="low")
    assert result.quality == "low" and result.size == "1024x1024"
    assert result.usage is not None and result.usage.total_tokens == 100
    (row,) = media.rows(key_id)
    assert row["cost_usd"] == pytest.approx(0.011)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (50, 50)


def test_gemini_image_model(media: Media):
    key_id, client = media.new_key()
    result = client.images.generate(
        model="gemini-2.5-flash-image", prompt="an otter", n=2, size="1536x1024"
    )
    assert [image.b64_json for image in result.data] == [PNG_B64, PNG_B64]
    sent = media.upstream(":generateContent")
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash-image:generateContent"
    assert sent["body"] == {
        "contents": [{"role": "user", "parts": [{"text": "an otter"}]}],
        "generationConfig": {
            "responseModalities": ["IMAGE"],
            "imageConfig": {"aspectRatio": "3:2"},
        },
    }
    as_url = client.images.generate(
        model="gemini-2.5-flash-image", prompt="an otter", response_format="url"
    )
    assert as_url.data[0].url == f"data:image/png;base64,{PNG_B64}"
    first, second = media.rows(key_id, 2)
    assert (first["provider"], first["units"]) == ("google", 2)
    assert first["cost_usd"] == pytest.approx(2 * 0.039)
    assert (first["prompt_tokens"], first["completion_tokens"]) == (18, 2580)
    assert second["cost_usd"] == pytest.approx(0.039)


def test_gemini_refusing_to_draw_is_a_400(media: Media):
    with pytest.raises(openai.BadRequestError) as caught:
        media.client().images.generate(model="gemini-2.5-flash-image-blocked", prompt="x")
    assert caught.value.code == "content_policy_violation"


def test_images_fall_back_like_chat(media: Media):
    key_id, client = media.new_key()
    result = client.images.generate(model="flaky-images", prompt="an otter")
    assert result.data[0].b64_json == PNG_B64
    failed, served = media.rows(key_id, 2)
    assert (failed["model"], failed["status"], failed["cost_usd"]) == ("status-503", 503, 0.0)
    assert (served["model"], served["status"], served["units"]) == ("gpt-image-1", 200, 1)


def test_images_edit_and_variation_pass_the_upload_through(media: Media):
    key_id, client = media.new_key()
    picture = png(64)
    edited = client.images.edit(
        model="gpt-image-1",
        image=[("a.png", picture, "image/png"), ("b.png", picture[:100], "image/png")],
        prompt="add a hat",
        quality="medium",
        size="1024x1536",
    )
    assert edited.data[0].b64_json == PNG_B64
    sent = media.upstream("/images/edits")
    assert sent["headers"]["content-type"].startswith("multipart/form-data; boundary=savegate-")
    assert sent["body"]["prompt"] == "add a hat" and sent["body"]["model"] == "gpt-image-1"
    assert sent["files"]["image[]"]["size"] == 100  # the last of the two parts named so
    varied = client.images.create_variation(image=("a.png", picture, "image/png"), n=3)
    assert len(varied.data) == 3
    sent = media.upstream("/images/variations")
    assert sent["files"]["image"] == {
        "filename": "a.png",
        "content_type": "image/png",
        "size": len(picture),
        "head": picture[:16].hex(),
    }
    assert sent["body"]["model"] == "dall-e-2" and sent["body"]["n"] == "3"
    edit, variation = media.rows(key_id, 2)
    assert (edit["endpoint"], edit["cost_usd"]) == ("images.edits", pytest.approx(0.063))
    assert variation["endpoint"] == "images.variations"
    assert variation["cost_usd"] == pytest.approx(3 * 0.02)


# --- audio -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response_format", "seconds", "estimated"),
    [
        ("json", 9, False),  # the answer's usage says 9 s
        ("verbose_json", 8.470000267028809, False),  # its duration
        ("text", 2.0, False),  # the WAV header says 2 s
        ("srt", 8.47, True),  # the last cue's end (the file says nothing)
        ("vtt", 8.47, True),
    ],
)
def test_transcription_in_each_format(media: Media, response_format, seconds, estimated):
    key_id, client = media.new_key()
    audio = (
        ("speech.wav", wav(2.0), "audio/wav")
        if response_format == "text"
        else (
            "speech.mp3",
            MP3,
            "audio/mpeg",
        )
    )
    result = client.audio.transcriptions.create(
        model="whisper-1", file=audio, response_format=response_format
    )
    if response_format == "json":
        assert result.text.startswith("The beach was a popular spot")
    elif response_format == "verbose_json":
        assert result.duration == pytest.approx(8.47) and len(result.segments) == 2
    elif response_format == "text":
        assert result == "The beach was a popular spot on a hot summer day.\n"
    else:
        assert "00:00:03" in result and "People were swimming" in result
    sent = media.upstream("/audio/transcriptions")
    assert sent["files"]["file"]["size"] == len(audio[1])
    assert sent["files"]["file"]["head"] == audio[1][:16].hex()
    (row,) = media.rows(key_id)
    assert row["endpoint"] == "audio.transcriptions"
    assert (row["unit"], row["units"]) == ("second", pytest.approx(seconds))
    assert row["cost_usd"] == pytest.approx(seconds / 60 * 0.006)
    assert row["estimated"] is estimated


def test_transcription_tokens_and_a_renamed_model(media: Media):
    key_id, client = media.new_key()
    result = client.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe",
        file=("speech.wav", wav(30.0, rate=2000), "audio/wav"),
        timestamp_granularities=["word", "segment"],
    )
    assert result.usage is not None and result.usage.type == "tokens"
    sent = media.upstream("/audio/transcriptions")
    assert sent["body"]["timestamp_granularities[]"] == ["word", "segment"]
    client.audio.transcriptions.create(model="my-whisper", file=("a.mp3", MP3, "audio/mpeg"))
    assert media.upstream("/audio/transcriptions")["body"]["model"] == "whisper-1"
    tokens, renamed = media.rows(key_id, 2)
    assert (tokens["prompt_tokens"], tokens["completion_tokens"]) == (14, 45)
    assert tokens["units"] == pytest.approx(30.0) and tokens["estimated"] is False
    assert tokens["cost_usd"] == pytest.approx(0.5 * 0.003)
    assert (renamed["requested_model"], renamed["model"]) == ("my-whisper", "whisper-1")


def test_transcription_stream_is_relayed_as_it_comes(media: Media):
    key_id, client = media.new_key()
    stream = client.audio.transcriptions.create(
        model="gpt-4o-transcribe-hold", file=("a.wav", wav(4.0), "audio/wav"), stream=True
    )
    events = iter(stream)
    first = next(events)
    # The fake holds the rest until it is released: the first event came on its own.
    assert "gpt-4o-transcribe-hold" not in media.completed()
    media.release()
    rest = list(events)
    assert (first.type, first.delta) == ("transcript.text.delta", "The")
    assert [event.type for event in rest] == ["transcript.text.delta"] * 2 + [
        "transcript.text.done"
    ]
    assert rest[-1].text == "The beach was a popular spot on a hot summer day."
    (row,) = media.rows(key_id)
    assert row["stream"] is True and row["units"] == pytest.approx(4.0)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (14, 45)  # from the done event
    assert row["cost_usd"] == pytest.approx(4 / 60 * 0.006)


def test_translation(media: Media):
    key_id, client = media.new_key()
    result = client.audio.translations.create(
        model="whisper-1", file=("a.wav", wav(1.5), "audio/wav")
    )
    assert result.text.startswith("The beach")
    text = client.audio.translations.create(
        model="whisper-1", file=("a.wav", wav(1.5), "audio/wav"), response_format="text"
    )
    assert text == "The beach was a popular spot on a hot summer day.\n"
    first, second = media.rows(key_id, 2)
    assert first["endpoint"] == "audio.translations" and first["units"] == 9  # usage: 9 s
    assert second["units"] == pytest.approx(1.5)


def test_speech_is_relayed_as_it_arrives(media: Media):
    key_id, client = media.new_key()
    text = "The quick brown fox jumped over the lazy dog."
    with client.audio.speech.with_streaming_response.create(
        model="tts-1-hold", voice="alloy", input=text, response_format="opus"
    ) as response:
        assert response.headers["content-type"] == "audio/opus"
        assert response.headers.get("transfer-encoding") == "chunked"
        reads = response.iter_bytes()
        first = next(reads)
        # The upstream has sent one chunk and waits: what came was not buffered whole.
        assert "tts-1-hold" not in media.completed()
        media.release()
        audio = first + b"".join(reads)
    assert audio == b"".join(bytes([i]) * 16384 for i in range(4))
    assert media.upstream("/audio/speech")["body"]["input"] == text
    (row,) = media.rows(key_id)
    assert row["endpoint"] == "audio.speech"
    assert (row["unit"], row["units"]) == ("character", len(text))
    assert row["cost_usd"] == pytest.approx(len(text) * 15 / 1e6)


def test_speech_left_early_is_billed_and_marked(media: Media):
    key_id, client = media.new_key()
    with client.audio.speech.with_streaming_response.create(
        model="tts-1-hold", voice="alloy", input="Hello"
    ) as response:
        next(response.iter_bytes())
    media.release()  # the fake's held stream goes on, to a closed connection
    (row,) = media.rows(key_id)
    assert (row["status"], row["client_disconnected"]) == (499, True)
    assert row["units"] == 5 and row["cost_usd"] == pytest.approx(5 * 15 / 1e6)


def test_speech_whole_with_the_sdk(media: Media):
    speech = media.client().audio.speech.create(model="tts-1", voice="alloy", input="hi")
    assert speech.content == b"".join(bytes([i]) * 16384 for i in range(4))
    assert speech.response.headers["content-type"] == "audio/mpeg"


# --- moderations ---------------------------------------------------------------------


def test_moderations(media: Media):
    key_id, client = media.new_key()
    result = client.moderations.create(input=["I will hurt you", "hello"])
    assert len(result.results) == 2 and result.results[0].flagged
    assert result.results[0].categories.violence is True
    assert result.model == "omni-moderation-latest"
    assert media.upstream("/moderations")["body"]["model"] == "omni-moderation-latest"
    (row,) = media.rows(key_id)
    assert (row["endpoint"], row["cost_usd"], row["status"]) == ("moderations", 0.0, 200)


# --- limits and bad input ----------------------------------------------------------------


def test_a_hard_budget_holds_for_images(media: Media):
    _, client = media.new_key(monthly_budget_usd=0.1, budget_mode="hard")
    with pytest.raises(openai.RateLimitError) as caught:  # 2 x $0.08 reserved: over $0.10
        client.images.generate(model="dall-e-3", prompt="too dear", n=2, quality="hd")
    assert caught.value.code == "insufficient_quota"
    assert media.upstream("/images/generations")["body"]["prompt"] != "too dear"
    client.images.generate(model="dall-e-3", prompt="one", size="1024x1024", quality="hd")
    with pytest.raises(openai.RateLimitError):  # $0.02 left
        client.images.generate(model="dall-e-3", prompt="two", size="1024x1024", quality="hd")


def test_a_hard_budget_holds_for_speech_and_audio(media: Media):
    _, client = media.new_key(monthly_budget_usd=0.001, budget_mode="hard")
    with pytest.raises(openai.RateLimitError):  # 4,096 characters at $30 / 1M: $0.12
        client.audio.speech.create(model="tts-1-hd", voice="alloy", input="x" * 4096)
    client.audio.speech.create(model="tts-1-hd", voice="alloy", input="x" * 10)
    with pytest.raises(openai.RateLimitError):  # 200 KB of unknown audio: at most 200 s
        client.audio.transcriptions.create(model="whisper-1", file=("a.mp3", MP3[:200_000]))
    client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav(1.0)))


def test_the_embedded_model_has_no_such_ability(media: Media):
    client = media.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.generate(model="SmolLM2-135M-Instruct", prompt="x")
    assert "does not support image generation" in caught.value.message
    assert caught.value.param == "model"
    with pytest.raises(openai.BadRequestError, match="does not support audio transcriptions"):
        client.audio.transcriptions.create(model="SmolLM2-135M-Instruct", file=("a.wav", wav(1)))
    with pytest.raises(openai.BadRequestError, match="does not support speech"):
        client.audio.speech.create(model="SmolLM2-135M-Instruct", voice="alloy", input="x")
    with pytest.raises(openai.BadRequestError, match="does not support moderations"):
        client.moderations.create(model="gemini-2.5-flash", input="x")


def _post(media: Media, path: str, **kwargs) -> httpx.Response:
    headers = {"Authorization": f"Bearer {media.service.key}", **kwargs.pop("headers", {})}
    return httpx.post(media.service.base_url + path, headers=headers, timeout=30, **kwargs)


@pytest.mark.parametrize(
    ("path", "request_kwargs", "status", "param"),
    [
        (
            "/audio/transcriptions",
            {"data": {"model": "whisper-1"}, "files": {"x": "y"}},
            400,
            "file",
        ),
        ("/audio/transcriptions", {"files": {"file": ("a.wav", b"RIFF")}}, 400, "model"),
        ("/audio/transcriptions", {"json": {"model": "whisper-1"}}, 400, None),
        (
            "/audio/transcriptions",
            {"data": {"model": "whisper-1"}, "files": {"file": ("a.mp3", b"x" * (LIMIT + 1))}},
            413,
            None,
        ),
        (
            "/audio/transcriptions",
            {"data": {"model": "w", "response_format": "mp3"}, "files": {"file": ("a", b"x")}},
            400,
            "response_format",
        ),
        (
            "/audio/translations",
            {"data": {"model": "w", "stream": "true"}, "files": {"file": ("a", b"x")}},
            400,
            "stream",
        ),
        (
            "/images/edits",
            {"data": {"prompt": "p"}, "files": {"mask": ("m.png", b"x")}},
            400,
            "image",
        ),
        ("/images/edits", {"files": {"image": ("a.png", b"x")}}, 400, "prompt"),
        (
            "/images/variations",
            {"data": {"n": "eleven"}, "files": {"image": ("a.png", b"x")}},
            400,
            "n",
        ),
        ("/images/generations", {"json": {"model": "dall-e-3"}}, 400, "prompt"),
        ("/images/generations", {"json": {"prompt": "p", "n": 11}}, 400, "n"),
        ("/images/generations", {"json": {"prompt": "p", "stream": True}}, 400, "stream"),
        ("/audio/speech", {"json": {"model": "tts-1", "input": "x"}}, 400, "voice"),
        ("/audio/speech", {"json": {"model": "tts-1", "voice": "a", "input": 3}}, 400, "input"),
        ("/moderations", {"json": {"model": "omni-moderation-latest"}}, 400, "input"),
        ("/moderations", {"content": b"not json"}, 400, None),
    ],
)
def test_bad_input_gets_an_openai_error(media: Media, path, request_kwargs, status, param):
    response = _post(media, path, **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_malformed_multipart_is_a_400(media: Media):
    headers = {"content-type": "multipart/form-data; boundary=abc"}
    for body in (
        b"--abc\r\nno headers end",
        b"garbage",
        b"--abc\r\nContent-Disposition: x\r\n\r\n",
    ):
        response = _post(media, "/audio/transcriptions", content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    bare = {"content-type": "multipart/form-data"}
    response = _post(media, "/audio/transcriptions", content=b"x", headers=bare)
    assert response.status_code == 400 and "boundary" in response.json()["error"]["message"]


def test_an_upload_is_held_once(media: Media):
    """A 200 KB upload reaches the upstream byte for byte, in one form of its own."""
    audio = io.BytesIO(bytes(range(256)) * 800)
    media.client().audio.transcriptions.create(model="whisper-1", file=("big.mp3", audio))
    sent = media.upstream("/audio/transcriptions")
    assert sent["files"]["file"]["size"] == 204_800
    assert sent["size"] < 204_800 + 1024


def test_upstream_errors_pass_through(media: Media):
    with pytest.raises(openai.BadRequestError) as caught:
        media.client().audio.transcriptions.create(model="status-400", file=("a.wav", wav(1)))
    assert "fake upstream says 400" in caught.value.message
    with pytest.raises(openai.NotFoundError):
        media.client().audio.speech.create(model="status-404", voice="alloy", input="x")


def test_uploads_under_stock_uvicorn(media: Media):
    """Mounted in another ASGI server, the app watches `receive` for the disconnect
    itself: the upload is read whole before that watch begins."""
    workdir = media.service.log.parent
    args = [sys.executable, "-m", "tests.stock_uvicorn", "--data-dir", str(workdir / "data")]
    service = start_process(
        [*args, "--config", str(workdir / "gateway.yaml")], workdir, "stock", "/health"
    )
    try:
        client = openai.OpenAI(api_key=media.service.key, base_url=service.base_url, max_retries=0)
        result = client.audio.transcriptions.create(
            model="whisper-1", file=("a.wav", wav(1.0)), response_format="text"
        )
        assert result.startswith("The beach")
        with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="hi"
        ) as response:
            assert len(response.read()) == 4 * 16384
    finally:
        stop(service.process)
