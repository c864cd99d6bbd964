"""Upstream credentials never leave the process: one redactor, built at start from the
configured upstream keys, cleans upstream errors and bodies, and every log record."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

MASK = "[REDACTED]"
# Shorter values are not credentials; masking them would garble ordinary text.
MIN_SECRET = 8
# Short text found clean is remembered, so that the same again is not searched again: an
# access line's path, model names and message repeat from request to request.
_CLEAN_LENGTH = 256
_CLEAN_COUNT = 4096

# A credential named in text: a bearer token, an API-key header or a `key=` query
# parameter, as an upstream echoing its request would show it (JSON-escaped quotes too).
_CREDENTIAL = re.compile(
    r"""(?ix)
    (?: \bbearer\s+
      | \b(?:authorization|x-api-key|x-goog-api-key|api[-_]key)\b\\?["']?\s*[:=]\s*\\?["']?
        (?:bearer\s+)?
      | [?&]key=
    )"""
    rf"([A-Za-z0-9._~+/=-]{{{MIN_SECRET},}})"
)


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a key that contains another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= MIN_SECRET}, key=len, reverse=True)
        self._raw = [s.encode() for s in self._secrets]
        self._clean: set[str] = set()  # short text with nothing to mask (only such text)

    def extend(self, secrets: Iterable[str]) -> None:
        """Mask `secrets` too from now on (a reload's new upstream keys); the old ones stay
        masked, as requests in flight may still hold them."""
        known = sorted({*self._secrets, *(s for s in secrets if len(s) >= MIN_SECRET)}, key=len)
        self._secrets = known[::-1]
        self._raw = [s.encode() for s in self._secrets]
        # Replaced, not cleared: a thread that found text clean of the old secrets adds it
        # to the set it began with, which is then no one's.
        self._clean = set()

    @property
    def secrets(self) -> list[str]:
        """The secrets masked: a new list whenever more are added."""
        return self._secrets

    def text(self, value: str) -> str:
        """`value` without the known secrets or any credential it names."""
        clean = self._clean
        if value in clean:
            return value
        masked = self._masked(value)
        if len(value) <= _CLEAN_LENGTH and masked == value:
            if len(clean) >= _CLEAN_COUNT:
                clean.clear()  # what repeats is soon back
            clean.add(value)
        return masked

    def _masked(self, value: str) -> str:
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        # ASCII text the pattern can match holds one of these words (any case); most text
        # holds none, and a substring test is far cheaper than the pattern's search.
        # (Other text is searched: the pattern's case folding is not `str.lower`'s.)
        if value.isascii():
            lowered = value.lower()
            if "key" not in lowered and "bearer" not in lowered and "authorization" not in lowered:
                return value
        return _CREDENTIAL.sub(lambda m: m.group(0).replace(m.group(1), MASK), value)

    def body(self, raw: bytes) -> bytes:
        """A relayed body without the known secrets. Credential patterns are left alone:
        an answer may rightly say "Bearer …"."""
        for secret in self._raw:
            if secret in raw:
                raw = raw.replace(secret, MASK.encode())
        return raw

    def learning(self, text: str) -> Redactor:
        """This redactor, also knowing the credentials `text` names: an echoed token is
        then masked wherever else it appears (an error's `code`, say)."""
        seen = [match.group(1) for match in _CREDENTIAL.finditer(text)]
        return Redactor([*self._secrets, *seen]) if seen else self


def redact_logs(redactor: Redactor) -> None:
    """Every log record, of every logger and level, is redacted as it is made: message,
    arguments (SQLAlchemy's DEBUG parameters among them), traceback and stack."""
    make = logging.getLogRecordFactory()
    formatter = logging.Formatter()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: keep what it said, redacted all the same
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redactor.text(message), None
        if record.exc_info:
            record.exc_text = redactor.text(formatter.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redactor.text(record.stack_info)
        return record

    logging.setLogRecordFactory(factory)
