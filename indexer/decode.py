"""Read one file: hash its bytes, and decode and preprocess it only when it needs embedding."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable

from spyglass.search.images import DecodeGate, decode_image
from spyglass.search.media_files import MediaRoots

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
              wants_pixels: WantsPixels, media: MediaRoots, gate: DecodeGate | None = None) -> LoadedFile:
    """Read (under the media rules, bounded), hash and, when wants_pixels says so, decode and preprocess."""
    # The file must still be what the scan saw: a file replaced since is read again next run.
    data, _ = media.read(found.path, expected=(found.size, found.mtime_ns))
    digest = content_hash(data)
    if not wants_pixels(found, digest):
        return LoadedFile(found, digest)
    decoded = decode_image(data, max_pixels, draft_size=draft_size, gate=gate)
    return LoadedFile(found, digest, preprocess(decoded.image), decoded.format,
                      decoded.width, decoded.height)
