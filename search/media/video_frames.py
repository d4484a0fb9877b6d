"""Pick the frames of a video worth embedding: one at every cut and at least one every few seconds.

Timestamps are the stream's presentation times (pts x time_base, in seconds), never a frame
index divided by a rounded frame rate, which drifts on 29.97 fps and breaks on phone video
with a variable frame rate. Cuts are found by a cheap change score on 48x27 thumbnails that
libswscale makes while decoding: in colour, since two shots of one brightness are still a cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from spyglass.search.errors import SpyglassError

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"})
# The change score is the mean absolute difference of two 48x27 RGB thumbnails, 0 to 1.
# Slow motion within a shot stays under 0.05; a cut between unrelated shots is well over 0.1.
CUT_SCORE = 0.1
_PROBE_SIZE = (48, 27)
DEFAULT_MAX_PIXELS = 89_478_485  # SPYGLASS_MAX_IMAGE_PIXELS's default, Pillow's


class VideoRefused(SpyglassError):
    """A file that is not a video Spyglass can index: the message says why, in one line."""


@dataclass
class SampledFrame:
    """A kept frame: its presentation time, why it was kept, and the picture, ready to preprocess."""

    time_s: float
    reason: str  # "first", "cut" or "gap"
    image: object  # an RGB Pillow image whose short side covers the size asked for


@dataclass
class VideoFacts:
    """What the header says about a video's stream."""

    width: int
    height: int
    duration_s: float | None
    codec: str


@dataclass
class SamplingStats:
    """What sampling saw besides the kept frames: every decoded frame counts."""

    decoded: int = 0
    last_time_s: float = 0.0
    frame_step_s: float = 0.0  # the last gap between two decoded frames
    facts: VideoFacts | None = None


def is_video(path: str | Path) -> bool:
    """By extension, in any case."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def probe(path: str | Path, max_seconds: float, max_pixels: int = DEFAULT_MAX_PIXELS) -> VideoFacts:
    """The first video stream's facts; refused when there is none, it is longer than max_seconds,
    or its frames are over max_pixels."""
    av = _av()
    try:
        with av.open(str(path)) as container:
            return _facts(container, max_seconds, max_pixels)
    except VideoRefused:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoRefused(f"not a readable video: {_reason(exc)}") from None


def sample_frames(path: str | Path | BinaryIO, cover: int, max_gap_s: float = 4.0, max_seconds: float = 4 * 3600,
                  cut_score: float = CUT_SCORE, stats: SamplingStats | None = None,
                  max_pixels: int = DEFAULT_MAX_PIXELS, every_frame: bool = False) -> Iterator[SampledFrame]:
    """Yield the frames to embed, in order: the first, the first after every cut, and one whenever
    max_gap_s has passed since the last kept one. Each is scaled so its short side is `cover`.

    A stream that breaks part way through ends the sampling with VideoRefused, after the frames
    decoded before the break (the caller decides whether a partial video is kept). `path` may
    be an open binary file. `stats`, when given, is filled in as frames are decoded. Frames
    obey the image pixel limit: a stream over `max_pixels` is refused before a frame is decoded,
    and one whose frames grow past it, at the first such frame.

    Unless every_frame, the decoder skips the frames no other frame is predicted from (FFmpeg's
    skip_frame NONREF): about half of an x264 stream's frames, and the cheapest to skip since
    nothing else needs them. A cut is then seen at the first decoded frame of the new shot: its
    own first frame whenever that is a reference frame (a key frame, as x264 puts at a scene
    change, or any frame of a stream without B-frames), else a frame or two later.
    """
    av = _av()
    stats = stats if stats is not None else SamplingStats()
    try:
        container = av.open(path if hasattr(path, "read") else str(path))
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoRefused(f"not a readable video: {_reason(exc)}") from None
    with container:
        facts = stats.facts = _facts(container, max_seconds, max_pixels)
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads inside FFmpeg, off the GIL
        if not every_frame:
            stream.codec_context.skip_frame = "NONREF"
        size = _covering(facts.width, facts.height, cover)
        recent = None if every_frame else RecentPackets()
        ends = _LastTimes()
        previous, previous_time, last_kept = None, None, None
        try:
            for frame in _decoded(container, stream, recent, ends):
                _check_frame_size(frame.width, frame.height, max_pixels)
                if frame.pts is None:
                    continue  # no presentation time: it cannot be placed, so it is not kept
                time_s = float(frame.pts * stream.time_base)
                if time_s > max_seconds:
                    raise VideoRefused(f"video runs past {max_seconds:.0f} s (SPYGLASS_MAX_VIDEO_SECONDS)")
                if stats.decoded:
                    stats.frame_step_s = max(0.0, time_s - stats.last_time_s)
                stats.decoded += 1
                stats.last_time_s = max(stats.last_time_s, time_s)
                small = frame.to_ndarray(width=_PROBE_SIZE[0], height=_PROBE_SIZE[1], format="rgb24")
                score = 1.0 if previous is None else change_score(previous, small)
                image = None
                if previous is not None and score >= cut_score and recent is not None:
                    # Skipped frames lie between the last decoded one and this: the shot may start among them.
                    first = recent.first_of_shot(stream, previous_time, frame.pts, previous, cut_score, size)
                    if first is not None:
                        time_s, image = first
                previous, previous_time = small, frame.pts
                if last_kept is None:
                    reason = "first"
                elif score >= cut_score:
                    reason = "cut"
                elif time_s - last_kept >= max_gap_s:
                    reason = "gap"
                else:
                    continue
                last_kept = time_s
                yield SampledFrame(time_s, reason, image or frame.to_image(width=size[0], height=size[1]))
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise VideoRefused(f"video breaks off after {last_kept or 0:.1f} s: {_reason(exc)}") from None
        if ends.last is not None:  # the stream's last frame and the step before it, skipped or not
            stats.last_time_s = max(stats.last_time_s, float(ends.last * stream.time_base))
            if ends.before is not None:
                stats.frame_step_s = float((ends.last - ends.before) * stream.time_base)


class _LastTimes:
    """The two latest presentation times among a stream's packets (decode order is not display order)."""

    def __init__(self):
        self.last: int | None = None
        self.before: int | None = None

    def add(self, pts: int) -> None:
        if self.last is None or pts > self.last:
            self.last, self.before = pts, self.last
        elif pts != self.last and (self.before is None or pts > self.before):
            self.before = pts


