"""Thumbnails: made on first request, cached under SPYGLASS_HOME by content hash."""

from __future__ import annotations

import os
from pathlib import Path

from .images import DecodeGate, decode_image
from .media_files import MediaRoots
from .schema import MediaItem

THUMBNAIL_SIZE = 320


def thumbnail_path(home: Path, item: MediaItem, size: int = THUMBNAIL_SIZE) -> Path:
    """Where the thumbnail of this content lives; identical files share one."""
    digest = item.content_hash
    return home / "thumbnails" / digest[:2] / f"{digest}-{size}.jpg"


def ensure_thumbnail(home: Path, item: MediaItem, media: MediaRoots, max_pixels: int,
                     gate: DecodeGate | None = None, size: int = THUMBNAIL_SIZE) -> Path:
    """The cached thumbnail, made from the original if it is not there yet.

    The original must pass the same rules as `/file` (inside a media root, still the indexed
    file) even when the thumbnail is cached: a thumbnail is served only for a file that could be.
    """
    handle, _ = media.open_indexed(item.path, item.size, item.mtime_ns, item.format)
    with handle:
        target = thumbnail_path(home, item, size)
        if target.exists():
            return target
        data = handle.read(media.max_bytes + 1)
    image = decode_image(data, max_pixels, draft_size=size, gate=gate).image
    image.thumbnail((size, size))
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{id(image)}.tmp")
    image.save(temp, "JPEG", quality=85)
    os.replace(temp, target)  # concurrent requests for one thumbnail each write their own temp
    return target
