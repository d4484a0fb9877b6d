"""Decode in worker threads and embed in one encoder thread, while the caller writes the results.

Decode threads only read: they hash, decode and preprocess, and a video's thread samples its
frames and hands them over in chunks. Every forward pass, of image batches and video chunks
alike, runs in the encoder thread, which also thins and pools each video's frames.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from spyglass.search.errors import SpyglassError, Transient
from spyglass.search.media.audio import is_audio
from spyglass.search.media.video_frames import VideoRefused, is_video

from .decode import LoadedFile
from .scan import FoundFile, Skipped
from .video_vectors import FrameChunk, VideoAccumulator, VideoRules


@dataclass
class EmbeddedBatch:
    """Files embedded together, row i of vectors belonging to files[i]."""

    files: list[LoadedFile]
    vectors: np.ndarray


PipelineEvent = EmbeddedBatch | LoadedFile | Skipped


@dataclass
class PipelineStats:
    """Where the encoder thread's time went: the first batch's wait is start-up, not steady state."""

    seconds: float = 0.0  # from the first submitted file to the last event
    encode_seconds: float = 0.0
    decode_wait_seconds: float = 0.0  # waiting for decoded files while a batch was being filled
    first_batch_wait_seconds: float = 0.0  # of decode_wait_seconds, before the first batch was full
    write_wait_seconds: float = 0.0  # waiting for the caller to take events (back-pressure)
    batches: int = 0

    @property
    def steady_seconds(self) -> float:
        """The time after the first batch was full."""
        return self.seconds - self.first_batch_wait_seconds

    @property
    def busy(self) -> float:
        """Fraction of the steady-state time the encoder was computing."""
        return self.encode_seconds / self.steady_seconds if self.steady_seconds > 0 else 0.0

    def line(self) -> str:
        """'encoder busy 97% of 12.1 s (0.2 s waiting for decodes, 0.1 s for writes; 1.3 s to the first batch)'."""
        return (f"encoder busy {100 * self.busy:.0f}% of {self.steady_seconds:.1f} s "
                f"({self.decode_wait_seconds - self.first_batch_wait_seconds:.1f} s waiting for decodes, "
                f"{self.write_wait_seconds:.1f} s for writes; {self.first_batch_wait_seconds:.1f} s to "
                f"the first batch), {self.batches} batches")


_DONE = object()
_END = object()  # the last thing a video's frame queue holds
# Chunks of one video waiting for the encoder: its decode thread stops this far ahead.
_VIDEO_CHUNKS_AHEAD = 2


class _Stopped(Exception):
    """The pipeline was stopped while a decode thread was handing over frames."""


@dataclass
class _Pending:
    future: Future
    frames: queue.Queue | None  # a video's chunks, while its decode thread samples it


def embed_files(files: Iterable[FoundFile], load: Callable[..., LoadedFile],
                encode: Callable[[object], np.ndarray], batch_size: int, workers: int,
                prefetch_batches: int = 2, stats: PipelineStats | None = None,
                video: VideoRules | None = None,
                encode_texts: Callable[[list[str]], np.ndarray] | None = None) -> Iterator[PipelineEvent]:
    """Yield embedded batches, files that needed no embedding, and skipped files, in order.

    Three stages overlap: `workers` threads read and decode (Pillow and torch release the GIL),
    kept up to `prefetch_batches` batches ahead; one thread stacks and encodes; the caller, which
    writes what it is given (SQL), runs meanwhile. With `video`, a video's load is called with
    `emit=`, through which its decode thread hands over frame chunks; the encoder embeds them
    when the video's turn comes, and yields the video as a batch of one (its pooled vector).
    The pool takes files in order, so whatever comes before a video is decoding or done, and
    the encoder, taking them in the same order, never waits on a thread that waits on it.
    An audio file comes back with a text (its name as words), which `encode_texts` embeds in the
    encoder thread, as a batch of one. `stats`, when given, is filled in as it runs.
    """
    stats = stats if stats is not None else PipelineStats()
    # A few events: the encoder runs at most a few batches ahead of what the caller has written.
    events: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()
    started = time.perf_counter()
    encoder = threading.Thread(target=_encoder_loop, name="spyglass-encoder", daemon=True,
                               args=(files, load, encode, batch_size, workers, prefetch_batches, stats, events,
                                     stop, video, encode_texts))
    encoder.start()
    try:
        while True:
            event = events.get()
            if event is _DONE:
                return
            if isinstance(event, BaseException):
                raise event
            yield event
    finally:
        stop.set()
        while encoder.is_alive():  # unblock a put, then let it see the stop
            try:
                events.get(timeout=0.05)
            except queue.Empty:
                pass
        stats.seconds = time.perf_counter() - started


def _encoder_loop(files, load, encode, batch_size, workers, prefetch_batches, stats: PipelineStats,
                  events: queue.Queue, stop: threading.Event, video: VideoRules | None, encode_texts) -> None:
    import torch

    def put(event) -> bool:
        waited = time.perf_counter()
        while not stop.is_set():
            try:
                events.put(event, timeout=0.1)
                stats.write_wait_seconds += time.perf_counter() - waited
                return True
            except queue.Full:
                continue
        return False

    def encoded(pixels) -> np.ndarray:
        began = time.perf_counter()
        vectors = encode(pixels)
        stats.encode_seconds += time.perf_counter() - began
        stats.batches += 1
        return vectors

    def embed(batch: list[LoadedFile]) -> bool:
        return put(EmbeddedBatch(batch, encoded(torch.stack([f.pixels for f in batch]))))

    limit = batch_size * (prefetch_batches + 1)
    remaining = iter(files)
    pending: deque[_Pending] = deque()
    batch: list[LoadedFile] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spyglass-decode")

    def refill() -> None:
        while len(pending) < limit:
            found = next(remaining, None)
            if found is None:
                return
            streamed = video is not None and is_video(found.path)
            frames = queue.Queue(maxsize=_VIDEO_CHUNKS_AHEAD) if streamed else None
            pending.append(_Pending(pool.submit(_load_streaming, load, found, frames, stop), frames))

    try:
        refill()
        while pending and not stop.is_set():
            head = pending.popleft()
            waited = time.perf_counter()
            accumulator = _embed_frames(head.frames, video, encoded, stop) if head.frames is not None else None
            result = head.future.result()
            wait = time.perf_counter() - waited
            stats.decode_wait_seconds += wait
            if not stats.batches:
                stats.first_batch_wait_seconds += wait
            refill()
            if isinstance(result, LoadedFile) and result.sampling is not None:
                result = _finished(result, accumulator)
                if isinstance(result, LoadedFile):
                    result = EmbeddedBatch([result], result.vector[None, :])
            if isinstance(result, LoadedFile) and result.text is not None:
                result = EmbeddedBatch([result], encoded_texts(encode_texts, [result.text]))
            if isinstance(result, LoadedFile) and result.pixels is not None:
                batch.append(result)
                if len(batch) == batch_size:
                    if not embed(batch):
                        return
                    batch = []
            elif not put(result):
                return
        if batch and not stop.is_set() and not embed(batch):
            return
        put(_DONE)
    except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread, which raises it
        put(exc)
    finally:
        stop.set()  # a decode thread still handing over frames gives up
        # On an interrupt, drop the queued files instead of decoding them all first.
        pool.shutdown(wait=True, cancel_futures=True)


def encoded_texts(encode_texts, texts: list[str]) -> np.ndarray:
    """Texts through the text tower, as float32 rows."""
    if encode_texts is None:
        raise RuntimeError("an audio file reached a pipeline without a text encoder")
    return np.asarray(encode_texts(texts), dtype=np.float32)


def _embed_frames(frames: queue.Queue, rules: VideoRules, encoded, stop: threading.Event) -> VideoAccumulator:
    """Embed a video's chunks as its decode thread hands them over, until it says it is done."""
    accumulator = VideoAccumulator(rules)
    while True:
        try:
            chunk = frames.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return accumulator
            continue
        if chunk is _END:
            return accumulator
        accumulator.add(chunk, encoded(chunk.pixels))


