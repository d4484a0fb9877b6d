"""A video's vectors: its sampled frames in chunks (decode side), thinned and pooled (encoder side).

The decode side samples frames (search.media.video_frames) and preprocesses them into chunks
of at most a batch; the encoder side embeds each chunk as it comes, drops near-duplicate
frames, and when the stream ends makes the video's VideoVectors. Memory holds a chunk or two
of pixels however long the video. The local pipeline runs the two sides in different threads;
a Ray encoder actor, which holds the model, runs them in one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

import numpy as np

from spyglass.search.media.video_frames import SamplingStats, VideoRefused, sample_frames


@dataclass(frozen=True)
class VideoRules:
    """How videos are sampled and thinned: the settings that apply to every video of a run."""

    max_gap_s: float
    max_seconds: float
    duplicate_cosine: float
    max_pixels: int  # a frame obeys the image limit, SPYGLASS_MAX_IMAGE_PIXELS
    every_frame: bool = False  # decode every frame, not only the reference frames

    @classmethod
    def of(cls, settings) -> "VideoRules":
        """The rules these settings set."""
        return cls(settings.video_max_gap, settings.max_video_seconds, settings.video_duplicate_cosine,
                   settings.max_image_pixels, settings.video_every_frame)


@dataclass
class FrameChunk:
    """Up to a batch of sampled frames, preprocessed: model input, presentation times, why kept."""

    pixels: object  # a torch tensor (frames x channels x height x width)
    times: list[float]
    reasons: list[str]


@dataclass
class VideoVectors:
    """A video's kept frames (start, end, vector, in time order), its pooled vector and poster time."""

    starts: np.ndarray  # float64 seconds
    ends: np.ndarray
    vectors: np.ndarray  # float32, one unit row per kept frame
    pooled: np.ndarray  # the duration-weighted mean of the frames, renormalised
    poster_s: float  # the start of the frame nearest the pooled vector
    duration_s: float
    width: int
    height: int
    sampled: int = 0  # frames embedded, before near-duplicates were dropped
    decoded: int = 0  # frames decoded
    reasons: dict = field(default_factory=dict)  # kept frames by why they were sampled
    shots: np.ndarray | None = None  # int32: each kept frame's shot (one more after every cut)


def frame_chunks(source: BinaryIO, cover: int, preprocess: Callable, batch_size: int, rules: VideoRules,
                 stats: SamplingStats) -> Iterator[FrameChunk]:
    """The decode side: the frames worth embedding, preprocessed, a batch at a time."""
    import torch

    pixels, times, reasons = [], [], []
    for frame in sample_frames(source, cover, rules.max_gap_s, rules.max_seconds, stats=stats,
                               max_pixels=rules.max_pixels, every_frame=rules.every_frame):
        pixels.append(preprocess(frame.image))
        times.append(frame.time_s)
        reasons.append(frame.reason)
        if len(pixels) >= batch_size:
            yield FrameChunk(torch.stack(pixels), times, reasons)
            pixels, times, reasons = [], [], []
    if pixels:
        yield FrameChunk(torch.stack(pixels), times, reasons)


class VideoAccumulator:
    """The encoder side: embedded chunks in, near-duplicates dropped, the video's vectors out.

    A sampled frame whose vector has at least `duplicate_cosine` with the last kept frame's is
    dropped, unless it starts a shot: a static shot costs one vector however long it runs. Each kept frame stands for
    the time until the next kept one; the last, until the end of the video.
    """

    def __init__(self, rules: VideoRules):
        self.rules = rules
        self.times: list[float] = []
        self.kept: list[np.ndarray] = []
        self.reasons: dict[str, int] = {}
        self.sampled = 0
        self.shots: list[int] = []
        self._shot = 0

    def add(self, chunk: FrameChunk, vectors: np.ndarray) -> None:
        """Take one chunk's vectors (row i is chunk frame i)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        self.sampled += len(vectors)
        for time_s, reason, vector in zip(chunk.times, chunk.reasons, vectors, strict=True):
            self._shot += reason == "cut"
            # The first frame of a shot is always kept: a moment can then end at the cut, however
            # alike the two shots look to the model.
            if reason != "cut" and self.kept and float(np.dot(self.kept[-1], vector)) >= self.rules.duplicate_cosine:
                continue
            self.shots.append(self._shot)
            self.times.append(time_s)
            self.kept.append(vector)
            self.reasons[reason] = self.reasons.get(reason, 0) + 1

    def finish(self, stats: SamplingStats) -> VideoVectors:
        """The video's vectors, once its stream has ended; VideoRefused when nothing could be kept,
        or when the length to be stored runs past the limit."""
        if not self.kept:
            raise VideoRefused("the video has no frame that could be decoded")
        facts = stats.facts
        starts = np.asarray(self.times, dtype=np.float64)
        # The end: the stream's stated length, or the last frame's time plus one frame.
        duration = max(facts.duration_s or 0.0, stats.last_time_s + stats.frame_step_s, float(starts[-1]))
        if duration > self.rules.max_seconds:  # the limit holds for the length stored, not only each frame's
            raise VideoRefused(f"video runs to {duration:.0f} s, over the {self.rules.max_seconds:.0f} s limit "
                               "(SPYGLASS_MAX_VIDEO_SECONDS)")
        ends = np.append(starts[1:], duration)
        vectors = np.stack(self.kept).astype(np.float32)
        pooled = pool(vectors, ends - starts)
        poster = float(starts[int(np.argmax(vectors @ pooled))])
        return VideoVectors(starts, ends, vectors, pooled, poster, duration, facts.width, facts.height,
                            sampled=self.sampled, decoded=stats.decoded, reasons=dict(self.reasons),
                            shots=np.asarray(self.shots, dtype=np.int32))


def pool(vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The weighted mean of unit vectors, renormalised (a plain mean when no weight is positive)."""
    weights = np.clip(np.asarray(weights, dtype=np.float64), 0.0, None)
    if not weights.sum() > 0:
        weights = np.ones(len(vectors))
    mean = (vectors.astype(np.float64) * weights[:, None]).sum(axis=0)
    norm = np.linalg.norm(mean)
    if not norm > 1e-9:  # frames that cancel out: the first one stands for the video
        return vectors[0].astype(np.float32)
    return (mean / norm).astype(np.float32)
