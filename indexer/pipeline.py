"""Decode in worker threads while the encoder embeds the previous batch."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from spyglass.search.errors import SpyglassError

from .decode import LoadedFile
from .scan import FoundFile, Skipped


@dataclass
class EmbeddedBatch:
    """Files embedded together, row i of vectors belonging to files[i]."""

    files: list[LoadedFile]
    vectors: np.ndarray


PipelineEvent = EmbeddedBatch | LoadedFile | Skipped


def embed_files(files: Iterable[FoundFile], load: Callable[[FoundFile], LoadedFile],
                encode: Callable[[object], np.ndarray], batch_size: int, workers: int,
                prefetch_batches: int = 2) -> Iterator[PipelineEvent]:
    """Yield embedded batches, files that needed no embedding, and skipped files, in order.

    Decoding (Pillow and torch release the GIL) runs in `workers` threads, kept up to
    `prefetch_batches` batches ahead, so the encoder does not wait on decoding.
    """
    import torch

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
            pending.append(pool.submit(_load_or_skip, load, found))

    try:
        refill()
        while pending:
            result = pending.popleft().result()
            refill()
            if isinstance(result, LoadedFile) and result.pixels is not None:
                batch.append(result)
                if len(batch) == batch_size:
                    yield EmbeddedBatch(batch, encode(torch.stack([f.pixels for f in batch])))
                    batch = []
            else:
                yield result
        if batch:
            yield EmbeddedBatch(batch, encode(torch.stack([f.pixels for f in batch])))
    finally:
        # On an interrupt, drop the queued files instead of decoding them all first.
        pool.shutdown(wait=True, cancel_futures=True)


def _load_or_skip(load: Callable[[FoundFile], LoadedFile], found: FoundFile) -> LoadedFile | Skipped:
    # One bad file must never stop the batch: every failure becomes a skip with its reason.
    try:
        return load(found)
    except SpyglassError as exc:
        return Skipped(found.path, str(exc))
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on hostile input
        return Skipped(found.path, f"not a readable image: {type(exc).__name__}: {exc}")
