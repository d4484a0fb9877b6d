"""Thumbnails: made on first request, cached under SPYGLASS_HOME by content hash."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UnknownItem
from .images import decode_image
from .schema import MediaItem

THUMBNAIL_SIZE = 320


def thumbnail_path(home: Path, item: MediaItem, size: int = THUMBNAIL_SIZE) -> Path:
    """Where the thumbnail of this content lives; identical files share one."""
    digest = item.content_hash
    return home / "thumbnails" / digest[:2] / f"{digest}-{size}.jpg"


def ensure_thumbnail(home: Path, item: MediaItem, max_pixels: int, size: int = THUMBNAIL_SIZE) -> Path:
    """The cached thumbnail, made from the original if it is not there yet."""
    target = thumbnail_path(home, item, size)
    if target.exists():
        return target
    try:
        data = Path(item.path).read_bytes()
    except OSError:
        raise UnknownItem(f"the file of item {item.id} is gone from disk",
                          "run `spyglass index` to bring the index up to date") from None
    image = decode_image(data, max_pixels, draft_size=size).image
    image.thumbnail((size, size))
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{id(image)}.tmp")
    image.save(temp, "JPEG", quality=85)
    os.replace(temp, target)  # concurrent requests for one thumbnail each write their own temp
    return target
