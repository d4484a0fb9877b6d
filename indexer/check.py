"""`spyglass check`: the live generation against the catalog and the files on disk; --repair."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from spyglass.search.catalog.queries import Catalog
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.display import printable
from spyglass.search.errors import IndexFileError, NoIndex
from spyglass.search.catalog.migrate import require_current
from spyglass.search.store.ids import frame_vector_id, is_frame
from spyglass.search.catalog.schema import MediaItem, VideoFrame
from spyglass.search.settings import Settings
from spyglass.search.store.segmented import SegmentedStore

from spyglass.search.catalog.lock import indexer_lock

from .ann_carry import CarriedAnn
from .publish import PendingChanges, publish
from .texts.check import keyword_problem, repair_keyword_index

# How far from 1 a stored vector's length may be (they are written as float32 unit vectors).
UNIT_TOLERANCE = 1e-2


@dataclass
class CheckReport:
    """What a check found, and what a repair did."""

    generation_id: int | None = None
    vectors: int = 0
    rows: int = 0
    frames: int = 0  # video frame rows, each with a vector of its own
    videos_missing_frames: list[int] = field(default_factory=list)
    file_problem: str | None = None
    ann_problem: str | None = None
    orphan_vectors: list[int] = field(default_factory=list)
    rows_without_vectors: list[int] = field(default_factory=list)
    bad_vectors: list[int] = field(default_factory=list)  # NaN, infinite or not of unit length
    missing_files: list[str] = field(default_factory=list)
    keyword_problem: str | None = None
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing wrong (or everything wrong was repaired)."""
        return bool(self.repaired) or not (self.file_problem or self.ann_problem or self.orphan_vectors
                                           or self.rows_without_vectors or self.bad_vectors or self.missing_files
                                           or self.keyword_problem)

    def lines(self) -> list[str]:
        """The report for people."""
        frames = f" and {self.frames:,} video frames" if self.frames else ""
        lines = [f"generation {self.generation_id}: {self.vectors:,} vectors, {self.rows:,} catalog rows{frames}"]
        if self.file_problem:
            lines.append(f"index file: {self.file_problem}")
        else:
            lines.append("index files (segments and tombstones): sizes and checksums match the catalog")
        if self.ann_problem:
            lines.append(f"approximate index: {self.ann_problem} (a repair searches exactly until the "
                         "next index run builds it again)")
        lines.append(f"vectors without a catalog row: {len(self.orphan_vectors):,}")
        lines.append(f"catalog rows without a vector: {len(self.rows_without_vectors):,}")
        lines.append(f"vectors that are not finite unit vectors: {len(self.bad_vectors):,}")
        if self.videos_missing_frames:
            lines.append(f"videos with a frame missing its vector: {len(self.videos_missing_frames):,}")
        lines.append(f"items whose file is gone: {len(self.missing_files):,}")
        lines += [f"  {printable(path)}" for path in self.missing_files[:10]]
        if len(self.missing_files) > 10:
            lines.append(f"  ... and {len(self.missing_files) - 10:,} more")
        lines.append(f"keyword index: {self.keyword_problem or 'matches the stored texts'}")
        lines += [f"repaired: {what}" for what in self.repaired]
        return lines


def check_index(settings: Settings, repair: bool = False) -> CheckReport:
    """Verify the live generation; with repair, publish a generation that fixes what it can.

    A repair holds the indexer lock from before its first read: what it publishes is built
    from the generation that is live while nothing else can publish.
    """
    engine = create_db_engine(settings.db_url, writer=True)
    try:
        if not repair:
            return _check(settings, engine, repair=False)
        with indexer_lock(engine, settings.home):
            return _check(settings, engine, repair=True)
    finally:
        engine.dispose()


