"""Read access to the catalog: the live generation, items by id in rank order, status facts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, selectinload, sessionmaker

from spyglass.search.model.zero_shot import LABELS_STATE_KEY
from spyglass.search.catalog.schema import CatalogState, IndexGeneration, IndexRun, ItemLabel, MediaItem, MediaRoot, VideoFrame


ID_CHUNK = 1000


@dataclass(frozen=True)
class CatalogStatus:
    """What `spyglass status` reports."""

    items: int
    videos: int
    frames: int
    video_seconds: float
    roots: list[str]
    generation: IndexGeneration | None
    last_run: IndexRun | None


class VideoFrames(NamedTuple):
    """A video's frames: row ids, start and end times, and shots (None when stored before they were kept)."""

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    shots: np.ndarray | None


class Catalog:
    """Queries the query side needs; each is one short transaction."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

    def live_generation(self) -> IndexGeneration | None:
        """The newest published generation, with its model."""
        with self.sessions() as session:
            return live_generation(session)

    def recent_generations(self, limit: int) -> list[IndexGeneration]:
        """The newest generations, newest first."""
        with self.sessions() as session:
            return list(session.scalars(select(IndexGeneration).order_by(IndexGeneration.id.desc()).limit(limit)))

    def places(self, limit: int = 100_000) -> list[str]:
        """The distinct place names of the library's items (a query's typed places are looked up in them)."""
        with self.sessions() as session:
            return list(session.scalars(select(MediaItem.place).where(MediaItem.place.is_not(None))
                                        .group_by(MediaItem.place).limit(limit)))

    def items_by_id(self, ids: Sequence[int]) -> dict[int, MediaItem]:
        """The items with these ids, with their roots and labels (ids with no row are left out)."""
        found: dict[int, MediaItem] = {}
        with self.sessions() as session:
            for chunk in _id_chunks(ids):
                query = (select(MediaItem).options(joinedload(MediaItem.root), selectinload(MediaItem.labels))
                         .where(MediaItem.id.in_(chunk)))
                found.update((row.id, row) for row in session.scalars(query))
        return found

    def ids_meeting(self, ids: Sequence[int], conditions: Sequence) -> set[int]:
        """Which of these ids have a row that meets the conditions (ids only)."""
        found: set[int] = set()
        with self.sessions() as session:
            for chunk in _id_chunks(ids):
                found.update(session.scalars(select(MediaItem.id).where(MediaItem.id.in_(chunk), *conditions)))
        return found

    def ids_where(self, conditions: Sequence, limit: int) -> np.ndarray:
        """Up to `limit` ids of the items that meet the conditions (int64, sorted)."""
        with self.sessions() as session:
            ids = session.scalars(select(MediaItem.id).where(*conditions).order_by(MediaItem.id).limit(limit)).all()
        return np.asarray(ids, dtype=np.int64)

    def count_where(self, conditions: Sequence) -> int:
        """How many items meet the conditions."""
        with self.sessions() as session:
            return session.scalar(select(func.count(MediaItem.id)).where(*conditions)) or 0

    def frame_owners(self, frame_ids: Sequence[int]) -> dict[int, int]:
        """The video item of each of these frame rows (rows deleted since are left out)."""
        found: dict[int, int] = {}
        with self.sessions() as session:
            for chunk in _id_chunks(frame_ids):
                found.update(tuple(row) for row in session.execute(
                    select(VideoFrame.id, VideoFrame.item_id).where(VideoFrame.id.in_(chunk))))
        return found

    def frames_of(self, item_ids: Sequence[int]) -> dict[int, VideoFrames]:
        """Each video's frames, in time order."""
        rows: dict[int, list] = {}
        with self.sessions() as session:
            for chunk in _id_chunks(item_ids):
                query = (select(VideoFrame.item_id, VideoFrame.id, VideoFrame.start_s, VideoFrame.end_s,
                                VideoFrame.shot)
                         .where(VideoFrame.item_id.in_(chunk)).order_by(VideoFrame.item_id, VideoFrame.start_s))
                for item_id, frame_id, start, end, shot in session.execute(query):
                    rows.setdefault(item_id, []).append((frame_id, start, end, shot))
        return {item_id: VideoFrames(np.array([r[0] for r in frames], np.int64), np.array([r[1] for r in frames]),
                                     np.array([r[2] for r in frames]),
                                     None if any(r[3] is None for r in frames)
                                     else np.array([r[3] for r in frames], np.int32))
                for item_id, frames in rows.items()}

    def root_paths(self) -> list[str]:
        """Every media root folder."""
        with self.sessions() as session:
            return list(session.scalars(select(MediaRoot.path).order_by(MediaRoot.path)))

    def item_by_path(self, path: str) -> MediaItem | None:
        """The item stored under this absolute path."""
        with self.sessions() as session:
            return session.scalar(select(MediaItem).where(MediaItem.path == path))

    def labels_summary(self) -> dict | None:
        """How many labels the items were labelled from, and the most frequent best labels."""
        with self.sessions() as session:
            state = session.get(CatalogState, LABELS_STATE_KEY)
            if state is None:
                return None
            top = session.execute(select(ItemLabel.label, func.count()).where(ItemLabel.rank == 1)
                                  .group_by(ItemLabel.label).order_by(func.count().desc(), ItemLabel.label).limit(5))
            return {"labels": json.loads(state.value)["labels"], "most_common": {label: n for label, n in top}}

    def status(self) -> CatalogStatus:
        """Counts and the newest generation and run."""
        with self.sessions() as session:
            return CatalogStatus(
                items=session.scalar(select(func.count(MediaItem.id))) or 0,
                videos=session.scalar(select(func.count(MediaItem.id)).where(MediaItem.kind == "video")) or 0,
                frames=session.scalar(select(func.count(VideoFrame.id))) or 0,
                video_seconds=session.scalar(select(func.sum(MediaItem.duration_s))) or 0.0,
                roots=list(session.scalars(select(MediaRoot.path).order_by(MediaRoot.path))),
                generation=live_generation(session),
                last_run=session.scalar(select(IndexRun).order_by(IndexRun.id.desc()).limit(1)),
            )


def _id_chunks(ids: Sequence[int]):
    """Ids that can exist (1 to 2**63-1: the databases refuse to compare with others), in chunks, since
    SQLite refuses more than 32,766 bound values in one statement."""
    valid = [int(i) for i in ids if 0 < int(i) < 2**63]
    for start in range(0, len(valid), ID_CHUNK):
        yield valid[start:start + ID_CHUNK]


def live_generation(session: Session) -> IndexGeneration | None:
    """The generation row with the highest id: rows are only ever added by a publish."""
    return session.scalar(select(IndexGeneration).order_by(IndexGeneration.id.desc()).limit(1))


def format_time(moment: datetime | None) -> str:
    """A catalog timestamp as local ISO time to the second."""
    if moment is None:
        return "never"
    if moment.tzinfo is None:  # SQLite hands back the UTC we stored, without its zone
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone().isoformat(timespec="seconds")
