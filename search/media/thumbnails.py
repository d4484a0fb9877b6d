"""Thumbnails: made on first request, kept in a bounded cache under SPYGLASS_HOME by content hash.

A video's thumbnail at a moment is cached by the frame actually decoded (its presentation time),
not by the moment asked for: any `t` that lands on one frame shares one file, so the number of
files a video can make is bounded by its frames, and all of them by SPYGLASS_THUMBNAIL_CACHE.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from contextlib import nullcontext

from PIL import Image

from spyglass.search.errors import BadQuery
from spyglass.search.media.images import BYTES_PER_PIXEL, DecodeGate, decode_image
from spyglass.search.media.files import MediaRoots
from spyglass.search.catalog.schema import MediaItem
from spyglass.search.media.thumbnail_cache import ThumbnailCache
from spyglass.search.media.video_stills import frame_at

THUMBNAIL_SIZE = 320
# The viewer's size: a phone's screen at 2x, a third of a desktop's; never the multi-MB original.
PREVIEW_SIZE = 1280
SIZES = {"grid": THUMBNAIL_SIZE, "preview": PREVIEW_SIZE}
# A video still decodes at most this much video past the keyframe it seeks to.
STILL_DECODE_SECONDS = 20.0
# Moments asked for, remembered per process with the frame they landed on: a repeated `t`
# finds its file without decoding again.
_MOMENTS_REMEMBERED = 4096
_moments: OrderedDict[tuple[str, int, int], int] = OrderedDict()
_moments_lock = threading.Lock()


def thumbnail_name(item: MediaItem, size: int = THUMBNAIL_SIZE, frame_ms: int | None = None) -> str:
    """The cache name of this content's thumbnail (of a video, of the frame shown at frame_ms)."""
    moment = "" if frame_ms is None else f"-f{frame_ms}"
    return f"{item.content_hash}-{size}{moment}.jpg"


def video_moment(item: MediaItem, at_s: float | None) -> float:
    """The moment of a video's thumbnail: the one asked for, within the video, or its poster frame's."""
    if at_s is None:
        return item.poster_s or 0.0
    if not 0 <= at_s <= (item.duration_s or 0.0) + 1.0:  # NaN fails this too
        raise BadQuery(f"t={at_s} is outside the video (0 to {item.duration_s or 0:.3f} s)")
    return at_s


def ensure_thumbnail(cache: ThumbnailCache, item: MediaItem, media: MediaRoots, max_pixels: int,
                     gate: DecodeGate | None = None, size: int = THUMBNAIL_SIZE,
                     at_s: float | None = None):
    """The thumbnail as a cached file's Path, or as JPEG bytes when the cache could not keep it;
    of a video, its frame at `at_s` (default: its poster frame).

    The original must pass the same rules as `/file` (inside a media root, still the indexed
    file) even when the thumbnail is cached: a thumbnail is served only for a file that could be.
    """
    video = item.kind == "video"
    asked_ms = round(1000 * video_moment(item, at_s)) if video else None
    handle, _ = media.open_indexed(item.path, item.size, item.mtime_ns, item.format)
    if item.kind == "audio":  # nothing to picture: one tile for every recording
        handle.close()
        return audio_tile(size)
    with handle:
        known = _landed(item, size, asked_ms) if video else None
        if not video or known is not None:
            cached = cache.get(thumbnail_name(item, size, known))
            if cached is not None:
                return cached
        if video:
            # Frames are decoded at full size before they are scaled: their memory counts like an image's.
            with gate.hold(item.width * item.height * BYTES_PER_PIXEL) if gate else nullcontext():
                still = frame_at(handle, asked_ms / 1000, STILL_DECODE_SECONDS, max_pixels, size)
            image, frame_ms = still.image, round(1000 * still.time_s)
            _remember(item, size, asked_ms, frame_ms)
            cached = cache.get(thumbnail_name(item, size, frame_ms))
            if cached is not None:
                return cached
        else:
            data, frame_ms = handle.read(media.max_bytes + 1), None
    if not video:
        image = decode_image(data, max_pixels, draft_size=size, gate=gate).image
    image.thumbnail((size, size))
    encoded = io.BytesIO()
    image.save(encoded, "JPEG", quality=85)
    return cache.put(thumbnail_name(item, size, frame_ms), encoded.getvalue()) or encoded.getvalue()


def make_thumbnails(cache: ThumbnailCache, item: MediaItem, media: MediaRoots, max_pixels: int,
                    gate: DecodeGate | None = None) -> int:
    """Both sizes of an item's thumbnail, ahead of any request (an image decoded once, at the
    preview size); the bytes written, 0 when both were there."""
    if item.kind == "audio":
        return 0
    if item.kind == "video":
        made = [ensure_thumbnail(cache, item, media, max_pixels, gate, size) for size in (THUMBNAIL_SIZE, PREVIEW_SIZE)]
        return sum(len(m) if isinstance(m, bytes) else 0 for m in made)
    names = {size: thumbnail_name(item, size) for size in (PREVIEW_SIZE, THUMBNAIL_SIZE)}
    missing = [size for size, name in names.items() if not cache.path(name).is_file()]
    if not missing:
        return 0
    handle, _ = media.open_indexed(item.path, item.size, item.mtime_ns, item.format)
    with handle:
        data = handle.read(media.max_bytes + 1)
    image = decode_image(data, max_pixels, draft_size=max(missing), gate=gate).image
    written = 0
    for size in sorted(missing, reverse=True):  # each smaller one from the larger
        # Bilinear (antialiased, as all of Pillow's resizes): half of bicubic's 40 ms on a 3 MP draft.
        image.thumbnail((size, size), Image.Resampling.BILINEAR)
        encoded = io.BytesIO()
        image.save(encoded, "JPEG", quality=85)
        cache.put(names[size], encoded.getvalue())
        written += encoded.tell()
    return written


def audio_tile(size: int = THUMBNAIL_SIZE) -> bytes:
    """The thumbnail of an audio item: a waveform-like tile, the same for every recording."""
    from PIL import ImageDraw

    tile = Image.new("RGB", (size, size * 3 // 4), (38, 50, 72))
    draw = ImageDraw.Draw(tile)
    bars, middle = 24, size * 3 // 8
    for bar in range(bars):
        height = int(middle * (0.25 + 0.7 * abs(((bar * 7) % 11) / 10 - 0.5) * 2))
        left = int((bar + 0.5) * size / (bars + 1))
        draw.rectangle((left, middle - height // 2, left + max(2, size // (2 * bars)), middle + height // 2),
                       fill=(150, 190, 255))
    encoded = io.BytesIO()
    tile.save(encoded, "JPEG", quality=85)
    return encoded.getvalue()


def _landed(item: MediaItem, size: int, asked_ms: int) -> int | None:
    with _moments_lock:
        key = (item.content_hash, size, asked_ms)
        frame_ms = _moments.get(key)
        if frame_ms is not None:
            _moments.move_to_end(key)
        return frame_ms


def _remember(item: MediaItem, size: int, asked_ms: int, frame_ms: int) -> None:
    with _moments_lock:
        _moments[(item.content_hash, size, asked_ms)] = frame_ms
        while len(_moments) > _MOMENTS_REMEMBERED:
            _moments.popitem(last=False)
