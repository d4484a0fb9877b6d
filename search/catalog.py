"""Read access to the catalog: the live generation, items by id in rank order, status facts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from .schema import IndexGeneration, IndexRun, MediaItem, MediaRoot


ID_CHUNK = 1000


@dataclass(frozen=True)
class CatalogStatus:
    """What `spyglass status` reports."""

    items: int
    roots: list[str]
    generation: IndexGeneration | None
    last_run: IndexRun | None


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

    def items_by_id(self, ids: Sequence[int], conditions: Sequence = ()) -> dict[int, MediaItem]:
        """The items with these ids (and meeting the conditions), with their roots.

        In chunks: SQLite refuses more than 32,766 bound values in one statement.
        """
        # Ids outside 1..2**63-1 cannot exist, and the databases refuse to compare with them.
        ids = [int(i) for i in ids if 0 < int(i) < 2**63]
        found: dict[int, MediaItem] = {}
        with self.sessions() as session:
            for start in range(0, len(ids), ID_CHUNK):
                query = (select(MediaItem).options(joinedload(MediaItem.root))
                         .where(MediaItem.id.in_(ids[start:start + ID_CHUNK]), *conditions))
                found.update((row.id, row) for row in session.scalars(query))
        return found

    def root_paths(self) -> list[str]:
        """Every media root folder."""
        with self.sessions() as session:
            return list(session.scalars(select(MediaRoot.path).order_by(MediaRoot.path)))

    def item_by_path(self, path: str) -> MediaItem | None:
        """The item stored under this absolute path."""
        with self.sessions() as session:
            return session.scalar(select(MediaItem).where(MediaItem.path == path))

    def status(self) -> CatalogStatus:
        """Counts and the newest generation and run."""
        with self.sessions() as session:
            return CatalogStatus(
                items=session.scalar(select(func.count(MediaItem.id))) or 0,
                roots=list(session.scalars(select(MediaRoot.path).order_by(MediaRoot.path))),
                generation=live_generation(session),
                last_run=session.scalar(select(IndexRun).order_by(IndexRun.id.desc()).limit(1)),
            )


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
