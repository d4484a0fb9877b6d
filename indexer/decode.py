"""Read one file: hash its bytes, and decode and preprocess it only when it needs embedding."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from spyglass.search.media.images import DecodeGate, decode_image
from spyglass.search.media.files import MediaRoots

from spyglass.search.media.files import MAGIC_BYTES

from .scan import FoundFile
from .video_frames import VideoVectors, container_format, embed_video, is_video

WantsPixels = Callable[[FoundFile, str], bool]
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class VideoRules:
    """How videos are sampled and embedded: the settings, and the encoder the decode thread calls."""

    encode: Callable  # pixels -> vectors; serialised with the image batches
    batch_size: int
    max_gap_s: float
    max_seconds: float
    duplicate_cosine: float
    max_pixels: int  # a frame obeys the image limit, SPYGLASS_MAX_IMAGE_PIXELS


@dataclass
class LoadedFile:
    """A file's content hash, and its model input when it is to be embedded."""

    file: FoundFile
    content_hash: str
    pixels: Any = None  # a torch tensor, or None when the vector can be kept as it is
    format: str = ""
    width: int = 0
    height: int = 0
    video: VideoVectors | None = None  # a video's frames, embedded already while it was decoded

    @property
    def vector(self):
        """The vector that stands for the whole file, when it was embedded while loading."""
        return None if self.video is None else self.video.pooled


def content_hash(data: bytes) -> str:
    """BLAKE2b-256 of the bytes, as 64 hex digits."""
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def load_file(found: FoundFile, preprocess: Callable, max_pixels: int, draft_size: int,
              wants_pixels: WantsPixels, media: MediaRoots, gate: DecodeGate | None = None,
              video: VideoRules | None = None) -> LoadedFile:
    """Read (under the media rules, bounded), hash and, when wants_pixels says so, decode and preprocess.

    Videos are streamed instead (see load_video), and need `video`.
    """
    if video is not None and is_video(found.path):
        return load_video(found, preprocess, draft_size, wants_pixels, media, video)
    # The file must still be what the scan saw: a file replaced since is read again next run.
    data, _ = media.read(found.path, expected=(found.size, found.mtime_ns))
    digest = content_hash(data)
    if not wants_pixels(found, digest):
        return LoadedFile(found, digest)
    decoded = decode_image(data, max_pixels, draft_size=draft_size, gate=gate)
    return LoadedFile(found, digest, preprocess(decoded.image), decoded.format,
                      decoded.width, decoded.height)


def load_video(found: FoundFile, preprocess: Callable, cover: int, wants_pixels: WantsPixels,
               media: MediaRoots, rules: VideoRules) -> LoadedFile:
    """Hash a video piece by piece and, when it must be embedded, sample and embed its frames."""
    handle, _ = media.open(found.path, expected=(found.size, found.mtime_ns), streamed=True)
    with handle:
        fmt = container_format(found.path, os.pread(handle.fileno(), MAGIC_BYTES, 0))
        hasher = hashlib.blake2b(digest_size=32)
        while chunk := handle.read(_HASH_CHUNK):
            hasher.update(chunk)
        digest = hasher.hexdigest()
        if not wants_pixels(found, digest):
            return LoadedFile(found, digest)
        handle.seek(0)
        embedded = embed_video(handle, cover, preprocess, rules.encode, rules.batch_size, rules.max_gap_s,
                               rules.max_seconds, rules.duplicate_cosine, rules.max_pixels)
    return LoadedFile(found, digest, None, fmt, embedded.width, embedded.height, video=embedded)
