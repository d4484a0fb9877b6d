"""The OpenAPI 3.1 document of the HTTP API (a test checks it names every route)."""

from __future__ import annotations

from spyglass.search.hybrid import MODES
from spyglass.search.query import MAX_TEXT_BYTES, MAX_WORD_CHARS

from .search_request import DEFAULT_K, MAX_FILTER_CHARS, MAX_K, MAX_RESULTS_DEEP

ERROR = {"$ref": "#/components/schemas/Error"}
ITEM_ID = {"name": "item_id", "in": "path", "required": True, "schema": {"type": "integer"},
           "description": "A catalog id (1 to 2^63-1); any other number is not found."}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                               "schema": {"type": "string"}}}


def _errors(*codes: int) -> dict:
    words = {400: "Bad query (the message names the field and the limit)",
             401: "No credentials, or a token that is unknown, revoked or expired (SPYGLASS_AUTH=accounts)",
             403: "A request from another site, a missing CSRF token, or a search token on an admin route",
             429: "Too many costly requests, or failed logins: wait Retry-After seconds",
             404: "Unknown item, or its file is gone, changed or outside the media folders",
             413: "Request too large", 415: "Not an image",
             416: "Range not satisfiable", 422: "Image does not decode, or is too large or too thin",
             503: "No index loaded, the model or the database is unavailable, or too busy"}
    out = {}
    for code in codes:
        out[str(code)] = {"description": words[code], "content": {"application/json": {"schema": ERROR}}}
        if code in (429, 503):
            out[str(code)]["headers"] = RETRY_AFTER
        if code == 401:
            out[str(code)]["headers"] = {"WWW-Authenticate": {"description": 'Bearer realm="spyglass"',
                                                              "schema": {"type": "string"}}}
    return out


def _ok(description: str, schema: dict | None = None, media: str | tuple[str, ...] = "application/json") -> dict:
    content = {m: {"schema": schema or {"type": "object"}} for m in ((media,) if isinstance(media, str) else media)}
    return {"200": {"description": description, "content": content}}


