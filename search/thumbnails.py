"""Thumbnails: made on first request, cached under SPYGLASS_HOME by content hash."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BadQuery
from .images import DecodeGate, decode_image
from .media_files import MediaRoots
from .schema import MediaItem
from .video_stills import frame_at

THUMBNAIL_SIZE = 320
# A video still decodes at most this much video past the keyframe it seeks to.
STILL_DECODE_SECONDS = 20.0


def thumbnail_path(home: Path, item: MediaItem, size: int = THUMBNAIL_SIZE, at_ms: int | None = None) -> Path:
    """Where the thumbnail of this content lives (of a video, at a moment); identical files share one."""
    digest = item.content_hash
    moment = "" if at_ms is None else f"-t{at_ms}"
    return home / "thumbnails" / digest[:2] / f"{digest}-{size}{moment}.jpg"


def video_moment(item: MediaItem, at_s: float | None) -> float:
    """The moment of a video's thumbnail: the one asked for, within the video, or its poster frame's."""
    if at_s is None:
        return item.poster_s or 0.0
    if not 0 <= at_s <= (item.duration_s or 0.0) + 1.0:  # NaN fails this too
        raise BadQuery(f"t={at_s} is outside the video (0 to {item.duration_s or 0:.3f} s)")
    return at_s


def ensure_thumbnail(home: Path, item: MediaItem, media: MediaRoots, max_pixels: int,
                     gate: DecodeGate | None = None, size: int = THUMBNAIL_SIZE, at_s: float | None = None) -> Path:
    """The cached thumbnail, made from the original if it is not there yet; of a video, its
    frame at `at_s` (default: its poster frame).

    The original must pass the same rules as `/file` (inside a media root, still the indexed
    file) even when the thumbnail is cached: a thumbnail is served only for a file that could be.
    """
    video = item.kind == "video"
    at_ms = round(1000 * video_moment(item, at_s)) if video else None
    handle, _ = media.open_indexed(item.path, item.size, item.mtime_ns, item.format)
    with handle:
        target = thumbnail_path(home, item, size, at_ms)
        if target.exists():
            return target
        if video:
            image = frame_at(handle, at_ms / 1000, STILL_DECODE_SECONDS)
        else:
            data = handle.read(media.max_bytes + 1)
    if not video:
        image = decode_image(data, max_pixels, draft_size=size, gate=gate).image
    image.thumbnail((size, size))
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.{id(image)}.tmp")
    image.save(temp, "JPEG", quality=85)
    os.replace(temp, target)  # concurrent requests for one thumbnail each write their own temp
    return target
