"""Secrets made and checked: argon2id password hashes, API tokens and session cookies.

Passwords go through argon2-cffi's argon2id (RFC 9106's second recommended profile: 64 MiB,
three passes), a memory-hard KDF. Tokens and cookies are 32 random bytes: guessing one is out of
reach without a slow hash, so only their SHA-256 is stored, and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache

TOKEN_PREFIX = "sg_"
_TOKEN = re.compile(r"^sg_([1-9][0-9]{0,17})_([A-Za-z0-9_-]{43})$")
# Passwords longer than this are refused: hashing is the costly step, not the length, but nobody
# needs more, and a bound keeps a request's work bounded.
MAX_PASSWORD_CHARS = 1024
MIN_PASSWORD_CHARS = 8


@lru_cache(maxsize=1)
def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # argon2id, RFC 9106 low-memory profile


def hash_password(password: str) -> str:
    """The argon2id hash of a password, salt and parameters included."""
    return _hasher().hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether the password matches the hash; with no hash (no such user) a dummy one is checked,
    so a wrong name costs as long as a wrong password."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def digest(secret: str) -> bytes:
    """SHA-256 of a random secret (a token's or a cookie's): what the catalog keeps."""
    return hashlib.sha256(secret.encode("ascii", "replace")).digest()


def same(stored: bytes, secret: str) -> bool:
    """Whether a secret hashes to the stored digest, compared in constant time."""
    return hmac.compare_digest(stored, digest(secret))


def new_secret() -> str:
    """32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenParts:
    """A token as presented: its id (to find its row) and its secret (to check it)."""

    token_id: int
    secret: str


def token_text(token_id: int, secret: str) -> str:
    """The token a person is shown once: sg_<id>_<secret>."""
    return f"{TOKEN_PREFIX}{token_id}_{secret}"


def parse_token(text: str) -> TokenParts | None:
    """The parts of a well-formed token; None for anything else."""
    match = _TOKEN.match(text or "")
    return TokenParts(int(match[1]), match[2]) if match else None
