"""JSON shapes of items and hits, with the URLs a client follows."""

from __future__ import annotations

import os

from flask import url_for

from spyglass.search.catalog import format_time
from spyglass.search.engine import Hit
from spyglass.search.schema import MediaItem


def item_json(item: MediaItem) -> dict:
    """An item's metadata; its path is relative to its media root."""
    return {
        "id": item.id,
        "path": item.relative_path,
        "name": os.path.basename(item.path),
        "root": item.root.path if item.root is not None else None,
        "kind": item.kind,
        "format": item.format,
        "width": item.width,
        "height": item.height,
        "size": item.size,
        "mtime": _mtime_iso(item.mtime_ns),
        "indexed_at": format_time(item.indexed_at),
        "url": url_for("api.item", item_id=item.id, _external=True),
        "thumbnail_url": url_for("api.thumbnail", item_id=item.id, _external=True),
        "file_url": url_for("api.item_file", item_id=item.id, _external=True),
    }


def hit_json(hit: Hit) -> dict:
    """A result: the item's metadata with its rank and score."""
    return {"rank": hit.rank, "score": round(hit.score, 6), **item_json(hit.item)}


def _mtime_iso(mtime_ns: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")
