"""The one token estimate: about four bytes a token, for English text and JSON.

No tokenizer is shared by every backend. Client rate limits admit by this estimate,
`count_tokens` answers with it, and usage rows fall back on it (marked as estimated)
when an upstream never reported its count. Budgets reserve by `prompt_bound` instead,
an upper bound rather than an estimate.
"""

from __future__ import annotations


def estimate_tokens(text: bytes) -> int:
    return max(1, len(text) // 4)


def prompt_bound(raw: bytes) -> int:
    """At most this many prompt tokens: every BPE token is at least one byte (plus the
    few tokens a chat template adds)."""
    return len(raw) + 16
