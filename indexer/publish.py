"""Commit a batch of catalog changes and the index generation that matches them, atomically."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.catalog.queries import live_generation
from spyglass.search.failpoints import failpoint
from spyglass.search.store.ids import frame_vector_ids
from spyglass.search.model.precision import PrecisionMix
from spyglass.search.catalog.schema import (ANN_COLUMNS, LEASE_SECONDS, CatalogState, IndexGeneration, IndexReader,
                                    ItemLabel, MediaItem, VideoFrame, utcnow)
from spyglass.search.store.segmented import Manifest, SegmentedStore, SegmentFile

from .ann_carry import CarriedAnn
from .staging import staged_by_path, staged_videos, unstage
from .video_vectors import VideoVectors

# Generations kept on disk besides the live one, for readers that loaded it a moment ago.
KEEP_PREVIOUS_GENERATIONS = 1
# The highest item id ever given: ids of deleted items are not handed out again.
HIGHEST_ID_KEY = "highest_item_id"
HIGHEST_FRAME_ID_KEY = "highest_frame_id"
_DELETE_CHUNK = 500
_ADD_CHUNK = 20_000


@dataclass
class PendingChanges:
    """Catalog and vector changes collected since the last publish."""

    # A vector of None is in staged_vectors under staged_model (a rebuild keeps them there).
    new: list[tuple[dict, np.ndarray | None]] = field(default_factory=list)
    reembedded: list[tuple[int, dict, np.ndarray | None]] = field(default_factory=list)
    touched: list[tuple[int, dict]] = field(default_factory=list)
    removed: set[int] = field(default_factory=set)
    staged_model: str = ""  # whose staged vectors these new vectors are
    # The frames of the new and re-embedded videos, by path (None: in staged_vectors).
    videos: dict[str, VideoVectors | None] = field(default_factory=dict)

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
        self.videos = {}

    def embedded_paths(self) -> list[str]:
        """Paths whose new vectors this holds."""
        return [f["path"] for f, _ in self.new] + [f["path"] for _, f, _ in self.reembedded]

    def __bool__(self) -> bool:
        return bool(self.new or self.reembedded or self.touched or self.removed)


def publish(sessions: sessionmaker[Session], index: SegmentedStore, index_dir: Path, model_id: int,
            factory: str, changes: PendingChanges, force_generation: bool = False,
            ann: CarriedAnn | None = None, precision: PrecisionMix = PrecisionMix()) -> int | None:
    """Apply changes to the catalog and the index; returns the new live generation id, if any.

    `index` is the store of exact vectors: only its new delta segment and its tombstones are
    written. `ann`, when the live generation has one, is its approximate index: it covers the
    base segment, which a publish leaves as it is, so its file is shared. `precision` is what
    the generation's vectors were embedded in, recorded with it.

    The new files are written, fsynced and renamed into place first; then one short SQL
    transaction commits the item rows and the generation row that names the files. A crash at
    any point leaves the previous generation live and consistent with the catalog (a file no
    row names is removed by the next publish). New rows get their ids before the transaction,
    since the files hold them: under the indexer lock, nothing else inserts items.
    """
    new_ids = _next_ids(sessions, len(changes.new))
    reembedded = [item_id for item_id, _, _ in changes.reembedded]
    removed = sorted(changes.removed)
    files = None
    frames: list[dict] = []
    if changes.changes_vectors() or force_generation:
        # A re-embedded or removed video's frames go with it.
        old_frames = _frames_of(sessions, reembedded + removed)
        index.remove(reembedded + removed + frame_vector_ids(old_frames).tolist())
        _add_vectors(sessions, index, new_ids + reembedded,
                     [(f["path"], v) for f, v in changes.new] + [(f["path"], v) for _, f, v in changes.reembedded],
                     changes.staged_model)
        owners = {f["path"]: i for i, (f, _) in zip(new_ids, changes.new, strict=True)}
        owners.update((f["path"], i) for i, f, _ in changes.reembedded)
        frames = _add_frames(sessions, index, owners, changes.videos, changes.staged_model)
        base, manifest, _ = index.write(index_dir)
        files = (base, manifest, ann.columns(index_dir) if ann is not None else {})
    generation_id = None
    with sessions.begin() as session:
        session.add_all(MediaItem(id=item_id, **fields) for item_id, (fields, _) in zip(new_ids, changes.new, strict=True))
        session.flush()
        updates = [{"id": item_id, **fields} for item_id, fields in changes.touched]
        updates += [{"id": item_id, **fields} for item_id, fields, _ in changes.reembedded]
        if updates:
            session.execute(update(MediaItem), updates)
        for start in range(0, len(reembedded), _DELETE_CHUNK):  # their labels were of the old vectors
            session.execute(delete(ItemLabel).where(ItemLabel.item_id.in_(reembedded[start:start + _DELETE_CHUNK])))
        old_owners = reembedded + removed
        for start in range(0, len(old_owners), _DELETE_CHUNK):
            session.execute(delete(VideoFrame).where(VideoFrame.item_id.in_(old_owners[start:start + _DELETE_CHUNK])))
        for start in range(0, len(removed), _DELETE_CHUNK):
            chunk = removed[start:start + _DELETE_CHUNK]
            session.execute(delete(MediaItem).where(MediaItem.id.in_(chunk)))
        for start in range(0, len(frames), _ADD_CHUNK):
            session.execute(insert(VideoFrame), frames[start:start + _ADD_CHUNK])
        if frames:
            session.merge(CatalogState(key=HIGHEST_FRAME_ID_KEY, value=str(frames[-1]["id"])))
        if changes.staged_model:
            unstage(session, changes.staged_model, changes.embedded_paths())
        if new_ids:
            session.merge(CatalogState(key=HIGHEST_ID_KEY, value=str(new_ids[-1])))
            _advance_id_sequence(session)
        if files is not None:
            base, manifest, ann_columns = files
            generation = new_generation(model_id, factory, base, manifest, len(index),
                                        ann_columns | precision.columns())
            session.add(generation)
            session.flush()
            generation_id = generation.id
            failpoint("publish")
    if generation_id is not None:
        failpoint("published")
        remove_unused_files(sessions, index_dir)
    return generation_id


def _add_vectors(sessions: sessionmaker[Session], index: SegmentedStore, ids: list[int],
                 entries: list[tuple[str, np.ndarray | None]], staged_model: str) -> None:
    """Add the vectors chunk by chunk; a vector left as None is read from staged_vectors, so a
    rebuild never holds all its new vectors in memory besides the index itself."""
    for start in range(0, len(ids), _ADD_CHUNK):
        part = entries[start:start + _ADD_CHUNK]
        missing = [path for path, vector in part if vector is None]
        staged = {}
        if missing:
            with sessions() as session:
                staged = staged_by_path(session, staged_model, missing)
        vectors = np.stack([staged[path] if vector is None else vector for path, vector in part])
        index.add(np.asarray(ids[start:start + _ADD_CHUNK], dtype=np.int64), vectors)


def _frames_of(sessions: sessionmaker[Session], item_ids: list[int]) -> list[int]:
    """The frame row ids of these items (videos have some)."""
    found: list[int] = []
    with sessions() as session:
        for start in range(0, len(item_ids), _DELETE_CHUNK):
            found += session.scalars(select(VideoFrame.id).where(
                VideoFrame.item_id.in_(item_ids[start:start + _DELETE_CHUNK])))
    return found


def _add_frames(sessions: sessionmaker[Session], index: SegmentedStore, owners: dict[str, int],
                videos: dict[str, VideoVectors | None], staged_model: str) -> list[dict]:
    """Add the videos' frame vectors under fresh frame ids; returns the frame rows to insert."""
    if not videos:
        return []
    staged = {}
    missing = [path for path, video in videos.items() if video is None]
    if missing:
        with sessions() as session:
            staged = staged_videos(session, staged_model, missing)
    complete = {path: video if video is not None else staged[path] for path, video in videos.items()}
    next_id = _highest_frame_id(sessions) + 1
    rows: list[dict] = []
    for path, video in complete.items():
        ids = np.arange(next_id, next_id + len(video.starts), dtype=np.int64)
        next_id += len(ids)
        index.add(frame_vector_ids(ids), np.asarray(video.vectors, dtype=np.float32))
        shots = video.shots if video.shots is not None else [None] * len(ids)
        rows += [{"id": int(i), "item_id": owners[path], "start_s": float(a), "end_s": float(b),
                  "shot": None if shot is None else int(shot)}
                 for i, a, b, shot in zip(ids, video.starts, video.ends, shots, strict=True)]
    return rows


