"""Compare what is on disk with the catalog: what to read, what to keep, what has gone.

The plan is immutable, so decode threads and Ray workers can all ask it the one question they
need answered (PixelRule: does this file need a new vector?). Which vanished row a moved file
takes over is decided once, on the driver, by MoveClaims.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from spyglass.search.catalog.schema import MediaItem, SkippedFile
from spyglass.search.media.paths import inside

from .scan import FoundFile


@dataclass(frozen=True)
class KnownItem:
    """The stat facts and hash the catalog holds for one path."""

    id: int
    size: int
    mtime_ns: int
    content_hash: str


@dataclass(frozen=True)
class PixelRule:
    """Whether a file needs new pixels, from its path and content hash: yes when rebuilding
    (`every`), when its content changed, or when it is new and no vanished row has its hash
    (a moved file keeps its vector). Pure and picklable: Ray workers get one too."""

    known: dict[str, str]  # path -> the content hash the catalog holds (a dict: it is pickled)
    vanished: frozenset[str]  # content hashes of rows whose files are gone
    every: bool = False

    def __call__(self, found: FoundFile, digest: str) -> bool:
        if self.every:
            return True
        known = self.known.get(found.path)
        if known is not None:
            return known != digest
        return digest not in self.vanished


@dataclass(frozen=True)
class Plan:
    """Files to read, and catalog rows whose files are gone (unless a move claims them)."""

    known: Mapping[str, KnownItem]
    to_read: tuple[FoundFile, ...]
    unchanged: int
    still_skipped: tuple[tuple[FoundFile, str], ...] = ()
    vanished: Mapping[int, KnownItem] = field(default_factory=dict)
    rebuild: bool = False

    def pixel_rule(self) -> PixelRule:
        """The rule decode threads apply to every file of this run."""
        return PixelRule({path: item.content_hash for path, item in self.known.items()},
                         frozenset(item.content_hash for item in self.vanished.values()), every=self.rebuild)


class MoveClaims:
    """Vanished rows, taken over by the moved files that have their hash: each row once.

    Used by the driver only (the recorder), so no lock is needed; a second copy of a moved file
    finds the row claimed and is embedded as a new file.
    """

    def __init__(self, vanished: Mapping[int, KnownItem]):
        self._by_hash: dict[str, list[int]] = {}
        for item_id, item in vanished.items():
            self._by_hash.setdefault(item.content_hash, []).append(item_id)
        self._unclaimed = set(vanished)

    def claim(self, digest: str) -> int | None:
        """The id of a vanished row with this hash, now taken; None when there is none left."""
        candidates = self._by_hash.get(digest)
        if not candidates:
            return None
        item_id = candidates.pop()
        self._unclaimed.discard(item_id)
        return item_id

    def unclaimed(self) -> set[int]:
        """The vanished rows no file took over: they leave the index."""
        return set(self._unclaimed)


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
    return Plan(known=MappingProxyType(known), to_read=tuple(to_read),
                unchanged=len(found) - len(to_read) - len(still_skipped),
                still_skipped=tuple(still_skipped), vanished=MappingProxyType(vanished), rebuild=rebuild)


def under(query, column, root: str):
    """Restrict a query to paths inside a root folder (exactly: /m/Photos is not /m/photos)."""
    return query.where(inside(column, root))


def _changed(known: KnownItem | None, found: FoundFile) -> bool:
    return known is None or (known.size, known.mtime_ns) != (found.size, found.mtime_ns)
