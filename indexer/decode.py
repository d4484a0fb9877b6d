"""Read one file: hash its bytes, and decode and preprocess it only when it needs a vector.

This runs in decode threads (and Ray decode tasks): it reads and computes, and changes nothing
else. A video's sampled frames are handed on, chunk by chunk, to whoever embeds them (`emit`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

from spyglass.search.media.audio import AudioRefused, audio_format, audio_seconds, is_audio, spoken_name
from spyglass.search.media.files import MAGIC_BYTES, MediaRoots, format_matches
from spyglass.search.media.hashing import content_hash, content_hasher
from spyglass.search.media.images import DecodeGate, decode_image
from spyglass.search.media.video_frames import SamplingStats, container_format, is_video

from .scan import FoundFile
from .video_vectors import FrameChunk, VideoRules, VideoVectors, frame_chunks

NeedsPixels = Callable[[FoundFile, str], bool]
Emit = Callable[[FrameChunk], None]
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class VideoDecoding:
    """How a decode thread samples videos: the rules, and frames a chunk (the encoder's batch)."""

    rules: VideoRules
    batch_size: int


@dataclass
class LoadedFile:
    """A file's content hash, and its model input when it is to be embedded."""

    file: FoundFile
    content_hash: str
    pixels: Any = None  # a torch tensor, or None when the vector can be kept as it is
    format: str = ""
    width: int = 0
    height: int = 0
    video: VideoVectors | None = None  # a video's frames, once the encoder side has embedded them
    sampling: SamplingStats | None = None  # a video whose frames were sampled and emitted
    text: str | None = None  # an audio file: the text its vector is embedded from (its name, as words)
    duration_s: float | None = None  # an audio file's length

    @property
    def vector(self):
        """The vector that stands for the whole file, once a video's frames are embedded."""
        return None if self.video is None else self.video.pooled


def load_file(found: FoundFile, preprocess: Callable, max_pixels: int, draft_size: int,
              needs_pixels: NeedsPixels, media: MediaRoots, gate: DecodeGate | None = None,
              video: VideoDecoding | None = None, emit: Emit | None = None) -> LoadedFile:
    """Read (under the media rules, bounded), hash and, when needs_pixels says so, decode and preprocess.

    Videos are streamed instead (see load_video), and need `video` and `emit`.
    """
    if video is not None and is_video(found.path):
        return load_video(found, preprocess, draft_size, needs_pixels, media, video, emit)
    if video is not None and is_audio(found.path):
        return load_audio(found, needs_pixels, media, video.rules.max_seconds)
    # The file must still be what the scan saw: a file replaced since is read again next run.
    data, _ = media.read(found.path, expected=(found.size, found.mtime_ns))
    digest = content_hash(data)
    if not needs_pixels(found, digest):
        return LoadedFile(found, digest)
    decoded = decode_image(data, max_pixels, draft_size=draft_size, gate=gate)
    return LoadedFile(found, digest, preprocess(decoded.image), decoded.format,
                      decoded.width, decoded.height)


def load_audio(found: FoundFile, needs_pixels: NeedsPixels, media: MediaRoots, max_seconds: float) -> LoadedFile:
    """Hash an audio file piece by piece and, when it needs a vector, read its length; its vector is
    embedded from its name by the text tower (the words stage transcribes what is said in it)."""
    handle, _ = media.open(found.path, expected=(found.size, found.mtime_ns), streamed=True)
    with handle:
        fmt = audio_format(found.path)
        if not format_matches(fmt, os.pread(handle.fileno(), MAGIC_BYTES, 0)):
            raise AudioRefused(f"not a readable audio file: its first bytes are not those of {fmt}")
        digest = _streamed_hash(handle)
        if not needs_pixels(found, digest):
            return LoadedFile(found, digest)
        seconds = audio_seconds(handle, max_seconds)
    return LoadedFile(found, digest, None, fmt, 0, 0, text=spoken_name(found.path),
                      duration_s=seconds)


def load_video(found: FoundFile, preprocess: Callable, cover: int, needs_pixels: NeedsPixels,
               media: MediaRoots, video: VideoDecoding, emit: Emit) -> LoadedFile:
    """Hash a video piece by piece and, when it needs vectors, sample its frames and emit them in chunks."""
    handle, _ = media.open(found.path, expected=(found.size, found.mtime_ns), streamed=True)
    with handle:
        fmt = container_format(found.path, os.pread(handle.fileno(), MAGIC_BYTES, 0))
        digest = _streamed_hash(handle)
        if not needs_pixels(found, digest):
            return LoadedFile(found, digest)
        stats = SamplingStats()
        for frames in frame_chunks(handle, cover, preprocess, video.batch_size, video.rules, stats):
            emit(frames)
    return LoadedFile(found, digest, None, fmt, stats.facts.width, stats.facts.height, sampling=stats)


def _streamed_hash(handle) -> str:
    """The content hash of an open file read piece by piece, the handle back at its start."""
    hasher = content_hasher()
    while chunk := handle.read(_HASH_CHUNK):
        hasher.update(chunk)
    handle.seek(0)
    return hasher.hexdigest()
