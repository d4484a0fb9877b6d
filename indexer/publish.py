"""Commit a batch of catalog changes and the index generation that matches them, atomically."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.catalog import live_generation
from spyglass.search.failpoints import failpoint
from spyglass.search.schema import (ANN_COLUMNS, LEASE_SECONDS, IndexGeneration, IndexReader, ItemLabel, MediaItem,
                                    utcnow)
from spyglass.search.vectors import VectorIndex, generation_filename, write_index_file

from .ann_carry import CarriedAnn
from .staging import unstage

# Generations kept on disk besides the live one, for readers that loaded it a moment ago.
KEEP_PREVIOUS_GENERATIONS = 1
_DELETE_CHUNK = 500


@dataclass
class PendingChanges:
    """Catalog and vector changes collected since the last publish."""

    new: list[tuple[dict, np.ndarray]] = field(default_factory=list)
    reembedded: list[tuple[int, dict, np.ndarray]] = field(default_factory=list)
    touched: list[tuple[int, dict]] = field(default_factory=list)
    removed: set[int] = field(default_factory=set)
    staged_model: str = ""  # whose staged vectors these new vectors are

    @property
    def vector_count(self) -> int:
        """Vectors waiting to be published."""
        return len(self.new) + len(self.reembedded)

    def changes_vectors(self) -> bool:
        """Whether publishing needs a new index generation."""
        return bool(self.new or self.reembedded or self.removed)

    def clear(self) -> None:
        """Forget everything, after a publish."""
        self.new, self.reembedded, self.touched, self.removed = [], [], [], set()

    def embedded_paths(self) -> list[str]:
        """Paths whose new vectors this holds."""
        return [f["path"] for f, _ in self.new] + [f["path"] for _, f, _ in self.reembedded]

    def __bool__(self) -> bool:
        return bool(self.new or self.reembedded or self.touched or self.removed)


def publish(sessions: sessionmaker[Session], index: VectorIndex, index_dir: Path, model_id: int,
            factory: str, changes: PendingChanges, force_generation: bool = False,
            ann: CarriedAnn | None = None) -> int | None:
    """Apply changes to the catalog and the index; returns the new live generation id, if any.

    `index` is the store of exact vectors; `ann`, when the live generation has one, is its
    approximate index, which gets the same changes.

    The index file is written and renamed into place inside the SQL transaction, and the
    generation row that names it commits with the item rows: a crash at any point leaves the
    previous generation live and consistent with the catalog.
    """
    generation_id = None
    with sessions.begin() as session:
        rows = [MediaItem(**fields) for fields, _ in changes.new]
        session.add_all(rows)
        session.flush()  # assigns the ids that become FAISS ids
        updates = [{"id": item_id, **fields} for item_id, fields in changes.touched]
        updates += [{"id": item_id, **fields} for item_id, fields, _ in changes.reembedded]
        if updates:
            session.execute(update(MediaItem), updates)
        reembedded = [item_id for item_id, _, _ in changes.reembedded]
        for start in range(0, len(reembedded), _DELETE_CHUNK):  # their labels were of the old vectors
            session.execute(delete(ItemLabel).where(ItemLabel.item_id.in_(reembedded[start:start + _DELETE_CHUNK])))
        removed = sorted(changes.removed)
        for start in range(0, len(removed), _DELETE_CHUNK):
            chunk = removed[start:start + _DELETE_CHUNK]
            session.execute(delete(MediaItem).where(MediaItem.id.in_(chunk)))
        if changes.staged_model:
            unstage(session, changes.staged_model, changes.embedded_paths())
        if changes.changes_vectors() or force_generation:
            index.remove([item_id for item_id, _, _ in changes.reembedded] + removed)
            vectors = [v for _, v in changes.new] + [v for _, _, v in changes.reembedded]
            ids = [row.id for row in rows] + [item_id for item_id, _, _ in changes.reembedded]
            if ids:
                index.add(np.asarray(ids, dtype=np.int64), np.stack(vectors))
            filename = generation_filename()
            size, checksum = write_index_file(index, index_dir, filename)
            ann_fields = {}
            if ann is not None:
                ann.update([item_id for item_id, _, _ in changes.reembedded] + removed,
                           np.asarray(ids, dtype=np.int64), np.stack(vectors) if vectors else None)
                ann_fields = write_ann(ann, index_dir)
            generation = IndexGeneration(model_id=model_id, factory=factory, filename=filename,
                                         vector_count=len(index), size_bytes=size,
                                         checksum=checksum, created_at=utcnow(), **ann_fields)
            session.add(generation)
            session.flush()
            generation_id = generation.id
            failpoint("publish")
    if generation_id is not None:
        failpoint("published")
        remove_unused_files(sessions, index_dir)
    return generation_id


def write_ann(ann: CarriedAnn, index_dir: Path) -> dict:
    """Write an approximate index to its own file; returns its generation columns."""
    filename = generation_filename(suffix=".ann.faiss")
    size, checksum = write_index_file(ann, index_dir, filename)
    return {**ann.fields, "ann_filename": filename, "ann_size_bytes": size, "ann_checksum": checksum}


def publish_ann(sessions: sessionmaker[Session], live: IndexGeneration, ann: CarriedAnn | None,
                index_dir: Path, setting: str, tried_at: int | None = None) -> int:
    """Make a generation live that shares the live one's stored vectors, with a new approximate
    index (or none: exact search). The file is written first; the transaction is one insert.

    `setting` is the SPYGLASS_INDEX_FACTORY it was built for. `tried_at`, with no index, records
    the vector count at which a build for that setting fell back to exact search, so that later
    runs do not try again until the library has grown (or the setting changes).
    """
    if ann is not None:
        fields = write_ann(ann, index_dir)
    else:
        fields = {name: None for name in ANN_COLUMNS} | {"ann_built_vectors": tried_at}
    filename = share_file(index_dir, live.filename)
    with sessions.begin() as session:
        generation = IndexGeneration(model_id=live.model_id, factory=setting, filename=filename,
                                     vector_count=live.vector_count, size_bytes=live.size_bytes,
                                     checksum=live.checksum, created_at=utcnow(), **fields)
        session.add(generation)
        session.flush()
        failpoint("ann-publish")
        generation_id = generation.id
    failpoint("ann-published")
    remove_unused_files(sessions, index_dir)
    return generation_id


def share_file(index_dir: Path, filename: str) -> str:
    """The same stored vectors under a new generation's own name: a hard link, no bytes copied
    (a copy where the file system has no links), so each generation's files are removed alone."""
    shared = generation_filename()
    temp = index_dir / f".{shared}.{os.getpid()}.tmp"
    try:
        os.link(index_dir / filename, temp)
    except OSError:
        shutil.copyfile(index_dir / filename, temp)
    os.replace(temp, index_dir / shared)
    return shared


