"""The JSON API under /api/v1: search, items, thumbnails, originals, status, health, OpenAPI."""

from __future__ import annotations

import io
import math
import os
import re
import time
from dataclasses import replace
from urllib.parse import quote

from flask import Blueprint, current_app, jsonify, request, send_file
from werkzeug.exceptions import RequestedRangeNotSatisfiable
from werkzeug.wsgi import wrap_file

from spyglass.search.arrange import arranged_search
from spyglass.search.errors import BadQuery, SpyglassError
from spyglass.search.media.images import decode_gate
from spyglass.search.memory import worker_memory
from spyglass.search.status import status_report
from spyglass.search.media.thumbnails import SIZES, ensure_thumbnail
from spyglass.search.understand import interpreted

from .auth import principal, within
from .limits import costly, known_costly
from .openapi import openapi_document
from .present import hit_json, item_json, public_status
from .search_request import parse_search_request
from .state import state

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")
MIMETYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp",
             "GIF": "image/gif", "BMP": "image/bmp", "TIFF": "image/tiff", "HEIF": "image/heic", "AVIF": "image/avif",
             "MP4": "video/mp4", "MKV": "video/x-matroska", "WEBM": "video/webm", "AVI": "video/x-msvideo",
             "MP3": "audio/mpeg", "M4A": "audio/mp4", "WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg",
             "OPUS": "audio/ogg"}
# Characters a Content-Disposition file name may not carry as they are (controls, quotes).
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f"\\]')


@blueprint.route("/search", methods=["GET", "POST"])
def search():
    """Ranked results for text, an image, an item, an embedding, or a weighted mix of them."""
    web = state()
    started = time.perf_counter()
    key = principal().key
    early = known_costly(request.content_length)  # refused before the body is read
    with web.metrics.timed("search"), web.limits.costly(key, when=early):
        query = parse_search_request(request)
        engine = web.engine()
        parts, filters, understood = query.parts, query.filters, None
        if query.interpret:
            engine.live()  # no index yet: 503 before the catalog is asked for its places
            parts, filters, understood = interpreted(parts, filters, engine.catalog, web.settings.languages())
        # Folding and date order score a window from the first hit: its size is what it costs.
        fetched = query.arrangement.window(query.k, query.offset) if query.arrangement.active() else query.k
        with web.limits.costly(key, when=not early and costly(query.parts, fetched, query.offset)):
            arrangement = replace(query.arrangement, duplicate_cosine=web.settings.duplicate_cosine)
            result = arranged_search(engine, parts, query.k, query.offset, arrangement,
                                     min_score=query.min_score, filters=replace(filters, within=within()),
                                     mode=query.mode)
    return jsonify(
        results=[hit_json(hit) for hit in result.hits],
        understood=None if understood is None else {"text": understood.text,
                                                     "chips": [chip.as_dict() for chip in understood.chips]},
        k=query.k, offset=query.offset, next_offset=result.next_offset,
        total_considered=result.total, generation=result.generation_id,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
    )


@blueprint.get("/items/<int:item_id>")
def item(item_id: int):
    """One item's metadata."""
    return jsonify(item_json(state().engine().item(item_id, within())))


@blueprint.get("/items/<int:item_id>/thumbnail")
def thumbnail(item_id: int):
    """A JPEG thumbnail, made on first request and cached; only for a file /file would serve.

    For a video, `t` picks the moment (seconds); without it, the poster frame. `size=preview` is the
    viewer's size (1280 px), `grid` (the default) the results' (320 px).
    """
    web = state()
    engine = web.engine()
    found = engine.item(item_id, within())
    size = SIZES.get(request.args.get("size") or "grid")
    if size is None:
        raise BadQuery(f"size must be one of {', '.join(SIZES)}")
    made = ensure_thumbnail(web.thumbnails, found, engine.media(), web.settings.max_image_pixels,
                            decode_gate(web.settings.decode_memory), size=size, at_s=_moment(request.args.get("t")))
    # Bytes when the cache could not keep it (a full disk): served all the same.
    response = send_file(io.BytesIO(made) if isinstance(made, bytes) else made, mimetype="image/jpeg",
                         max_age=86400)
    response.headers["Cache-Control"] = "public, max-age=86400, immutable"
    return response