def _decoded(container, stream, recent: "RecentPackets | None", ends: _LastTimes):
    """The stream's frames, each packet remembered first when skipped frames may need decoding again."""
    for packet in container.demux(stream):
        if packet.size and packet.pts is not None:
            ends.add(packet.pts)
        if recent is not None and packet.size:
            recent.add(packet)
        yield from packet.decode()


class RecentPackets:
    """The packets since the key frame before last: enough to decode again, in full, the frames the
    decoder skipped between two it kept. Bounded: past MAX_BYTES nothing is kept until the next key frame."""

    MAX_BYTES = 64 * 1024 * 1024

    def __init__(self):
        self.packets: list = []
        self.bytes = 0

    def add(self, packet) -> None:
        """Remember one packet (its data stays referenced, not copied)."""
        if packet.is_keyframe:
            keys = [i for i, p in enumerate(self.packets) if p.is_keyframe]
            if len(keys) >= 2:  # keep the previous group: open-GOP frames may lean on it
                self.packets = self.packets[keys[-1]:]
                self.bytes = sum(p.size for p in self.packets)
        elif not self.packets:
            return  # nothing decodable starts before the first key frame
        if self.bytes + packet.size > self.MAX_BYTES:
            self.packets, self.bytes = [], 0
            return
        self.packets.append(packet)
        self.bytes += packet.size

    def first_of_shot(self, stream, after_pts: int, until_pts: int, before: np.ndarray, cut_score: float,
                      size: tuple[int, int]):
        """(time, image) of the first frame strictly between two decoded frames that differs from its
        predecessor by a cut, decoding the remembered packets again with nothing skipped; None when
        no frame was skipped there, the cut is at until_pts itself, or the packets cannot tell."""
        import av

        if not any(p.pts is not None and after_pts < p.pts < until_pts for p in self.packets):
            return None
        starts = [i for i, p in enumerate(self.packets) if p.is_keyframe and p.pts is not None and p.pts <= after_pts]
        if not starts:
            return None
        decoder = av.CodecContext.create(stream.codec_context.name, "r")
        decoder.extradata = stream.codec_context.extradata
        between = []
        try:
            for packet in [*self.packets[starts[-1]:], None]:
                for frame in decoder.decode(packet):
                    if frame.pts is not None and after_pts < frame.pts < until_pts:
                        between.append(frame)
        except (av.FFmpegError, ValueError):
            return None
        previous = before
        for frame in sorted(between, key=lambda f: f.pts):
            small = frame.to_ndarray(width=_PROBE_SIZE[0], height=_PROBE_SIZE[1], format="rgb24")
            if change_score(previous, small) >= cut_score:
                return float(frame.pts * stream.time_base), frame.to_image(width=size[0], height=size[1])
            previous = small
        return None


def container_format(path: str | Path, head: bytes) -> str:
    """The catalog's format name for a video file, by its first bytes (and its extension, to tell
    WebM from other Matroska); VideoRefused when they are no container Spyglass reads."""
    from spyglass.search.media.files import format_matches

    for fmt in ("MP4", "MKV", "AVI"):
        if format_matches(fmt, head):
            return "WEBM" if fmt == "MKV" and Path(path).suffix.lower() == ".webm" else fmt
    raise VideoRefused("not a readable video: the file starts like no MP4, QuickTime, Matroska, WebM or AVI file")


def change_score(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two thumbnails, from 0 (same) to 1."""
    return float(np.mean(np.abs(a.astype(np.int16) - b.astype(np.int16)))) / 255.0


def _facts(container, max_seconds: float, max_pixels: int) -> VideoFacts:
    if not container.streams.video:
        raise VideoRefused("the file has no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    if not width or not height:
        raise VideoRefused("the video stream has no picture size")
    _check_frame_size(width, height, max_pixels)
    duration = None
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / 1_000_000  # AV_TIME_BASE
    if duration is not None and duration > max_seconds:
        raise VideoRefused(f"video is {duration:.0f} s long, over the {max_seconds:.0f} s limit "
                           "(SPYGLASS_MAX_VIDEO_SECONDS)")
    return VideoFacts(width, height, duration, stream.codec_context.name)


def _check_frame_size(width: int, height: int, max_pixels: int) -> None:
    """A video frame obeys the image pixel limit: VideoRefused naming it when it does not."""
    if width * height > max_pixels:
        raise VideoRefused(f"video frames are {width}x{height} = {width * height / 1e6:.1f} MP, over the "
                           f"{max_pixels / 1e6:.1f} MP limit (SPYGLASS_MAX_IMAGE_PIXELS)")


def _covering(width: int, height: int, cover: int) -> tuple[int, int]:
    """The size whose short side is `cover` (never larger than the frame), aspect kept, even sides."""
    scale = min(1.0, cover / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _av():
    try:
        import av
    except ImportError:
        raise VideoRefused("video needs PyAV", "pip install 'spyglass[video]'") from None
    return av


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    # FFmpeg's errors end with the file's name, which for an open file is a descriptor number.
    text = re.sub(r"^\[Errno -?\d+\] |: '[^']*'$", "", text)
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
