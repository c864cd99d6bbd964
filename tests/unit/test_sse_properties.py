"""The SSE decoder gives the same events however a recorded stream is split into reads,
and whether its lines end in LF or CRLF."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from savegate.wire.sse import Event, SSEDecoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
STREAMS = sorted(FIXTURES.rglob("*.sse"))


def decode(reads: list[bytes]) -> list[Event]:
    decoder = SSEDecoder()
    events = [event for read in reads for event in decoder.decode(read)]
    return events + decoder.flush()


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted({cut % (len(raw) + 1) for cut in cuts}), len(raw)]
    return [raw[start:end] for start, end in itertools.pairwise(bounds)]


def test_fixtures_are_found() -> None:
    assert len(STREAMS) >= 15


@pytest.mark.parametrize("path", STREAMS, ids=lambda p: f"{p.parent.name}/{p.name}")
@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0), max_size=40), crlf=st.booleans())
def test_any_split_gives_the_same_events(path: Path, cuts: list[int], crlf: bool) -> None:
    raw = path.read_bytes()
    whole = decode([raw])
    assert whole and all(event.data for event in whole)
    if crlf:
        raw = raw.replace(b"\n", b"\r\n")
    assert decode(split(raw, cuts)) == whole


@pytest.mark.parametrize("path", STREAMS[:3], ids=lambda p: p.name)
def test_byte_at_a_time(path: Path) -> None:
    raw = path.read_bytes()
    assert decode([raw[i : i + 1] for i in range(len(raw))]) == decode([raw])
