"""Commit a batch of catalog changes and the index generation that matches them, atomically."""

from __future__ import annotations

import os
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
from spyglass.search.segments import Manifest, SegmentedStore, SegmentFile

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


def publish(sessions: sessionmaker[Session], index: SegmentedStore, index_dir: Path, model_id: int,
            factory: str, changes: PendingChanges, force_generation: bool = False,
            ann: CarriedAnn | None = None) -> int | None:
    """Apply changes to the catalog and the index; returns the new live generation id, if any.

    `index` is the store of exact vectors: only its new delta segment and its tombstones are
    written. `ann`, when the live generation has one, is its approximate index: it covers the
    base segment, which a publish leaves as it is, so its file is shared.

    The new files are written and renamed into place inside the SQL transaction, and the
    generation row that names them commits with the item rows: a crash at any point leaves the
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
            index.remove(reembedded + removed)
            vectors = [v for _, v in changes.new] + [v for _, _, v in changes.reembedded]
            ids = [row.id for row in rows] + reembedded
            if ids:
                index.add(np.asarray(ids, dtype=np.int64), np.stack(vectors))
            base, manifest, _ = index.write(index_dir)
            generation = new_generation(model_id, factory, base, manifest, len(index),
                                        ann.columns(index_dir) if ann is not None else {})
            session.add(generation)
            session.flush()
            generation_id = generation.id
            failpoint("publish")
    if generation_id is not None:
        failpoint("published")
        remove_unused_files(sessions, index_dir)
    return generation_id


def new_generation(model_id: int, factory: str, base: SegmentFile, manifest: Manifest, vector_count: int,
                   ann_columns: dict) -> IndexGeneration:
    """The row that names a generation's files."""
    columns = {name: None for name in ANN_COLUMNS} | ann_columns
    return IndexGeneration(model_id=model_id, factory=factory, filename=base.filename, size_bytes=base.size,
                           checksum=base.checksum, segments=manifest.to_json(), vector_count=vector_count,
                           created_at=utcnow(), **columns)


def publish_index(sessions: sessionmaker[Session], live: IndexGeneration, store: SegmentedStore,
                  ann: CarriedAnn | None, index_dir: Path, setting: str, tried_at: int | None = None) -> int:
    """Make a generation live with the same items: a compacted store, a rebuilt approximate index,
    or both (ann None: exact search). Files are written first; the transaction is one insert.

    `setting` is the SPYGLASS_INDEX_FACTORY it was built for. `tried_at`, with no index, records
    the vector count at which a build for that setting fell back to exact search, so that later
    runs do not try again until the library has grown (or the setting changes).
    """
    base, manifest, _ = store.write(index_dir)
    columns = ann.columns(index_dir) if ann is not None else {"ann_built_vectors": tried_at}
    with sessions.begin() as session:
        generation = new_generation(live.model_id, setting, base, manifest, len(store), columns)
        session.add(generation)
        session.flush()
        failpoint("ann-publish")
        generation_id = generation.id
    failpoint("ann-published")
    remove_unused_files(sessions, index_dir)
    return generation_id


def remove_unused_files(sessions: sessionmaker[Session], index_dir: Path) -> list[str]:
    """Delete index files no search worker may still need, and temp files of dead writers.

    Kept: the files (stored vectors and approximate index) of the live generation, the one
    before it, and every generation a worker has announced within LEASE_SECONDS. Leases older
    than that are dropped (their worker is gone).
    """
    stale = utcnow() - timedelta(seconds=LEASE_SECONDS)
    with sessions.begin() as session:
        session.execute(delete(IndexReader).where(IndexReader.seen_at < stale))
        files = (IndexGeneration.filename, IndexGeneration.ann_filename, IndexGeneration.segments)
        kept = list(session.execute(select(*files).order_by(IndexGeneration.id.desc())
                                    .limit(1 + KEEP_PREVIOUS_GENERATIONS)))
        kept += list(session.execute(select(*files).join(IndexReader, IndexReader.generation_id == IndexGeneration.id)))
        keep = {name for base, ann, segments in kept
                for name in [base, ann, *Manifest.from_json(segments).filenames()] if name}
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