@blueprint.get("/items/<int:item_id>/file")
def item_file(item_id: int):
    """The original file, only while it is the indexed file, inside a media root (SPYGLASS_FOLLOW_SYMLINKS)."""
    engine = state().engine()
    found = engine.item(item_id, within())
    handle, info = engine.media().open_indexed(found.path, found.size, found.mtime_ns, found.format)
    response = current_app.response_class(
        wrap_file(request.environ, handle), mimetype=MIMETYPES.get(found.format, "application/octet-stream"),
        direct_passthrough=True)
    response.content_length = info.st_size
    response.last_modified = info.st_mtime
    response.set_etag(found.content_hash[:32])
    response.headers["Content-Disposition"] = _inline_disposition(os.path.basename(found.path))
    try:
        environ = dict(request.environ)
        byte_range = usable_range(environ.pop("HTTP_RANGE", None), info.st_size)
        if byte_range is not None:
            environ["HTTP_RANGE"] = byte_range
        return response.make_conditional(environ, accept_ranges=True, complete_length=info.st_size)
    except RequestedRangeNotSatisfiable:
        handle.close()
        raise


_ONE_RANGE = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", re.IGNORECASE)


def usable_range(header: str | None, length: int) -> str | None:
    """The Range header to answer, as RFC 9110 reads it: None (send the whole file, 200) for no
    header, one that does not parse, another unit, or several ranges (a server may answer
    those whole); a suffix longer than the file asks for all of it; a range that starts past
    the end is 416 with `Content-Range: bytes */LENGTH`."""
    match = _ONE_RANGE.fullmatch(header or "")
    if match is None or not (match[1] or match[2]):
        return None
    if not match[1]:  # bytes=-N: the last N bytes
        suffix = int(match[2])
        if suffix == 0 or length == 0:
            raise RequestedRangeNotSatisfiable(length=length)
        return f"bytes={max(0, length - suffix)}-"
    first = int(match[1])
    if match[2] and int(match[2]) < first:
        return None  # invalid: ignored, like any Range that does not parse
    if first >= length:
        raise RequestedRangeNotSatisfiable(length=length)
    return f"bytes={first}-{min(int(match[2]), length - 1) if match[2] else ''}"


def _moment(text: str | None) -> float | None:
    """The `t` query parameter: seconds, a finite number."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadQuery("t must be a number of seconds, e.g. t=72.5") from None
    if not math.isfinite(value):
        raise BadQuery("t must be a finite number of seconds")
    return value


def _inline_disposition(name: str) -> str:
    """`inline` with the file name, which may hold anything a file name can (newlines included)."""
    plain = _UNSAFE_NAME.sub("_", name).encode("ascii", "replace").decode("ascii").replace("?", "_")
    return f"inline; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


@blueprint.get("/status")
def status():
    """Items, model and index of the live generation."""
    web = state()
    if not principal().sees_all:
        # Someone who sees some folders learns how many items they hold, and nothing of the rest.
        engine = web.engine()
        generation = engine.live().generation.id  # 503 while nothing is indexed
        return jsonify(items=engine.count_visible(within()), generation=generation, scope="granted folders")
    report = public_status(status_report(web.settings, web.engine().db), web.settings.expose_paths)
    # This worker's text encoder, once a query has loaded it (none before: status loads nothing).
    report["query_encoder"] = (web.engine().loaded_precisions() or [None])[0]
    # The answering worker's memory and the live index's share of it (SPYGLASS_INDEX_MEMORY's subject).
    # The catalog's live generation, not engine.live(): status loads no index file (a damaged one would
    # be marked bad here, and the next search would lose the message saying where).
    live = web.engine().catalog.live_generation() if report.get("index") else None
    report["worker"] = worker_memory(live)
    return jsonify(report)


@blueprint.get("/healthz")
def healthz():
    """Liveness: the process answers; `generation` is the loaded one. 503 "loading" while `serve`
    loads the index and the model at start."""
    if state().loading:
        response = jsonify(status="loading", generation=None)
        response.status_code = 503
        response.headers["Retry-After"] = "2"
        return response
    try:
        generation = state().engine().live().generation.id
    except SpyglassError:
        generation = None
    return jsonify(status="ok", generation=generation)


@blueprint.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of this API."""
    return jsonify(openapi_document())
