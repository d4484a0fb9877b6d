"""The JSON API under /api/v1: search, items, thumbnails, originals, status, health, OpenAPI."""

from __future__ import annotations

import os
import time

from flask import Blueprint, jsonify, request, send_file

from spyglass.search.errors import SpyglassError, UnknownItem
from spyglass.search.status import status_report
from spyglass.search.thumbnails import ensure_thumbnail

from .openapi import openapi_document
from .present import hit_json, item_json
from .search_request import parse_search_request
from .state import state

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
MIMETYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
             "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff"}


@blueprint.route("/search", methods=["GET", "POST"])
def search():
    """Ranked results for text, an image, an item, an embedding, or a weighted mix of them."""
    web = state()
    started = time.perf_counter()
    with web.metrics.timed("search"):
        query = parse_search_request(request)
        result = web.engine().search(query.parts, k=query.k, offset=query.offset,
                                     min_score=query.min_score, filters=query.filters)
    return jsonify(
        results=[hit_json(hit) for hit in result.hits],
        k=query.k, offset=query.offset, next_offset=result.next_offset,
        total_considered=result.total, generation=result.generation_id,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )


@blueprint.get("/items/<int:item_id>")
def item(item_id: int):
    """One item's metadata."""
    return jsonify(item_json(state().engine().item(item_id)))


@blueprint.get("/items/<int:item_id>/thumbnail")
def thumbnail(item_id: int):
    """A JPEG thumbnail, made on first request and cached."""
    web = state()
    found = web.engine().item(item_id)
    path = ensure_thumbnail(web.settings.home, found, web.settings.max_image_pixels)
    response = send_file(path, mimetype="image/jpeg", max_age=86400)
    response.headers["Cache-Control"] = "public, max-age=86400, immutable"
    return response


@blueprint.get("/items/<int:item_id>/file")
def item_file(item_id: int):
    """The original file, only from inside a media root."""
    engine = state().engine()
    found = engine.item(item_id)
    path = os.path.normpath(found.path)
    roots = engine.catalog.root_paths()
    if not any(path.startswith(root.rstrip("/") + "/") for root in roots):
        raise UnknownItem(f"item {item_id} is not inside a media root")
    if not os.path.isfile(path):
        raise UnknownItem(f"the file of item {item_id} is gone from disk",
                          "run `spyglass index` to bring the index up to date")
    return send_file(path, mimetype=MIMETYPES.get(found.format, "application/octet-stream"),
                     download_name=os.path.basename(path), conditional=True)


@blueprint.get("/status")
def status():
    """Items, model and index of the live generation."""
    web = state()
    report = status_report(web.settings, web.engine().db)
    # Where the data lives and how to reach the database stay with the operator.
    report.pop("home", None)
    report.pop("database", None)
    return jsonify(report)


@blueprint.get("/healthz")
def healthz():
    """Liveness: the process answers; `index` says whether a generation is loaded."""
    try:
        generation = state().engine().live().generation.id
    except SpyglassError:
        generation = None
    return jsonify(status="ok", generation=generation)


@blueprint.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of this API."""
    return jsonify(openapi_document())
