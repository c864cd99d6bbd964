"""Key secrets: generation, format check and hashing. Secrets are never stored."""

from __future__ import annotations

import hashlib
import re
import secrets
import string

PREFIX = "sk-savegate-"
_ALPHABET = string.ascii_letters + string.digits
_FORMAT = re.compile(r"sk-savegate-[A-Za-z0-9]{32}")


def new_secret() -> str:
    return PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(32))


def well_formed(secret: str) -> bool:
    return _FORMAT.fullmatch(secret) is not None


def hash_secret(secret: str) -> str:
    # Secrets carry 190 bits of randomness, so a fast hash is enough: nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def hint(secret: str) -> str:
    return secret[-4:]
