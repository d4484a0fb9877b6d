"""JSON shapes of items and hits, with the URLs a client follows."""

from __future__ import annotations

import os

from flask import current_app, url_for

from spyglass.search.catalog.queries import format_time
from spyglass.search.engine import Hit
from spyglass.search.catalog.schema import MediaItem


def item_json(item: MediaItem) -> dict:
    """An item's metadata; its path is relative to its media root, which is named by its folder name.

    The root's absolute path only with SPYGLASS_EXPOSE_PATHS: where the library lives on the
    server is the operator's business.
    """
    exposed = current_app.extensions["spyglass"].settings.expose_paths
    root = None if item.root is None else item.root.path if exposed else os.path.basename(item.root.path)
    link = web_link(item.url)
    remote = link is not None and item.path == item.url  # imported with no local file
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
        "mtime": _mtime_iso(item.mtime_ns),
        "indexed_at": format_time(item.indexed_at),
        "url": url_for("api.item", item_id=item.id, _external=True),
        "thumbnail_url": link if remote else url_for("api.thumbnail", item_id=item.id, _external=True),
        "file_url": link if remote else url_for("api.item_file", item_id=item.id, _external=True),
        "source_url": link,
        "caption": item.caption,
        "labels": [{"label": label.label, "score": round(label.score, 4)} for label in item.labels],
        **({"duration_s": round(item.duration_s or 0.0, 3), "poster_s": round(item.poster_s or 0.0, 3)}
           if item.kind == "video" else {}),
    }


def web_link(url: str | None) -> str | None:
    """An item's url when it is an http(s) one, else None: imports store no other kind since
    0009, but a catalog imported into before then may hold a local path or javascript: there."""
    return url if url and url[:8].lower().startswith(("http://", "https://")) else None


def hit_json(hit: Hit) -> dict:
    """A result: the item's metadata with its rank and score; a video's with its best moments.

    A video hit's start_s, end_s and best_s are those of its best segment; its thumbnail is the
    frame at best_s, and its file_url carries the media fragment #t=start,end that players seek to.
    """
    found = {"rank": hit.rank, "score": round(hit.score, 6), **item_json(hit.item)}
    if hit.item.kind == "video" and hit.moments:
        best = hit.moments[0]
        found.update(start_s=round(best.start_s, 3), end_s=round(best.end_s, 3), best_s=round(best.best_s, 3),
                     segments=[moment.as_dict() for moment in hit.moments],
                     thumbnail_url=at_moment(found["thumbnail_url"], best.best_s),
                     file_url=found["file_url"] + media_fragment(best.start_s, best.end_s))
    return found


def at_moment(thumbnail_url: str, seconds: float) -> str:
    """The thumbnail URL of a video's frame at this time."""
    return f"{thumbnail_url}?t={seconds:.3f}"


def media_fragment(start_s: float, end_s: float) -> str:
    """'#t=72.000,79.000': the W3C media fragment a browser's player starts and stops at."""
    return f"#t={start_s:.3f},{end_s:.3f}"


def public_status(report: dict, expose_paths: bool) -> dict:
    """`spyglass status` for HTTP: no data folder or database URL; folder and checkpoint names, not paths."""
    report = {k: v for k, v in report.items() if k not in ("home", "database")}
    if expose_paths:
        return report
    report["roots"] = [os.path.basename(root) for root in report.get("roots", [])]
    if report.get("model"):
        model = dict(report["model"])
        for key in ("architecture", "pretrained"):
            if os.sep in model[key]:
                model[key] = os.path.basename(model[key])
        report["model"] = model
    return report


def _mtime_iso(mtime_ns: int) -> str | None:
    from datetime import datetime, timezone

    try:
        return datetime.fromtimestamp(mtime_ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):  # a file dated past the year 9999, say
        return None
