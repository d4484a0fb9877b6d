"""The facts stage of a run: when, where and with what each item was taken, read from its header.

It works from the catalog after the vectors are published, a chunk of items at a time, each chunk
committed whole (a run killed at any instant resumes where it stopped). An item is read again when
its file changed (its mtime) or when this reader's version is newer than the one that read it,
so a library indexed before the facts existed gains them on its next run without re-embedding.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Sequence

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from spyglass.search.catalog.schema import MediaItem
from spyglass.search.failpoints import failpoint
from spyglass.search.media.paths import inside_any
from spyglass.search.media.photo_facts import PhotoFacts, image_facts, video_facts
from spyglass.search.media.places import place_name

from .texts.sources import open_regular

log = logging.getLogger(__name__)
# 1: EXIF/XMP dates, camera, lens and GPS; container tags of videos; GeoNames places.
FACTS_VERSION = 1
CHUNK_ITEMS = 256


@dataclass
class FactsSummary:
    """What the facts stage found."""

    read: int = 0
    dated: int = 0  # a date from the file's own metadata (the rest fall back to the mtime)
    placed: int = 0

    def line(self) -> str:
        """'Photo facts: 12 read, 9 with a date taken, 4 with a place', or '' when none was read."""
        if not self.read:
            return ""
        return f"Photo facts: {self.read:,} read, {self.dated:,} with a date taken, {self.placed:,} with a place"


def stale(conditions: Sequence = ()) -> list:
    """The conditions of an item whose facts are missing, older than this reader, or of an older file."""
    return [*conditions, MediaItem.origin == "index",
            or_(MediaItem.facts_version.is_(None), MediaItem.facts_version < FACTS_VERSION,
                MediaItem.facts_mtime_ns != MediaItem.mtime_ns)]


def update_facts(sessions: sessionmaker[Session], roots: Sequence[str] | None, echo: Callable[[str], None],
                 progress: bool = True) -> FactsSummary:
    """Read the facts of the items under these roots (None: every item) that need them."""
    conditions = stale([inside_any(MediaItem.path, roots)] if roots is not None else [])
    summary = FactsSummary()
    with sessions() as session:
        total = session.scalar(select(func.count(MediaItem.id)).where(*conditions)) or 0
    if not total:
        return summary
    last_id = 0
    with tqdm(total=total, unit=" items", desc="Reading dates and places", file=sys.stderr,
              disable=not progress, leave=False) as bar:
        while True:
            with sessions.begin() as session:
                items = list(session.scalars(select(MediaItem).where(MediaItem.id > last_id, *conditions)
                                             .order_by(MediaItem.id).limit(CHUNK_ITEMS)))
                if not items:
                    break
                for item in items:
                    record_facts(item, read_facts(item), summary)
                last_id = items[-1].id
            failpoint("facts")
            bar.update(len(items))
    return summary


def read_facts(item: MediaItem) -> PhotoFacts:
    """The facts in an item's file; none for a file that cannot be opened (the item stays as it is)."""
    try:
        with open_regular(item.path) as handle:
            if item.kind == "image":
                return image_facts(handle)
            if item.kind == "video":
                return _video_tags(handle)
    except OSError as exc:
        log.info("no facts from %s: %s", os.path.basename(item.path), exc)
    return PhotoFacts()


def record_facts(item: MediaItem, facts: PhotoFacts, summary: FactsSummary) -> None:
    """Write the facts on the item's row: the date taken falls back to the mtime, and says so."""
    if facts.taken_at is not None:
        item.taken_at, item.taken_offset_min, item.taken_source = facts.taken_at, facts.offset_min, facts.source
        summary.dated += 1
    else:
        item.taken_at, item.taken_offset_min, item.taken_source = _mtime_wall(item.mtime_ns), 0, "mtime"
    item.camera, item.lens = facts.camera, facts.lens
    item.latitude, item.longitude = facts.latitude, facts.longitude
    item.place = place_name(facts.latitude, facts.longitude) if facts.latitude is not None else None
    summary.placed += item.place is not None
    item.facts_version, item.facts_mtime_ns = FACTS_VERSION, item.mtime_ns
    summary.read += 1


def _video_tags(handle) -> PhotoFacts:
    try:
        import av
    except ImportError:
        return PhotoFacts()
    try:
        with av.open(handle, metadata_errors="ignore") as container:
            return video_facts(dict(container.metadata))
    except Exception as exc:  # noqa: BLE001 - a damaged container: no facts, the item keeps its vector
        log.info("no container tags: %s", exc)
        return PhotoFacts()


def _mtime_wall(mtime_ns: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).replace(tzinfo=None)
    except (OverflowError, OSError, ValueError):
        return None
