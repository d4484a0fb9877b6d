"""FAISS flat indexes keyed by catalog ids (the segments of the exact vectors), and their files:
written atomically, checked before they are read, never rewritten."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import threading
import uuid
from pathlib import Path

import numpy as np

from spyglass.search.errors import IndexFileError


# SPYGLASS_VECTOR_STORAGE -> the FAISS factory of a segment.
STORAGE_FACTORIES = {"float32": "IDMap2,Flat", "float16": "IDMap2,SQfp16"}


class VectorIndex:
    """Inner-product search over unit vectors whose ids are MediaItem primary keys."""

    def __init__(self, index):
        self.index = index
        self._sorted_ids: np.ndarray | None = None

    @classmethod
    def empty(cls, dim: int, storage: str = "float32") -> "VectorIndex":
        """A new segment of exact vectors: a flat index in an id map (see segments.SegmentedStore),
        its vectors as float32 or float16 (FAISS's SQfp16, decoded to float32 to score)."""
        import faiss

        return cls(faiss.index_factory(dim, STORAGE_FACTORIES[storage], faiss.METRIC_INNER_PRODUCT))

    @property
    def storage(self) -> str:
        """The number format its vectors are stored in: float32 or float16."""
        import faiss

        inner = faiss.downcast_index(self.index.index) if hasattr(self.index, "id_map") else self.index
        return "float16" if isinstance(inner, faiss.IndexScalarQuantizer) else "float32"

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Which of these ids the segment holds (a boolean mask)."""
        return in_sorted(self.sorted_ids(), np.asarray(ids, dtype=np.int64))

    def sorted_ids(self) -> np.ndarray:
        """Every id held, sorted; computed once until the next add or remove."""
        if self._sorted_ids is None:
            self._sorted_ids = np.sort(self.ids())
        return self._sorted_ids

    @property
    def dim(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return self.index.ntotal

    def ids(self) -> np.ndarray:
        """Every id in the index (int64)."""
        import faiss

        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under the given ids (ids must not be present yet)."""
        self._sorted_ids = None
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                    np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids) -> int:
        """Remove these ids; returns how many were present."""
        ids = np.ascontiguousarray(np.asarray(list(ids), dtype=np.int64))
        self._sorted_ids = None
        return int(self.index.remove_ids(ids)) if len(ids) else 0

    def vectors(self, ids) -> np.ndarray:
        """The stored vectors of these ids, in their order (KeyError for an id not held)."""
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        try:
            return self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
        except RuntimeError:
            raise KeyError(next(i for i in ids if not self.contains(np.asarray([i]))[0])) from None

    def all_vectors(self, chunk: int = 65536):
        """(ids, vectors) of everything held, chunk by chunk, in storage order."""
        import faiss

        ids = self.ids()
        inner = faiss.downcast_index(self.index.index)
        for start in range(0, len(ids), chunk):
            count = min(chunk, len(ids) - start)
            yield ids[start:start + count], inner.reconstruct_n(start, count)

    def vector(self, item_id: int) -> np.ndarray:
        """The stored vector of one id."""
        try:
            return self.index.reconstruct(int(item_id))
        except RuntimeError:
            raise KeyError(item_id) from None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; missing slots are dropped by the caller (id -1)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        return self.index.search(queries, min(k, max(len(self), 1)))

    def on_search_device(self) -> "VectorIndex":
        """A copy on the GPUs when FAISS sees any, else this same index."""
        import faiss

        if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
            try:
                return GpuIndex(faiss.index_cpu_to_all_gpus(self.index), self)
            except RuntimeError:  # a type FAISS's GPU code does not copy: search it on the CPU
                return self
        return self


# FAISS GPU searches select at most this many neighbours (GPU_MAX_SELECTION_K).
GPU_MAX_K = 2048


