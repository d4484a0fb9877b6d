"""Read one file: hash its bytes, and decode and preprocess it only when it needs embedding."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from spyglass.search.errors import InvalidImage
from spyglass.search.images import decode_image

from .scan import FoundFile

WantsPixels = Callable[[FoundFile, str], bool]


@dataclass
class LoadedFile:
    """A file's content hash, and its model input when it is to be embedded."""

    file: FoundFile
    content_hash: str
    pixels: Any = None  # a torch tensor, or None when the vector can be kept as it is
    format: str = ""
    width: int = 0
    height: int = 0


def content_hash(data: bytes) -> str:
    """BLAKE2b-256 of the bytes, as 64 hex digits."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def load_file(found: FoundFile, preprocess: Callable, max_pixels: int, draft_size: int,
              wants_pixels: WantsPixels) -> LoadedFile:
    """Read, hash and (when wants_pixels says so) decode and preprocess one file."""
    try:
        with open(found.path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise InvalidImage(f"cannot read: {exc.strerror or exc}") from None
    digest = content_hash(data)
    if not wants_pixels(found, digest):
        return LoadedFile(found, digest)
    decoded = decode_image(data, max_pixels, draft_size=draft_size)
    return LoadedFile(found, digest, preprocess(decoded.image), decoded.format,
                      decoded.width, decoded.height)