def _highest_frame_id(sessions: sessionmaker[Session]) -> int:
    """The highest frame id ever given: an older generation a worker still holds keeps its meaning."""
    with sessions() as session:
        highest = session.scalar(select(func.max(VideoFrame.id))) or 0
        given = session.get(CatalogState, HIGHEST_FRAME_ID_KEY)
    return max(highest, int(given.value) if given else 0)


def _next_ids(sessions: sessionmaker[Session], count: int) -> list[int]:
    """Ids for new items, never one a deleted item had (the indexer lock keeps other writers out)."""
    if not count:
        return []
    with sessions() as session:
        highest = session.scalar(select(func.max(MediaItem.id))) or 0
        given = session.get(CatalogState, HIGHEST_ID_KEY)
    highest = max(highest, int(given.value) if given else 0)
    return list(range(highest + 1, highest + 1 + count))


def _advance_id_sequence(session: Session) -> None:
    """PostgreSQL hands out ids from a sequence: move it past the ids given explicitly."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT setval(pg_get_serial_sequence('media_items', 'id'), "
                             "(SELECT max(id) FROM media_items))"))


def new_generation(model_id: int, factory: str, base: SegmentFile, manifest: Manifest, vector_count: int,
                   columns: dict) -> IndexGeneration:
    """The row that names a generation's files; `columns` sets its approximate-index and precision ones."""
    columns = {name: None for name in ANN_COLUMNS} | columns
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
    columns |= live.precision_mix().columns()  # the same vectors
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
