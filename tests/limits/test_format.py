"""The duration formatter, the x-ratelimit-* headers and the 429 the gateway sends."""

from __future__ import annotations

import pytest

from savegate.core.errors import GatewayError
from savegate.limits.rate import RateLimited, RateLimits, Usage, format_duration, rate_headers


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-1, "0s"),
        (0.0001, "1ms"),
        (0.012, "12ms"),
        (0.999, "999ms"),
        (1, "1s"),
        (1.2, "1.2s"),
        (8.64, "8.64s"),
        (59.9994, "1m0s"),
        (60, "1m0s"),
        (86.4, "1m26.4s"),
        (360, "6m0s"),
        (3600, "1h0m0s"),
        (3723.5, "1h2m3.5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_headers_only_for_limits_that_are_set() -> None:
    usage = Usage(requests=3, tokens=250, in_flight=1, requests_reset=1.5, tokens_reset=0.012)
    assert rate_headers(RateLimits(rpm=60, tpm=1000), usage) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "57",
        "x-ratelimit-reset-requests": "1.5s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "750",
        "x-ratelimit-reset-tokens": "12ms",
    }
    assert set(rate_headers(RateLimits(rpm=60), usage)) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }
    assert rate_headers(RateLimits(max_concurrent=2), usage) == {}
    assert rate_headers(RateLimits(rpm=2), None) == {}  # Redis down: nothing known


def test_rate_limited_is_an_openai_style_429() -> None:
    usage = Usage(requests=60, tokens=0, in_flight=0, requests_reset=1.2, tokens_reset=0)
    error = RateLimited("rpm", 1.2, limits=RateLimits(rpm=60), usage=usage)
    assert isinstance(error, GatewayError)
    assert (error.status, error.type, error.code) == (
        429,
        "rate_limit_error",
        "rate_limit_exceeded",
    )
    assert error.limit == "rpm"
    assert error.message == (
        "Rate limit reached for requests per minute (rpm): limit 60, used 60. "
        "Please try again in 1.2s."
    )
    assert error.headers["retry-after"] == "2"
    assert error.headers["retry-after-ms"] == "1200"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"


def test_rate_limited_retry_after_is_at_least_one_second() -> None:
    usage = Usage(requests=0, tokens=990, in_flight=0, requests_reset=0, tokens_reset=0.012)
    error = RateLimited("tpm", 0.012, limits=RateLimits(tpm=1000), usage=usage, requested_tokens=20)
    assert error.headers["retry-after"] == "1"
    assert error.headers["retry-after-ms"] == "12"
    assert "used 990, requested 20. Please try again in 12ms." in error.message


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rpm"):
        RateLimits(rpm=0)
