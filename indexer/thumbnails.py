"""The thumbnails stage of a run: the items this run embedded get both thumbnail sizes now, so a
first grid of results is never grey and the viewer opens at once.

It stops at INDEX_SHARE of the thumbnail cache's limit (SPYGLASS_THUMBNAIL_CACHE): making more
would only push out the ones made first. Whatever it does not make is made on first view, as
before; a run killed here loses nothing but time.
"""

from __future__ import annotations

import logging
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from spyglass.search.catalog.schema import MediaItem
from spyglass.search.errors import SpyglassError
from spyglass.search.media.files import MediaRoots
from spyglass.search.media.images import decode_gate
from spyglass.search.media.paths import inside_any
from spyglass.search.media.thumbnail_cache import ThumbnailCache
from spyglass.search.media.thumbnails import make_thumbnails
from spyglass.search.settings import Settings

log = logging.getLogger(__name__)
INDEX_SHARE = 0.8
CHUNK_ITEMS = 256


@dataclass
class ThumbnailSummary:
    """What the stage made."""

    items: int = 0
    written: int = 0
    failed: int = 0
    stopped_at_limit: bool = False

    def line(self) -> str:
        """'Thumbnails: 120 items (8.1 MB)', with why it stopped early; '' when nothing was made."""
        if not self.items and not self.stopped_at_limit:
            return ""
        line = f"Thumbnails: {self.items:,} items ({self.written / 1e6:.1f} MB)"
        if self.failed:
            line += f", {self.failed:,} could not be made"
        if self.stopped_at_limit:
            line += ("; the cache (SPYGLASS_THUMBNAIL_CACHE) is nearly full, so the rest are made when first "
                     "viewed")
        return line


def make_run_thumbnails(sessions: sessionmaker[Session], settings: Settings, roots: Sequence[str],
                        since: datetime, media: MediaRoots, progress: bool = True) -> ThumbnailSummary:
    """Both sizes of thumbnail for the items under these roots embedded since `since`."""
    cache = ThumbnailCache(settings.home / "thumbnails", settings.thumbnail_cache)
    gate = decode_gate(settings.decode_memory)
    budget = INDEX_SHARE * settings.thumbnail_cache
    summary = ThumbnailSummary()
    conditions = [inside_any(MediaItem.path, roots), MediaItem.indexed_at >= since, MediaItem.origin == "index"]
    last_id = 0

    def one(item: MediaItem) -> int | None:
        try:
            return make_thumbnails(cache, item, media, settings.max_image_pixels, gate)
        except (SpyglassError, OSError) as exc:  # the file changed or went: it is made on first view, or never
            log.info("no thumbnail for %s: %s", os.path.basename(item.path), exc)
            return None

    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool, \
            tqdm(unit=" items", desc="Thumbnails", file=sys.stderr, disable=not progress, leave=False) as bar:
        while summary.written < budget:
            with sessions() as session:
                items = list(session.scalars(select(MediaItem).where(MediaItem.id > last_id, *conditions)
                                             .order_by(MediaItem.id).limit(CHUNK_ITEMS)))
                session.expunge_all()
            if not items:
                return summary
            for written in pool.map(one, items):
                summary.failed += written is None
                summary.items += written is not None and written > 0
                summary.written += written or 0
            last_id = items[-1].id
            bar.update(len(items))
    summary.stopped_at_limit = True
    return summary
