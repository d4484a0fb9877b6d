"""A generation's exact vectors as immutable segment files: one base, small deltas, and tombstones.

A publish writes only what changed: the new and re-embedded vectors as one delta segment, and
the tombstones (ids removed or re-embedded since the segments holding them were written). The
indexer compacts everything into a new base when the deltas grow (compaction_due).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spyglass.search.store.tombstones import read_tombstones, write_tombstones
from spyglass.search.store.flat import (VectorIndex, generation_filename, in_sorted, read_index_file,
                      write_index_file)

# Compact when the deltas hold more than this share of the base's entries, when this share of
# the base is dead, or when there are more delta segments than this.
DELTA_FRACTION = 0.05
DEAD_FRACTION = 0.2
MAX_DELTAS = 64


@dataclass(frozen=True)
class SegmentFile:
    """One published file: its name, size, SHA-256 and how many entries it holds."""

    filename: str
    size: int
    checksum: str
    count: int

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"file": self.filename, "size": self.size, "sha256": self.checksum, "count": self.count}

    @classmethod
    def from_dict(cls, data: dict) -> "SegmentFile":
        """Read back what to_dict wrote."""
        return cls(data["file"], int(data["size"]), data["sha256"], int(data["count"]))


@dataclass(frozen=True)
class Manifest:
    """The delta segments and tombstones of a generation (its base is in the row's own columns)."""

    deltas: tuple[SegmentFile, ...] = ()
    tombstones: SegmentFile | None = None

    def to_json(self) -> str:
        """Stored in index_generations.segments."""
        return json.dumps({"deltas": [d.to_dict() for d in self.deltas],
                           "tombstones": self.tombstones.to_dict() if self.tombstones else None})

    @classmethod
    def from_json(cls, text: str | None) -> "Manifest":
        """Read back what to_json wrote; an older row without one has just its base."""
        if not text:
            return cls()
        data = json.loads(text)
        tombstones = data.get("tombstones")
        return cls(tuple(SegmentFile.from_dict(d) for d in data.get("deltas", [])),
                   SegmentFile.from_dict(tombstones) if tombstones else None)

    def filenames(self) -> list[str]:
        """Every file it names."""
        return [d.filename for d in self.deltas] + ([self.tombstones.filename] if self.tombstones else [])

    @property
    def size(self) -> int:
        """Bytes of its files."""
        return sum(d.size for d in self.deltas) + (self.tombstones.size if self.tombstones else 0)


class SegmentedStore:
    """Exact vectors across segments, seen as one set of live entries.

    Segment 0 is the base; the last may be open (being filled, not written yet). removed[id] = r
    means the id's entries in the segments before position r are dead: it was removed or
    re-embedded after they were written. An id has at most one live entry.
    """

    def __init__(self, dim: int, segments: list[VectorIndex], files: list[SegmentFile | None],
                 removed: dict[int, int] | None = None, tombstones: SegmentFile | None = None,
                 storage: str = "float32"):
        self._dim = dim
        self.storage = storage  # of the segments it writes from now on: float32 or float16
        self.segments = segments
        self.files = files  # None for the open segment
        self.removed = dict(removed or {})
        self.tombstones = tombstones  # the file that holds `removed`, while it is unchanged
        self._invalidate()

    @classmethod
    def empty(cls, dim: int, storage: str = "float32") -> "SegmentedStore":
        """No segments yet: the first adds open the base."""
        return cls(dim, [], [], storage=storage)

    @classmethod
    def single(cls, segment: VectorIndex) -> "SegmentedStore":
        """One segment, held in memory, seen as a store (what an approximate index is built over)."""
        return cls(segment.dim, [segment], [None])

    @classmethod
    def load(cls, directory: Path, base: SegmentFile, manifest: Manifest, cache: dict | None = None,
             mmap: bool = False) -> "SegmentedStore":
        """Read a generation's segments and tombstones, each checked against its size and checksum.

        `cache` maps (file name, checksum) to segments already read: a worker that switches to
        the next generation reads only its new delta.
        """
        files = [base, *manifest.deltas]
        segments = []
        for file in files:
            key = (file.filename, file.checksum)
            segment = cache.get(key) if cache is not None else None
            if segment is None:
                segment = read_index_file(directory / file.filename, file.size, file.checksum, mmap=mmap)
            segments.append(segment)
        removed = read_tombstones(directory, manifest.tombstones) if manifest.tombstones else {}
        return cls(segments[0].dim, segments, files, removed, manifest.tombstones)

    def damaged_files(self, directory: Path) -> list[str]:
        """The written segment files whose size on disk is no longer the recorded one.

        Segments are memory-mapped: a file truncated under a reader would kill it with SIGBUS
        at the next page it touches. One stat a file, cheap enough to do before each request.
        """
        damaged = []
        for file in self.files:
            if file is None:
                continue
            try:
                size = os.stat(directory / file.filename).st_size
            except OSError:
                size = -1
            if size != file.size:
                damaged.append(file.filename)
        return damaged

    # -- what the store holds ------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self._dim

    def __len__(self) -> int:
        return len(self.sorted_ids())

    def ids(self) -> np.ndarray:
        """Every live id (int64)."""
        return self.sorted_ids()

    def sorted_ids(self) -> np.ndarray:
        """Every live id, sorted; computed once until the next change."""
        if self._live is None:
            parts = [segment.ids()[self._alive(segment.ids(), position)]
                     for position, segment in enumerate(self.segments)]
            self._live = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        return self._live

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Which of these ids have a live entry (a boolean mask)."""
        return in_sorted(self.sorted_ids(), np.asarray(ids, dtype=np.int64))

    def live_in_base(self, ids: np.ndarray) -> np.ndarray:
        """Which of these ids have their live entry in the base (what an approximate index covers)."""
        ids = np.asarray(ids, dtype=np.int64)
        if not self.segments:
            return np.zeros(len(ids), dtype=bool)
        return self.segments[0].contains(ids) & self._alive(ids, 0)

    def dead_count(self) -> int:
        """Entries that are dead but still in a segment file."""
        return sum(len(segment) for segment in self.segments) - len(self)

    def vector(self, item_id: int) -> np.ndarray:
        """The live vector of one id (KeyError when it has none)."""
        return self.vectors(np.asarray([item_id], dtype=np.int64))[0]

    def vectors(self, ids) -> np.ndarray:
        """The live vectors of these ids, in their order (KeyError for an id without one)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        todo = np.ones(len(ids), dtype=bool)
        for position in range(len(self.segments) - 1, -1, -1):  # newest first
            if not todo.any():
                break
            candidates = np.nonzero(todo)[0]
            held = self.segments[position].contains(ids[candidates])
            rows = candidates[held]
            if not len(rows):
                continue
            dead = ~self._alive(ids[rows], position)
            if dead.any():  # its newest entry is dead, so every older one is too
                raise KeyError(int(ids[rows][dead][0]))
            out[rows] = self.segments[position].vectors(ids[rows])
            todo[rows] = False
        if todo.any():
            raise KeyError(int(ids[todo][0]))
        return out

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k (scores, ids) over the live entries; -1 ids pad short rows."""
        return self.search_segments(queries, k, range(len(self.segments)))

    def search_segments(self, queries: np.ndarray, k: int, positions) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the live entries of some segments (the deltas, beside an approximate base)."""
        import faiss

        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        all_scores, all_ids = [np.full((len(queries), 0), -np.inf, np.float32)], [np.zeros((len(queries), 0), np.int64)]
        for position in positions:
            segment = self.segments[position]
            if not len(segment):
                continue
            dead = self._dead_in(position)
            want = min(k, len(segment))
            if len(dead):
                selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(dead))
                scores, ids = segment.index.search(queries, want, params=faiss.SearchParameters(sel=selector))
            else:
                scores, ids = segment.search(queries, want)
            all_scores.append(np.where(ids >= 0, scores, -np.inf).astype(np.float32))
            all_ids.append(ids)
        return top_k(np.concatenate(all_scores, axis=1), np.concatenate(all_ids, axis=1), k)

    def all_vectors(self, chunk: int = 65536):
        """(ids, vectors) of every live entry, chunk by chunk."""
        for position, segment in enumerate(self.segments):
            for ids, vectors in segment.all_vectors(chunk):
                alive = self._alive(ids, position)
                if alive.any():
                    yield ids[alive], vectors[alive]

    def on_search_device(self):
        """A GPU copy when FAISS sees a GPU and the store is one segment without dead entries."""
        if len(self.segments) == 1 and not self.removed:
            device = self.segments[0].on_search_device()
            if device is not self.segments[0]:
                return device
        return self

    # -- changes (the indexer) -----------------------------------------------------------

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under ids that have no live entry, to the open segment."""
        if not len(ids):
            return
        if not self.segments or self.files[-1] is not None:
            self.segments.append(VectorIndex.empty(self.dim, self.storage))
            self.files.append(None)
        self.segments[-1].add(np.asarray(ids, dtype=np.int64), vectors)
        self._invalidate()

    def remove(self, ids) -> int:
        """Remove these ids' live entries; returns how many had one."""
        ids = np.unique(np.asarray(list(ids), dtype=np.int64))
        live = ids[self.contains(ids)]
        if not len(live):
            return 0
        closed = len(self.segments) - (1 if self.segments and self.files[-1] is None else 0)
        if closed < len(self.segments):  # entries not written yet simply go
            self.segments[-1].remove(live)
        if closed:  # entries in written segments die by tombstone
            for item_id in live.tolist():
                self.removed[item_id] = closed
            self.tombstones = None
        self._invalidate()
        return len(live)

    def write(self, directory: Path) -> tuple[SegmentFile, Manifest, int]:
        """Write the open segment (a new delta, or the base) and the tombstones.

        Returns the base, the manifest and the bytes written; files already written are kept.
        """
        written = 0
        if not self.segments:  # an empty library still has a base
            self.segments.append(VectorIndex.empty(self.dim, self.storage))
            self.files.append(None)
        if self.files[-1] is None:
            filename = generation_filename()
            size, checksum = write_index_file(self.segments[-1], directory, filename)
            self.files[-1] = SegmentFile(filename, size, checksum, len(self.segments[-1]))
            written += size
        if self.removed and self.tombstones is None:
            self.tombstones = write_tombstones(directory, self.removed)
            written += self.tombstones.size
        return self.files[0], Manifest(tuple(self.files[1:]), self.tombstones), written

    def compaction_due(self) -> bool:
        """Whether the deltas or the dead entries have grown enough to write a new base."""
        if len(self.segments) <= 1 and not self.removed:
            return False
        base = max(len(self.segments[0]), 1) if self.segments else 1
        deltas = sum(len(segment) for segment in self.segments[1:])
        dead = self.dead_count()
        return deltas > DELTA_FRACTION * base or dead > DEAD_FRACTION * base or len(self.segments) > MAX_DELTAS + 1

    @property
    def segment_count(self) -> int:
        """How many segments it has: the base and the deltas."""
        return len(self.segments)

    def changes_since_base(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """What an approximate index over the base needs to cover the whole store: the base ids
        now dead (removed, or re-embedded into a delta), and the ids and vectors live in deltas."""
        if not self.segments:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), None
        base = self.segments[0].ids()
        gone = base[~self.live_in_base(base)]
        moved = [(ids, vectors) for position in range(1, len(self.segments))
                 for ids, vectors in self.segments[position].all_vectors()]
        if not moved:
            return gone, np.zeros(0, np.int64), None
        ids = np.concatenate([i for i, _ in moved])
        vectors = np.concatenate([v for _, v in moved])
        alive = self.contains(ids) & ~self.live_in_base(ids)
        return gone, ids[alive], vectors[alive]

    def compacted(self) -> "SegmentedStore":
        """A store of one open segment holding every live entry, and no tombstones: in this store's
        storage, so segments written in another one are converted here."""
        base = VectorIndex.empty(self.dim, self.storage)
        for ids, vectors in self.all_vectors():
            base.add(ids, vectors)
        return SegmentedStore(self.dim, [base], [None], storage=self.storage)

    # -- internals -----------------------------------------------------------------------

    def _invalidate(self) -> None:
        self._live: np.ndarray | None = None
        self._dead: dict[int, np.ndarray] = {}
        if self.removed:
            order = np.fromiter(self.removed.keys(), dtype=np.int64, count=len(self.removed))
            at = np.fromiter(self.removed.values(), dtype=np.int64, count=len(self.removed))
            sort = np.argsort(order)
            self._removed_ids, self._removed_at = order[sort], at[sort]
        else:
            self._removed_ids = self._removed_at = np.zeros(0, np.int64)

    def _alive(self, ids: np.ndarray, position: int) -> np.ndarray:
        """Which entries of these ids in the segment at `position` are live."""
        if not len(self._removed_ids):
            return np.ones(len(ids), dtype=bool)
        where = np.minimum(np.searchsorted(self._removed_ids, ids), len(self._removed_ids) - 1)
        hit = self._removed_ids[where] == ids
        return ~hit | (self._removed_at[where] <= position)

    def _dead_in(self, position: int) -> np.ndarray:
        if position not in self._dead:
            candidates = self._removed_ids[self._removed_at > position]
            self._dead[position] = candidates[self.segments[position].contains(candidates)] if len(candidates) else candidates
        return self._dead[position]


def top_k(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best of each row, best first (ties by id), padded with -inf / -1."""
    rows = len(scores)
    if scores.shape[1] < k:
        pad = k - scores.shape[1]
        scores = np.concatenate([scores, np.full((rows, pad), -np.inf, np.float32)], axis=1)
        ids = np.concatenate([ids, np.full((rows, pad), -1, np.int64)], axis=1)
    order = np.lexsort((ids, -scores), axis=1)[:, :k] if rows else np.zeros((0, k), np.int64)
    top_scores = np.take_along_axis(scores, order, axis=1)
    top_ids = np.where(np.isfinite(top_scores), np.take_along_axis(ids, order, axis=1), -1)
    return top_scores, top_ids
