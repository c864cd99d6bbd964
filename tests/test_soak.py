"""The short version of the soak (`python -m bench.soak`): mixed traffic, every answer as
expected, and memory that settles rather than grows."""

from __future__ import annotations

from bench.soak import Soak


def test_short_soak_of_mixed_traffic(tmp_path):
    soak = Soak(tmp_path)
    try:
        soak.start()
        result = soak.run(seconds=25, clients=8, warm_up=10, every=1.0)
    finally:
        soak.stop()
    assert result["errors"] == 0, result["error_examples"]
    assert result["requests"] > 300
    assert set(result["by_kind"]) >= {"chat", "stream", "abandoned", "messages", "conversation"}
    # A leak of a few KB a request would show here; noise is well under this.
    grown = result["rss_end_mb"] - result["rss_after_warm_up_mb"]
    assert grown < 15, result["samples"]
