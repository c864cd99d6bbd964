"""Prices by unit, what a media call used, and multipart forms read in any split."""

from __future__ import annotations

import asyncio
import struct
from email.parser import BytesParser
from email.policy import HTTP

import pytest

from savegate.api.forms import read_form
from savegate.api.http import HttpRequest
from savegate.core.errors import InvalidRequest, PayloadTooLarge
from savegate.core.media import MediaUse
from savegate.core.prices import ModelPrice
from savegate.core.usage import TokenCounts
from savegate.metering.prices import LIST_PRICES, PriceBook
from savegate.wire import media_use
from savegate.wire.multipart import FilePart, Form

DALL_E_3 = LIST_PRICES["dall-e-3"]


@pytest.mark.parametrize(
    ("quality", "size", "price"),
    [
        ("hd", "1024x1792", 0.12),
        ("standard", "1024x1024", 0.04),
        (None, "1024x1024", 0.08),  # unknown quality: the dearest at that size
        ("standard", None, 0.08),
        ("auto", "auto", 0.12),
        ("hd", "9x9", 0.12),  # an unlisted size: the dearest of that quality
    ],
)
def test_image_price(quality, size, price):
    assert DALL_E_3.image_price(quality, size) == pytest.approx(price)


def test_image_price_by_size_and_catch_all():
    price = ModelPrice(image={"256x256": 0.01, "*": 0.5})
    assert price.image_price("hd", "256x256") == 0.01
    assert price.image_price("hd", "512x512") == 0.5
    assert ModelPrice().image_price(None, None) == 0.0


def test_media_cost_adds_tokens_and_units():
    price = ModelPrice(input=1.0, output=2.0, audio_minute=0.006, characters=15.0)
    use = MediaUse(seconds=90, tokens=TokenCounts(prompt=1000, completion=500))
    assert price.media_cost(use) == pytest.approx(0.009 + 0.002)
    assert price.media_cost(MediaUse(characters=1000)) == pytest.approx(0.015)


def test_a_discount_applies_to_units():
    pricing = PriceBook({}).pricing("dall-e-3", discount=0.25)
    paid, listed = pricing.media_costs(MediaUse(images=2, quality="hd", size="1024x1024"))
    assert (paid, listed) == (pytest.approx(0.12), pytest.approx(0.16))


def _wav(seconds: float, rate: int = 16000, declared: int | None = None) -> FilePart:
    data = b"\x01\x00" * int(seconds * rate)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    length = len(data) if declared is None else declared
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"LIST" + struct.pack("<I", 3)
    body += b"abc\x00" + b"data" + struct.pack("<I", length) + data
    raw = b"RIFF" + struct.pack("<I", len(body)) + body
    return FilePart("file", "a.wav", "audio/wav", [memoryview(raw[:100]), memoryview(raw[100:])])


def test_wav_length_from_its_header():
    assert media_use.wav_seconds(_wav(2.5)) == pytest.approx(2.5)
    assert media_use.wav_seconds(_wav(1.0, declared=0xFFFFFFFF)) == pytest.approx(1.0)
    mp3 = FilePart("file", "a.mp3", "audio/mpeg", [memoryview(b"ID3" + b"\x00" * 64_000)])
    assert media_use.wav_seconds(mp3) is None
    assert media_use.audio_bound(mp3).seconds == pytest.approx(64.003)  # 8 kbit/s
    estimate = media_use.audio_estimate(mp3)
    assert estimate.estimated and estimate.seconds == pytest.approx(4.0001875)


def test_transcription_use_by_format():
    mp3 = FilePart("file", "a.mp3", "audio/mpeg", [memoryview(b"x" * 16_000)])
    srt = b"1\n00:00:00,000 --> 00:01:02,500\nhi\n\n"
    assert media_use.transcription_use(srt, "srt", mp3) == MediaUse(seconds=62.5, estimated=True)
    vtt = b"WEBVTT\n\n00:02.250 --> 00:03.750\nhi\n"
    assert media_use.transcription_use(vtt, "vtt", mp3).seconds == pytest.approx(3.75)
    assert media_use.transcription_use(b"hi", "text", mp3) == MediaUse(seconds=1.0, estimated=True)
    assert media_use.transcription_use(b"hi", "text", _wav(3)) == MediaUse(seconds=3.0)
    verbose = b'{"text": "hi", "duration": 8.5}'
    assert media_use.transcription_use(verbose, "verbose_json", mp3) == MediaUse(seconds=8.5)
    tokens = b'{"text": "hi", "usage": {"type": "tokens", "input_tokens": 3, "output_tokens": 4}}'
    used = media_use.transcription_use(tokens, "json", mp3)
    assert used.tokens == TokenCounts(prompt=3, completion=4) and used.estimated


def _form() -> Form:
    payload = bytes(range(256)) * 40 + b"\r\n--not-the-boundary\r\n"
    return Form(
        [("model", "whisper-1"), ("include[]", "logprobs"), ("include[]", "x"), ("p", 'é"\n')],
        [FilePart("file", 'a "b".mp3', "audio/mpeg", [memoryview(payload)])],
    )


def _read(content_type: str, reads: list[bytes], limit: int = 1 << 20) -> Form:
    messages = [{"type": "http.request", "body": r, "more_body": True} for r in reads]
    messages.append({"type": "http.request", "body": b"", "more_body": False})

    async def receive() -> dict:
        return messages.pop(0)

    scope = {"method": "POST", "path": "/", "headers": [(b"content-type", content_type.encode())]}
    return asyncio.run(read_form(HttpRequest(scope, receive, "req_test"), limit))


@pytest.mark.parametrize("step", [1, 7, 64, 1000, 1 << 20])
def test_a_form_read_in_any_split_is_the_form_sent(step):
    form = _form()
    content_type, parts = form.encode("whisper-2")
    body = b"".join(parts)
    read = _read(content_type, [body[i : i + step] for i in range(0, len(body), step)])
    assert read.fields == [("model", "whisper-2"), *form.fields[1:]]
    (file,) = read.files
    # Quotes in a name travel escaped as browsers send them (the HTML standard's rule).
    assert (file.name, file.filename, file.content_type) == ("file", "a %22b%22.mp3", "audio/mpeg")
    assert b"".join(file.data) == b"".join(form.files[0].data)


def test_an_encoded_form_reads_back_with_the_stdlib():
    content_type, parts = _form().encode("m")
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + b"".join(parts)
    )
    names = [part.get_param("name", header="content-disposition") for part in message.iter_parts()]
    assert names == ["model", "include[]", "include[]", "p", "file"]


def test_bad_forms():
    content_type, parts = _form().encode("m")
    body = b"".join(parts)
    with pytest.raises(PayloadTooLarge):
        _read(content_type, [body], limit=len(body) - 1)
    with pytest.raises(InvalidRequest, match="closing boundary"):
        _read(content_type, [body[:-10]])
    with pytest.raises(InvalidRequest, match="multipart/form-data"):
        _read("application/json", [b"{}"])
    many = b'--b\r\nContent-Disposition: form-data; name="x"\r\n\r\n\r\n' * 1001
    with pytest.raises(InvalidRequest, match="at most 1000 parts"):
        _read("multipart/form-data; boundary=b", [many + b"--b--\r\n"])
    headers = b"".join(b"X-%d: y\r\n" % i for i in range(20))
    crowded = b'--b\r\nContent-Disposition: form-data; name="x"\r\n' + headers + b"\r\n\r\n"
    with pytest.raises(InvalidRequest):
        _read("multipart/form-data; boundary=b", [crowded + b"--b--\r\n"])