SEARCH_FIELDS = [
    ("q", {"type": "string", "maxLength": MAX_TEXT_BYTES},
     f"Text to search for: at most {MAX_TEXT_BYTES:,} bytes, no word over {MAX_WORD_CHARS} characters "
     "(the model reads ~77 tokens)."),
    ("image_id", {"type": "integer"}, "Find items like this item (more like this)."),
    ("k", {"type": "integer", "minimum": 1, "maximum": MAX_K}, f"Results per page, 1-{MAX_K} (default {DEFAULT_K})."),
    ("offset", {"type": "integer", "minimum": 0}, f"Skip this many results (offset + k at most {MAX_RESULTS_DEEP:,})."),
    ("min_score", {"type": "number"},
     "Only results with at least this cosine similarity (in hybrid mode, its visual half)."),
    ("mode", {"type": "string", "enum": list(MODES)},
     "For text: `hybrid` (default) fuses the visual ranking with the words the media holds (names, captions, "
     "text read from images, subtitles) by reciprocal rank fusion; `visual` or `words` alone. Images, items "
     "and embeddings are always visual."),
    ("folder", {"type": "string", "maxLength": MAX_FILTER_CHARS},
     "Only items under this folder, relative to a media root (or absolute)."),
    ("kind", {"type": "string"}, "Only items of this kind: image or video."),
    ("label", {"type": "string", "maxLength": MAX_FILTER_CHARS},
     "Only items whose best zero-shot label is this (SPYGLASS_LABELS)."),
    ("mtime_from", {"type": "string"}, "Only files modified at or after this ISO date or epoch second."),
    ("mtime_to", {"type": "string"}, "Only files modified at or before this ISO date or epoch second."),
    ("taken_from", {"type": "string", "format": "date"},
     "Only items taken at or after this ISO date or date-time (the wall clock where taken: EXIF, XMP or a "
     "video's tags; else the file's mtime in UTC)."),
    ("taken_to", {"type": "string", "format": "date"}, "Only items taken at or before this (a date: to its end)."),
    ("camera", {"type": "string", "maxLength": MAX_FILTER_CHARS}, "Only items whose camera's name holds this."),
    ("place", {"type": "string", "maxLength": MAX_FILTER_CHARS},
     "Only items whose place name (GeoNames, from GPS) holds this."),
    ("near", {"type": "string", "pattern": r"^-?[0-9.]+,-?[0-9.]+,[0-9.]+$"},
     "Only items taken within km of a point: `latitude,longitude,km`."),
    ("sort", {"type": "string", "enum": ["relevance", "date"]},
     "`date`: the best matches (the first 500 that pass `cutoff`), newest first."),
    ("cutoff", {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
     "Leave out results scoring under this share of the best result's score."),
    ("collapse", {"type": "boolean"},
     "Fold near-duplicates into the best of them (`duplicates` lists the folded ids)."),
    ("interpret", {"type": "boolean"},
     "Read dates and known places out of `q` as filters (default true); `understood` says what was read."),
    ("crop", {"type": "string", "pattern": r"^[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+$"},
     "With image_id: search by this box of the image, `x,y,width,height` as shares of it (0 to 1)."),
    ("positive", {"type": "string", "pattern": r"^[0-9,]*$"},
     "Item ids (comma-separated) to pull the results towards (the page's +)."),
    ("negative", {"type": "string", "pattern": r"^[0-9,]*$"},
     "Item ids to push the results away from, at half the query's weight (the page's −)."),
    ("without", {"type": "string", "maxLength": MAX_FILTER_CHARS},
     "A text to push the results away from (repeatable)."),
]

PART = {"type": "object", "properties": {
    "text": {"type": "string"}, "image_base64": {"type": "string", "contentEncoding": "base64"},
    "image_id": {"type": "integer"}, "embedding": {"type": "array", "items": {"type": "number"}},
    "weight": {"type": "number", "default": 1},
    "crop": {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
             "description": "With image_id: x, y, width, height of a box of the image, as shares of it."}},
    "description": "Exactly one of text, image_base64, image_id, embedding; negative weights push away."}

SEARCH_BODY = {"type": "object", "properties": {
    **{k: v for k, v in PART["properties"].items() if k != "weight"},
    "query": {"type": "array", "items": {"$ref": "#/components/schemas/QueryPart"},
              "description": "Weighted parts: their unit embeddings are summed and renormalised."},
    "k": {"type": "integer"}, "offset": {"type": "integer"}, "min_score": {"type": "number"},
    "mode": {"type": "string", "enum": list(MODES)},
    "sort": {"type": "string", "enum": ["relevance", "date"]},
    "cutoff": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}, "collapse": {"type": "boolean"},
    "interpret": {"type": "boolean"},
    "filters": {"type": "object", "properties": {
        "folder": {"type": "string"}, "kind": {"type": "string"}, "label": {"type": "string"},
        "mtime_from": {"type": ["string", "number"]}, "mtime_to": {"type": ["string", "number"]},
        "taken_from": {"type": "string"}, "taken_to": {"type": "string"}, "camera": {"type": "string"},
        "place": {"type": "string"},
        "near": {"description": "`latitude,longitude,km`, or a list of the three numbers.",
                 "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "number"}}]}}}}}

CHIP = {"type": "object", "properties": {
    "kind": {"type": "string", "enum": ["date", "place"]}, "text": {"type": "string", "description": "As typed."},
    "taken_from": {"type": "string"}, "taken_to": {"type": "string"}, "place": {"type": "string"}}}

SEARCH_RESPONSE = {"type": "object", "properties": {
    "results": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
    "k": {"type": "integer"}, "offset": {"type": "integer"},
    "next_offset": {"type": ["integer", "null"]}, "total_considered": {"type": "integer"},
    "generation": {"type": "integer"}, "took_ms": {"type": "number"},
    "understood": {"type": ["object", "null"], "description": "The dates and places read out of q, and the "
                   "text left to search for (null when q was not read: interpret=false, or no lone text).",
                   "properties": {"text": {"type": "string"}, "chips": {"type": "array", "items": CHIP}}}}}

ITEM = {"type": "object", "properties": {
    "id": {"type": "integer"}, "path": {"type": "string", "description": "Relative to its media root."},
    "name": {"type": "string"},
    "root": {"type": ["string", "null"], "description": "The media folder's name (its path with SPYGLASS_EXPOSE_PATHS)."},
    "kind": {"type": "string"},
    "format": {"type": "string"}, "width": {"type": "integer"}, "height": {"type": "integer"},
    "size": {"type": "integer"}, "mtime": {"type": ["string", "null"]}, "indexed_at": {"type": "string"},
    "url": {"type": "string"}, "thumbnail_url": {"type": "string"}, "file_url": {"type": "string"},
    "source_url": {"type": ["string", "null"], "description": "Where an imported item's original lives "
                   "(then file_url and thumbnail_url are it, when there is no local file)."},
    "caption": {"type": ["string", "null"], "description": "An imported item's caption."},
    "labels": {"type": "array", "description": "Best zero-shot labels first (empty without SPYGLASS_LABELS).",
               "items": {"type": "object", "properties": {"label": {"type": "string"}, "score": {"type": "number"}}}},
    "duration_s": {"type": "number", "description": "Videos only: the length in seconds."},
    "poster_s": {"type": "number", "description": "Videos only: the moment whose frame is the video's thumbnail."},
    "taken_at": {"type": ["string", "null"], "description": "When it was taken, the wall clock where it was."},
    "taken_offset_min": {"type": ["integer", "null"], "description": "taken_at's offset from UTC, when known."},
    "taken_source": {"type": ["string", "null"], "enum": ["exif", "xmp", "container", "mtime", None],
                     "description": "Where taken_at comes from; `mtime`: the file's, no date in the file."},
    "camera": {"type": ["string", "null"]}, "lens": {"type": ["string", "null"]},
    "place": {"type": ["string", "null"], "description": "GeoNames names near its GPS position."},
    "latitude": {"type": ["number", "null"]}, "longitude": {"type": ["number", "null"]}}}

SEGMENT = {"type": "object", "properties": {
    "start_s": {"type": "number"}, "end_s": {"type": "number"}, "best_s": {"type": "number"},
    "score": {"type": "number"}}}


MATCH = {"type": "object", "properties": {
    "field": {"type": "string", "enum": ["name", "caption", "keywords", "ocr", "speech", "subtitle", "place", "camera"]},
    "snippet": {"type": "string", "description": "HTML-escaped text around the match, the words in <mark>."},
    "start_s": {"type": "number", "description": "A timed text (a subtitle): where it starts."},
    "end_s": {"type": "number"}}}


# Answered without credentials: liveness and this document.
PUBLIC_PATHS = ("/api/v1/healthz", "/api/v1/openapi.json", "/login", "/favicon.ico")
# Rationed per principal (web/limits.py).
RATIONED_PATHS = ("/api/v1/search", "/knn-service")
LOGIN_FORM = {"type": "object", "properties": {"name": {"type": "string"}, "password": {"type": "string"},
                                               "csrf_token": {"type": "string"}, "next": {"type": "string"}}}


def openapi_document() -> dict:
    """The whole document, with the credentials each operation takes and the answers they bring."""
    document = _document()
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path in PUBLIC_PATHS:
                operation["security"] = []
                continue
            operation["responses"].update(_errors(401, 403))
            if path in RATIONED_PATHS:
                operation["responses"].update(_errors(429))
    return document


def _document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Spyglass", "version": "1",
                 "description": "Cross-modal search over a media library."},
        "paths": {
            "/": {"get": {"summary": "The search page (HTML).", "responses": _ok("The page", media="text/html")}},
            "/favicon.ico": {"get": {"summary": "The icon: a redirect to the SVG one.",
                                     "responses": {"301": {"description": "To /static/favicon.svg"}}}},
            "/api/v1/search": {
                "get": {"summary": "Search by text or by item.",
                        "parameters": [{"name": n, "in": "query", "schema": t, "description": d}
                                       for n, t, d in SEARCH_FIELDS],
                        "responses": {**_ok("Ranked results", SEARCH_RESPONSE), **_errors(400, 404, 503)}},
                "post": {"summary": "Search by text, image, item, embedding, or a weighted mix.",
                         "requestBody": {"content": {
                             "application/json": {"schema": SEARCH_BODY},
                             "multipart/form-data": {"schema": {"type": "object", "properties": {
                                 "image": {"type": "string", "format": "binary"},
                                 **{n: t for n, t, _ in SEARCH_FIELDS}}}}}},
                         "responses": {**_ok("Ranked results", SEARCH_RESPONSE),
                                       **_errors(400, 403, 404, 413, 415, 422, 503)}}},
            "/api/v1/items/{item_id}": {"get": {
                "summary": "An item's metadata.", "parameters": [ITEM_ID],
                "responses": {**_ok("The item", {"$ref": "#/components/schemas/Item"}), **_errors(404, 503)}}},
            "/api/v1/items/{item_id}/thumbnail": {"get": {
                "summary": "A JPEG thumbnail of the item; of a video, its frame at t (default: its poster frame).",
                "parameters": [ITEM_ID, {"name": "t", "in": "query", "required": False,
                                         "schema": {"type": "number", "minimum": 0},
                                         "description": "Videos only: the moment, in seconds."},
                               {"name": "size", "in": "query", "required": False,
                                "schema": {"type": "string", "enum": ["grid", "preview"]},
                                "description": "grid (320 px, the default) or preview (1280 px, the viewer's)."}],
                "responses": {**_ok("JPEG", {"type": "string", "format": "binary"}, "image/jpeg"),
                              **_errors(400, 404, 415, 422, 503)}}},
            "/api/v1/items/{item_id}/file": {"get": {
                "summary": "The original file: only while it is the indexed file, inside a media folder "
                           "(symbolic links as SPYGLASS_FOLLOW_SYMLINKS says). Answers Range requests.",
                "parameters": [ITEM_ID, {"name": "Range", "in": "header", "required": False,
                                         "schema": {"type": "string"}, "description": "e.g. bytes=0-1023"}],
                "responses": {**_ok("The file", {"type": "string", "format": "binary"},
                                    ("image/*", "video/*", "audio/*")),
                              "206": {"description": "The requested part of the file",
                                      "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}},
                              **_errors(400, 404, 416, 503)}}},
            "/api/v1/status": {"get": {"summary": "Items, model, index and last run (folder and "
                                                  "checkpoint names only, unless SPYGLASS_EXPOSE_PATHS).",
                                       "responses": {**_ok("Status"), **_errors(503)}}},
            "/api/v1/healthz": {"get": {"summary": "Liveness, and the loaded generation.",
                                        "responses": {**_ok("Alive"), **_errors(503)}}},
            "/api/v1/openapi.json": {"get": {"summary": "This document.", "responses": _ok("OpenAPI")}},
            "/metrics": {"get": {"summary": "Prometheus metrics, added up across the server's workers.",
                                 "responses": {**_ok("Metrics", {"type": "string"}, "text/plain"), **_errors(503)}}},
            "/knn-service": {"post": {
                "summary": "clip-retrieval compatible nearest-neighbour search.",
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                    "text": {"type": "string"}, "image": {"type": "string", "contentEncoding": "base64"},
                    "embedding_input": {"type": "array", "items": {"type": "number"}},
                    "num_images": {"type": "integer"}, "deduplicate": {"type": "boolean"},
                    "indice_name": {"type": "string"}, "modality": {"type": "string"}}}}}},
                "responses": {**_ok("[{id, similarity, url, caption}]", {"type": "array"}),
                              **_errors(400, 403, 413, 415, 422, 503)}}},
            "/metadata": {"post": {
                "summary": "clip-retrieval compatible metadata by ids.",
                "requestBody": {"content": {"application/json": {"schema": {"type": "object", "properties": {
                    "ids": {"type": "array", "items": {"type": "integer"}}, "indice_name": {"type": "string"}}}}}},
                "responses": {**_ok("[{id, metadata}]", {"type": "array"}), **_errors(400, 403, 413, 503)}}},
            "/indices-list": {"get": {"summary": "clip-retrieval compatible list of index names.",
                                      "responses": _ok("Names", {"type": "array", "items": {"type": "string"}})}},
            "/login": {
                "get": {"summary": "The login form (HTML; SPYGLASS_AUTH=accounts).",
                        "responses": {**_ok("The form", media="text/html"),
                                      "404": {"description": "No accounts", "content": {"text/html": {}}}}},
                "post": {"summary": "Log in: a session cookie, then a redirect (303) to `next`.",
                         "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": LOGIN_FORM}}},
                         "responses": {"303": {"description": "Logged in"},
                                       **{str(c): {"description": d, "content": {"text/html": {}}} for c, d in
                                          ((401, "Wrong name or password"), (403, "The form expired"),
                                           (404, "No accounts"), (429, "Too many failed logins"))}}}},
            "/logout": {"post": {"summary": "End the page session (needs its CSRF token).",
                                 "responses": {"303": {"description": "Logged out"}}}},
        },
        "security": [{}, {"bearerAuth": []}, {"basicAuth": []}],
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "A token from `spyglass token create` (SPYGLASS_AUTH=accounts)."},
                "basicAuth": {"type": "http", "scheme": "basic",
                              "description": "The token's owner as the name, the token as the password."}},
            "schemas": {
            "Error": {"type": "object", "required": ["error", "message"],
                      "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
            "QueryPart": PART,
            "Item": ITEM,
            "Hit": {"allOf": [{"$ref": "#/components/schemas/Item"}, {"type": "object", "properties": {
                "rank": {"type": "integer"},
                "score": {"type": "number", "description": "visual: the cosine; words: the keyword score; "
                          "hybrid: the reciprocal rank fusion score."},
                "matches": {"type": "array", "items": {"$ref": "#/components/schemas/Match"},
                            "description": "The texts that hold the query's words, best first (at most 3)."},
                "start_s": {"type": "number", "description": "Videos: the best segment's start."},
                "end_s": {"type": "number"}, "best_s": {"type": "number", "description": "Its best frame's time."},
                "segments": {"type": "array", "items": {"$ref": "#/components/schemas/Segment"},
                             "description": "Videos: at most 3 matching moments, best first."},
                "duplicates": {"type": "array", "items": {"type": "integer"},
                               "description": "With collapse: the near-identical items folded into this one."}}}]},
            "Segment": SEGMENT,
            "Match": MATCH,
        }},
    }
