"""The one shape of an item and of a search hit: the JSON API adds its links to it, `spyglass search
--json` prints it as it is, and the clip-retrieval API maps it to clip-retrieval's names."""

from __future__ import annotations

import os
from datetime import datetime, timezone

from spyglass.search.catalog.queries import format_time
from spyglass.search.catalog.schema import MediaItem
from spyglass.search.engine import Hit


def item_record(item: MediaItem, expose_paths: bool) -> dict:
    """An item's facts. Its path is relative to its media root; the root is named by its folder
    name, or by its absolute path with expose_paths (where the library lives is the operator's business)."""
    root = None if item.root is None else item.root.path if expose_paths else os.path.basename(item.root.path)
    return {
        "id": item.id,
        "path": item.relative_path,
        "name": os.path.basename(item.path),
        "root": root,
        "kind": item.kind,
        "format": item.format,
        "width": item.width,
        "height": item.height,
        "size": item.size,
        "mtime": mtime_iso(item.mtime_ns),
        "indexed_at": format_time(item.indexed_at),
        "source_url": web_link(item.url),
        "caption": item.caption,
        "taken_at": item.taken_at.isoformat(timespec="seconds") if item.taken_at else None,
        "taken_offset_min": item.taken_offset_min,
        "taken_source": item.taken_source,
        "camera": item.camera,
        "lens": item.lens,
        "place": item.place,
        "latitude": item.latitude,
        "longitude": item.longitude,
        "labels": [{"label": label.label, "score": round(label.score, 4)} for label in item.labels],
        **({"duration_s": round(item.duration_s or 0.0, 3), "poster_s": round(item.poster_s or 0.0, 3)}
           if item.kind == "video" else {"duration_s": round(item.duration_s or 0.0, 3)} if item.kind == "audio"
           else {}),
    }


def hit_record(hit: Hit, expose_paths: bool) -> dict:
    """A result: its rank and score, the item's facts, the texts that hold the query's words
    (`matches`), and a video's best moments (start_s, end_s and best_s of the best one, and all of
    them as `segments`)."""
    found = {"rank": hit.rank, "score": round(hit.score, 6), **item_record(hit.item, expose_paths),
             "matches": [match.as_dict() for match in hit.matches], "duplicates": list(hit.duplicates)}
    if hit.item.kind in ("video", "audio") and hit.moments:
        best = hit.moments[0]
        found.update(start_s=round(best.start_s, 3), end_s=round(best.end_s, 3), best_s=round(best.best_s, 3),
                     segments=[moment.as_dict() for moment in hit.moments])
    return found


def is_remote(item: MediaItem) -> bool:
    """Imported with only a url: the item is that url, with no local file."""
    return web_link(item.url) is not None and item.path == item.url


def web_link(url: str | None) -> str | None:
    """An item's url when it is an http(s) one, else None: imports store no other kind since
    migration 0009, but a catalog imported into before then may hold a local path or javascript: there."""
    return url if url and url[:8].lower().startswith(("http://", "https://")) else None


def mtime_iso(mtime_ns: int) -> str | None:
    """The modification time as ISO 8601 in UTC; None for one no calendar holds (past the year 9999, say)."""
    try:
        return datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None