def _check(settings: Settings, engine, repair: bool) -> CheckReport:
    require_current(engine)
    sessions = session_factory(engine)
    generations = Catalog(sessions).recent_generations(4)
    if not generations:
        raise NoIndex("nothing is indexed yet", "run `spyglass index <folder>` first")
    report = CheckReport(generation_id=generations[0].id)
    index = _first_readable(settings, generations, report)
    ann = _live_ann(settings, generations[0], report)
    with sessions() as session:
        rows, remote = {}, set()
        for item_id, path, url in session.execute(select(MediaItem.id, MediaItem.path, MediaItem.url)):
            rows[item_id] = path
            if url and path == url:  # imported with no local file: nothing on disk to miss
                remote.add(item_id)
        # A video's frames have vectors of their own, in the frame id space.
        frame_owner = {frame_vector_id(frame_id): item_id for frame_id, item_id
                       in session.execute(select(VideoFrame.id, VideoFrame.item_id))}
    report.rows = len(rows)
    report.frames = len(frame_owner)
    ids = set(index.ids().tolist()) if index is not None else set()
    report.vectors = len(ids)
    expected = rows.keys() | frame_owner.keys()
    report.orphan_vectors = sorted(ids - expected)
    report.rows_without_vectors = sorted(expected - ids) if index is not None else []
    report.bad_vectors = _bad_vectors(index) if index is not None else []
    gone = {item_id for item_id, path in rows.items() if item_id not in remote and not os.path.isfile(path)}
    # A video missing one frame's vector is dropped whole: the next reindex embeds it again.
    report.videos_missing_frames = sorted({frame_owner[i] for i in report.rows_without_vectors if is_frame(i)})
    report.missing_files = sorted(rows[i] for i in gone)
    report.keyword_problem = keyword_problem(engine)
    if repair and report.keyword_problem:
        report.repaired.append(repair_keyword_index(engine))
        report.keyword_problem = None
    if repair and (report.file_problem or report.ann_problem or report.orphan_vectors or report.rows_without_vectors
                   or report.bad_vectors or report.missing_files):
        if index is None:
            raise IndexFileError("no readable index generation of the live model is left to repair from",
                                 "run `spyglass reindex --rebuild`")
        _repair(settings, sessions, index, ann, generations[0], report, gone, frame_owner)
    return report


def _bad_vectors(index: SegmentedStore) -> list[int]:
    """Ids whose vector is not finite or not of unit length: FAISS refuses to train on them, and
    they score nonsense. Read chunk by chunk, like the checksums."""
    bad: list[np.ndarray] = []
    for ids, vectors in index.all_vectors():
        with np.errstate(all="ignore"):
            lengths = np.linalg.norm(vectors.astype(np.float64), axis=1)
        wrong = ~np.isfinite(vectors).all(axis=1) | ~(np.abs(lengths - 1.0) < UNIT_TOLERANCE)
        bad.append(ids[wrong])
    return sorted(np.concatenate(bad).tolist()) if bad else []


def _live_ann(settings: Settings, live, report: CheckReport) -> CarriedAnn | None:
    """The live approximate index, read and checked; a damaged one is reported (and dropped by a repair)."""
    try:
        return CarriedAnn.of_generation(live, settings.index_dir)
    except IndexFileError as exc:
        report.ann_problem = str(exc)
        return None


def _first_readable(settings: Settings, generations, report: CheckReport) -> SegmentedStore | None:
    """The live generation's index or, if its file is damaged, the newest intact older one.

    Only generations of the live model count: another model's vectors republished under the
    live model's row would answer every query with the wrong encoder.
    """
    for generation in generations:
        if generation.model_id != generations[0].model_id:
            continue
        try:
            index = SegmentedStore.load(settings.index_dir, generation.base_file(), generation.manifest())
        except IndexFileError as exc:
            if generation is generations[0]:
                report.file_problem = str(exc)
            continue
        if generation is not generations[0]:
            report.file_problem += f"; generation {generation.id} is intact and is used instead"
        return index
    return None


def _repair(settings, sessions, index: SegmentedStore, ann: CarriedAnn | None, live, report: CheckReport,
            gone: set[int], frame_owner: dict[int, int]) -> None:
    index.remove(report.orphan_vectors)
    # A bad vector goes with its item; a bad frame vector with its whole video.
    poisoned = {frame_owner.get(i) if is_frame(i) else i for i in report.bad_vectors} - {None}
    removed = ({i for i in report.rows_without_vectors if not is_frame(i)} | set(report.videos_missing_frames)
               | gone | poisoned)
    changes = PendingChanges(removed=removed)
    if report.file_problem:
        ann = None  # it covers the live generation's base, not the older one repaired from
    generation = publish(sessions, index, settings.index_dir, live.model_id, live.factory,
                         changes, force_generation=True, ann=ann)
    report.repaired.append(f"published generation {generation}: dropped {len(report.orphan_vectors):,} "
                           f"orphan vectors, {len(report.rows_without_vectors):,} rows without a vector, "
                           f"{len(poisoned):,} items with a vector that is not a finite unit vector "
                           f"and {len(gone):,} items whose file is gone")
    if report.rows_without_vectors or poisoned:
        report.repaired.append("run `spyglass reindex` to embed the files of the dropped rows again")


