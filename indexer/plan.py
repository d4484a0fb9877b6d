"""Compare what is on disk with the catalog: what to embed, what to keep, what has gone."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from spyglass.search.media.paths import inside
from spyglass.search.catalog.schema import MediaItem, SkippedFile

from .scan import FoundFile


@dataclass(frozen=True)
class KnownItem:
    """The stat facts and hash the catalog holds for one path."""

    id: int
    size: int
    mtime_ns: int
    content_hash: str


@dataclass
class Plan:
    """Files to read, and catalog rows whose files are gone (unless claimed by a move)."""

    known: dict[str, KnownItem]
    to_read: list[FoundFile]
    unchanged: int
    still_skipped: list[tuple[FoundFile, str]] = field(default_factory=list)
    vanished: dict[int, KnownItem] = field(default_factory=dict)
    rebuild: bool = False
    moves: dict[str, int] = field(default_factory=dict)  # new path -> id of the row it takes over
    _vanished_by_hash: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for item_id, item in self.vanished.items():
            self._vanished_by_hash.setdefault(item.content_hash, []).append(item_id)

    def wants_pixels(self, found: FoundFile, digest: str) -> bool:
        """Whether this file must be embedded; False when its vector can be kept.

        Called from decode threads: a moved file claims the vanished row with its hash here,
        under a lock, so two copies never claim one row.
        """
        if self.rebuild:
            return True
        known = self.known.get(found.path)
        if known is not None:
            return known.content_hash != digest
        with self._lock:
            candidates = self._vanished_by_hash.get(digest)
            if candidates:
                item_id = candidates.pop()
                self.vanished.pop(item_id)
                self.moves[found.path] = item_id
                return False
        return True


def plan_run(session: Session, found: list[FoundFile], roots: list[str], rebuild: bool) -> Plan:
    """Diff the scan against the catalog rows under the roots (all rows when rebuilding)."""
    known: dict[str, KnownItem] = {}
    items = select(MediaItem.id, MediaItem.path, MediaItem.size, MediaItem.mtime_ns,
                   MediaItem.content_hash)
    for selection in ([items] if rebuild else [under(items, MediaItem.path, r) for r in roots]):
        for row in session.execute(selection):
            known[row.path] = KnownItem(row.id, row.size, row.mtime_ns, row.content_hash)
    skips = select(SkippedFile.path, SkippedFile.size, SkippedFile.mtime_ns, SkippedFile.reason)
    skipped = {row.path: row for root in roots
               for row in session.execute(under(skips, SkippedFile.path, root))}

    to_read, still_skipped = [], []
    for f in found:
        skip = skipped.get(f.path)
        if skip is not None and (skip.size, skip.mtime_ns) == (f.size, f.mtime_ns) and not rebuild:
            still_skipped.append((f, skip.reason))  # not retried until the file changes
        elif rebuild or _changed(known.get(f.path), f):
            to_read.append(f)
    seen = {f.path for f in found}
    vanished = {item.id: item for path, item in known.items() if path not in seen}
    return Plan(known=known, to_read=to_read,
                unchanged=len(found) - len(to_read) - len(still_skipped),
                still_skipped=still_skipped, vanished=vanished, rebuild=rebuild)


def under(query, column, root: str):
    """Restrict a query to paths inside a root folder (exactly: /m/Photos is not /m/photos)."""
    return query.where(inside(column, root))


def _changed(known: KnownItem | None, found: FoundFile) -> bool:
    return known is None or (known.size, known.mtime_ns) != (found.size, found.mtime_ns)
