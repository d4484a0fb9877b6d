"""Tombstones: the ids removed or re-embedded since the segments holding them were written, in one small file."""

from __future__ import annotations

import hashlib
import io
import os
from typing import TYPE_CHECKING
from pathlib import Path

import numpy as np

from spyglass.search.errors import IndexFileError
from spyglass.search.store.flat import _fsync_dir, file_sha256, generation_filename

if TYPE_CHECKING:
    from spyglass.search.store.segmented import SegmentFile


def write_tombstones(directory: Path, removed: dict[int, int]) -> "SegmentFile":
    """The tombstones as a .npy of (id, position) rows: temp file, fsync, rename."""
    from spyglass.search.store.segmented import SegmentFile  # the segments' file record; it imports this module

    directory.mkdir(parents=True, exist_ok=True)
    rows = np.array(sorted(removed.items()), dtype=np.int64).reshape(-1, 2)
    filename = generation_filename(suffix=".tomb.npy")
    temp = directory / f".{filename}.{os.getpid()}.tmp"
    try:
        with open(temp, "wb") as handle:
            np.save(handle, rows, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        checksum = file_sha256(temp)
        os.replace(temp, directory / filename)
    finally:
        temp.unlink(missing_ok=True)
    _fsync_dir(directory)
    return SegmentFile(filename, (directory / filename).stat().st_size, checksum, len(rows))


def read_tombstones(directory: Path, file: "SegmentFile") -> dict[int, int]:
    """Tombstones read back, refused unless size and checksum match."""
    path = directory / file.filename
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise IndexFileError(f"tombstone file {path} is missing", "run `spyglass check --repair`") from None
    if len(data) != file.size or hashlib.sha256(data).hexdigest() != file.checksum:
        raise IndexFileError(f"tombstone file {path} does not match its size and checksum",
                             "it is damaged; run `spyglass check --repair`")
    rows = np.load(io.BytesIO(data), allow_pickle=False)
    return {int(i): int(at) for i, at in rows}