def remove_unused_files(sessions: sessionmaker[Session], index_dir: Path) -> list[str]:
    """Delete index files no search worker may still need, and temp files of dead writers.

    Kept: the files (stored vectors and approximate index) of the live generation, the one
    before it, and every generation a worker has announced within LEASE_SECONDS. Leases older
    than that are dropped (their worker is gone).
    """
    stale = utcnow() - timedelta(seconds=LEASE_SECONDS)
    with sessions.begin() as session:
        session.execute(delete(IndexReader).where(IndexReader.seen_at < stale))
        kept = list(session.execute(select(IndexGeneration.filename, IndexGeneration.ann_filename).order_by(
            IndexGeneration.id.desc()).limit(1 + KEEP_PREVIOUS_GENERATIONS)))
        kept += list(session.execute(select(IndexGeneration.filename, IndexGeneration.ann_filename).join(
            IndexReader, IndexReader.generation_id == IndexGeneration.id)))
        keep = {name for pair in kept for name in pair if name}
        if live_generation(session) is None:
            return []
    removed = []
    for path in index_dir.glob("*gen-*"):
        if path.name in keep or (path.suffix == ".tmp" and _writer_alive(path)):
            continue
        path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def _writer_alive(temp: Path) -> bool:
    # Temp files are named .<final>.<pid>.tmp; a live pid may still be writing it.
    try:
        pid = int(temp.name.rsplit(".", 2)[-2])
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
