"""JSON shapes of items and hits, with the URLs a client follows."""

from __future__ import annotations

import os

from flask import current_app, url_for

from spyglass.search.catalog.schema import MediaItem
from spyglass.search.engine import Hit
from spyglass.search.results import hit_record, is_remote, item_record


def item_json(item: MediaItem) -> dict:
    """An item's record (search.results) with the links a client follows."""
    exposed = current_app.extensions["spyglass"].settings.expose_paths
    return {**item_record(item, exposed), **_links(item)}


def hit_json(hit: Hit) -> dict:
    """A hit's record with its links: a video's thumbnail is the frame at its best moment, and its
    file_url carries the media fragment #t=start,end that players seek to."""
    exposed = current_app.extensions["spyglass"].settings.expose_paths
    found = {**hit_record(hit, exposed), **_links(hit.item)}
    if hit.item.kind in ("video", "audio") and hit.moments:
        best = hit.moments[0]
        if hit.item.kind == "video":
            found.update(thumbnail_url=at_moment(found["thumbnail_url"], best.best_s))
        found.update(file_url=found["file_url"] + media_fragment(best.start_s, best.end_s))
    return found


def _links(item: MediaItem) -> dict:
    """Its own URL, and where its thumbnail and file are: the url itself for a remote item."""
    remote = is_remote(item)
    return {"url": url_for("api.item", item_id=item.id, _external=True),
            "thumbnail_url": item.url if remote else url_for("api.thumbnail", item_id=item.id, _external=True),
            "file_url": item.url if remote else url_for("api.item_file", item_id=item.id, _external=True)}


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