def _finished(loaded: LoadedFile, accumulator: VideoAccumulator) -> LoadedFile | Skipped:
    """A sampled video with its vectors, or a skip when none could be kept (or it runs too long)."""
    try:
        loaded.video = accumulator.finish(loaded.sampling)
    except VideoRefused as exc:
        return Skipped(loaded.file.path, str(exc))
    return loaded


def _load_streaming(load, found: FoundFile, frames: queue.Queue | None, stop: threading.Event):
    """load_or_skip in a decode thread; a video's chunks go to its queue, which always ends with _END."""
    if frames is None:
        return load_or_skip(load, found)

    def emit(chunk: FrameChunk) -> None:
        while not stop.is_set():
            try:
                frames.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Stopped

    try:
        return load_or_skip(lambda f: load(f, emit=emit), found)
    finally:
        while not stop.is_set():
            try:
                frames.put(_END, timeout=0.1)
                break
            except queue.Full:
                continue


def load_or_skip(load: Callable[[FoundFile], LoadedFile], found: FoundFile) -> LoadedFile | Skipped:
    """Load one file; any failure becomes a skip with its reason, so one bad file never stops
    the batch. A failure about the moment (memory, a read fault) is a skip that is not remembered."""
    try:
        return load(found)
    except SpyglassError as exc:
        return Skipped(found.path, str(exc), lasting=not isinstance(exc, Transient))
    except MemoryError:
        return Skipped(found.path, "the memory ran out while reading it", lasting=False)
    except OSError as exc:  # a read fault of the disk or the network share, not of the file's content
        return Skipped(found.path, f"cannot read it: {exc.strerror or exc}", lasting=False)
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on hostile input
        what = "video" if is_video(found.path) else "audio file" if is_audio(found.path) else "image"
        return Skipped(found.path, f"not a readable {what}: {type(exc).__name__}: {exc}")
