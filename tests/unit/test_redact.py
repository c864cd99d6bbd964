"""Credentials an upstream error names are masked in every field of it, configured or not."""

from __future__ import annotations

import logging

import orjson
import pytest

from savegate.core.redact import MASK, Redactor, redact_logs
from savegate.providers import upstream_errors

CONFIGURED = "sk-configured-0123456789"


@pytest.mark.parametrize(
    ("named", "token"),
    [
        ("Authorization: Bearer {}", "tok-bearer-abcdef123456"),
        ('{{"x-api-key": "{}"}}', "sk-ant-abcdef123456"),
        ("x-goog-api-key={}", "AIzaSyAbcdef123456"),
        ("GET /v1beta/models/gemini:generateContent?key={}", "AIzaSyQuery123456"),
    ],
)
def test_credentials_named_in_an_error_are_masked_everywhere(named: str, token: str):
    body = {
        "error": {
            "message": f"refused: {named.format(token)} (key {CONFIGURED})",
            "type": f"bad {token}",
            "param": CONFIGURED,
            "code": token,
        }
    }
    for status in (400, 401, 500):
        error = upstream_errors.from_status(
            "p", status, orjson.dumps(body), {}, Redactor([CONFIGURED])
        )
        everything = repr([error.message, error.type, error.code, error.param, error.raw_body])
        assert token not in everything and CONFIGURED not in everything
        assert token not in str(error)
    error = upstream_errors.from_payload("p", orjson.dumps(body), Redactor([CONFIGURED]))
    assert (error.code, error.param) == (MASK, None)
    assert token not in error.message + error.type and CONFIGURED not in error.message


def test_short_values_and_plain_words_are_left_alone():
    redactor = Redactor(["abc"])
    text = "Pass your key in the Authorization header; abc is fine; Bearer short"
    assert redactor.text(text) == text
    assert redactor.body(b"abc") == b"abc"


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture):
    make = logging.getLogRecordFactory()
    redact_logs(Redactor([CONFIGURED]))
    try:
        with caplog.at_level(logging.DEBUG):
            log = logging.getLogger("savegate.test")
            log.debug("params: %r", (CONFIGURED, 1))
            try:
                raise RuntimeError(f"upstream said {CONFIGURED}")
            except RuntimeError:
                log.exception("failed")
        assert CONFIGURED not in caplog.text and caplog.text.count(MASK) == 2
    finally:
        logging.setLogRecordFactory(make)


@pytest.mark.parametrize(
    "named",
    [
        "AUTHORIZATION: BEARER {}",
        "X-Api-Key={}",
        "GET /x?KEY={}",
        "bEaReR {}",
        "authorization: \u00e9 bearer {}",  # not ASCII: searched without the quick test
        "\u212a\u0435y Bearer {}",
    ],
)
def test_credentials_are_found_in_any_case(named: str):
    token = "tok-abcdef1234567890"
    assert token not in Redactor([]).text(named.format(token))


def test_text_found_clean_is_searched_again_once_a_secret_is_added():
    redactor = Redactor([CONFIGURED])
    named = "model-sk-added-later-0123456789"
    assert redactor.text(named) == named  # clean so far, and remembered so
    assert redactor.text(named) == named
    redactor.extend(["sk-added-later-0123456789"])
    assert redactor.text(named) == f"model-{MASK}"
    assert redactor.text(f"x {CONFIGURED}") == f"x {MASK}"  # masked text is never remembered
    assert redactor.text(f"x {CONFIGURED}") == f"x {MASK}"
