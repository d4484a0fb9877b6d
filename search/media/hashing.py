"""The one content hash of a file, whoever reads it: BLAKE2b-256, as 64 hex digits.

The indexer, the importer and the Ray workers all hash with this, so the plan can tell an
unchanged, touched or moved file by its hash whoever recorded it.
"""

from __future__ import annotations

import hashlib


def content_hash(data: bytes) -> str:
    """BLAKE2b-256 of the bytes, as 64 hex digits."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def content_hasher():
    """An incremental hasher giving the same digest as content_hash, for files read in pieces."""
    return hashlib.blake2b(digest_size=32)
