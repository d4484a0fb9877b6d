"""Decode in worker threads and embed in one encoder thread, while the caller writes the results."""

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

from .decode import LoadedFile
from .scan import FoundFile, Skipped
from .video_frames import is_video


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


def serialised(encode: Callable[[object], np.ndarray]) -> Callable[[object], np.ndarray]:
    """The encoder, one call at a time: video frames embedded by decode threads take turns with
    the image batches, instead of two forward passes fighting over the same cores."""
    lock = threading.Lock()

    def locked(pixels) -> np.ndarray:
        with lock:
            return encode(pixels)
    return locked


def embed_files(files: Iterable[FoundFile], load: Callable[[FoundFile], LoadedFile],
                encode: Callable[[object], np.ndarray], batch_size: int, workers: int,
                prefetch_batches: int = 2, stats: PipelineStats | None = None) -> Iterator[PipelineEvent]:
    """Yield embedded batches, files that needed no embedding, and skipped files, in order.

    Three stages overlap: `workers` threads read and decode (Pillow and torch release the GIL),
    kept up to `prefetch_batches` batches ahead; one thread stacks and encodes; the caller, which
    writes what it is given (SQL), runs meanwhile. `stats`, when given, is filled in as it runs.
    """
    stats = stats if stats is not None else PipelineStats()
    # A few events: the encoder runs at most a few batches ahead of what the caller has written.
    events: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()
    started = time.perf_counter()
    encoder = threading.Thread(target=_encoder_loop, name="spyglass-encoder", daemon=True,
                               args=(files, load, encode, batch_size, workers, prefetch_batches, stats, events, stop))
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
                  events: queue.Queue, stop: threading.Event) -> None:
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

    def embed(batch: list[LoadedFile]) -> bool:
        began = time.perf_counter()
        vectors = encode(torch.stack([f.pixels for f in batch]))
        stats.encode_seconds += time.perf_counter() - began
        stats.batches += 1
        return put(EmbeddedBatch(batch, vectors))

    limit = batch_size * (prefetch_batches + 1)
    remaining = iter(files)
    pending: deque[Future] = deque()
    batch: list[LoadedFile] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spyglass-decode")

    def refill() -> None:
        while len(pending) < limit:
            found = next(remaining, None)
            if found is None:
                return
            pending.append(pool.submit(load_or_skip, load, found))

    try:
        refill()
        while pending and not stop.is_set():
            waited = time.perf_counter()
            result = pending.popleft().result()
            wait = time.perf_counter() - waited
            stats.decode_wait_seconds += wait
            if not stats.batches:
                stats.first_batch_wait_seconds += wait
            refill()
            if isinstance(result, LoadedFile) and result.video is not None:
                # A video was embedded frame batch by frame batch in its decode thread.
                if not put(EmbeddedBatch([result], result.vector[None, :])):
                    return
            elif isinstance(result, LoadedFile) and result.pixels is not None:
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
        # On an interrupt, drop the queued files instead of decoding them all first.
        pool.shutdown(wait=True, cancel_futures=True)


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
        what = "video" if is_video(found.path) else "image"
        return Skipped(found.path, f"not a readable {what}: {type(exc).__name__}: {exc}")