class GpuIndex(VectorIndex):
    """A GPU copy for searching, with the CPU index beside it.

    FAISS GPU indexes are not thread-safe, so searches take turns on one lock; a search for
    more neighbours than the GPU can select goes to the CPU copy instead of failing.
    """

    def __init__(self, index, cpu: VectorIndex):
        super().__init__(index)
        self.cpu = cpu
        self._lock = threading.Lock()

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k on the GPU, or on the CPU past GPU_MAX_K."""
        if min(k, max(len(self), 1)) > GPU_MAX_K:
            return self.cpu.search(queries, k)
        with self._lock:
            return super().search(queries, k)

    def vector(self, item_id: int) -> np.ndarray:
        """Stored vectors are read from the CPU copy."""
        return self.cpu.vector(item_id)

    def vectors(self, ids) -> np.ndarray:
        """Stored vectors are read from the CPU copy."""
        return self.cpu.vectors(ids)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Membership is read from the CPU copy."""
        return self.cpu.contains(ids)


def in_sorted(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which of ids appear in the sorted array sorted_ids (a boolean mask)."""
    if not len(sorted_ids):
        return np.zeros(len(ids), dtype=bool)
    where = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[where] == ids


def generation_filename(suffix: str = ".faiss") -> str:
    """A fresh, never reused file name for the next generation."""
    return f"gen-{uuid.uuid4().hex}{suffix}"


def write_index_file(index: VectorIndex, directory: Path, filename: str) -> tuple[int, str]:
    """Write to a temp file, fsync, then rename into place; returns (size, sha256).

    faiss.write_index truncates its target first, so it never writes a name a reader might open.
    """
    import faiss

    directory.mkdir(parents=True, exist_ok=True)
    final = directory / filename
    temp = directory / f".{filename}.{os.getpid()}.tmp"
    try:
        try:
            faiss.write_index(index.index, str(temp))
        except RuntimeError as exc:
            raise _write_error(exc, final) from None
        checksum = file_sha256(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(directory)
    return final.stat().st_size, checksum


def read_index_file(path: Path, size: int | None = None, checksum: str | None = None,
                    mmap: bool = False) -> VectorIndex:
    """Load a generation, refusing a file whose size or checksum is not the recorded one.

    With mmap the vectors stay in the file's pages, which every worker process shares.
    """
    return VectorIndex(read_faiss_file(path, size, checksum, mmap))


def read_faiss_file(path: Path, size: int | None = None, checksum: str | None = None, mmap: bool = False):
    """A FAISS index read from a file whose size and checksum are checked first."""
    import faiss

    try:
        actual_size = path.stat().st_size
    except FileNotFoundError:
        raise IndexFileError(f"index file {path} is missing",
                             "run `spyglass index --rebuild` to rebuild it") from None
    if size is not None and actual_size != size:
        raise IndexFileError(f"index file {path} is {actual_size} bytes, the catalog says {size}",
                             "it is truncated or was replaced; run `spyglass check --repair`")
    if checksum is not None and file_sha256(path) != checksum:
        raise IndexFileError(f"index file {path} does not match its checksum",
                             "it is corrupted; run `spyglass check --repair`")
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0)
    except RuntimeError as exc:
        raise IndexFileError(f"index file {path} could not be read: {_faiss_reason(exc)}",
                             "run `spyglass index --rebuild`") from None


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_error(exc: RuntimeError, path: Path) -> Exception:
    """FAISS reports a failed write as a RuntimeError with strerror at its end: a full disk
    becomes the OSError it is (so every command says it in one line), anything else stays."""
    text = str(exc)
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
        if f"({os.strerror(code)})" in text:
            return OSError(code, os.strerror(code), str(path))
    return exc


def _faiss_reason(exc: Exception) -> str:
    # FAISS prefixes its messages with the C++ function and source line; users need the rest.
    return re.sub(r"^Error in .*? at \S+:\d+: ", "", str(exc).strip())[:300]


def _fsync_dir(directory: Path) -> None:
    # The rename itself is only durable once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
