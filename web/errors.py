"""One place that turns errors into JSON `{"error", "message"}` for clients, a page for browsers.

Server-side failures are logged as one escaped line. Their HTTP answers carry no paths (index
files, checkpoints) unless the operator sets SPYGLASS_EXPOSE_PATHS; the log has the full text.
"""

from __future__ import annotations

import logging
import os
import traceback

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from spyglass.search.catalog.outage import database_unavailable
from spyglass.search.display import printable
from spyglass.search.errors import (BadQuery, DatabaseNotReady, ImageRefused, ImageTooLarge, IndexFileError,
                                    InvalidImage, MediaFileError, ModelUnavailable, NoIndex, NotAnImage,
                                    SpyglassError, Transient, UnknownItem)

log = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 10

# Most specific first: the first class an error is an instance of gives its status. The last
# column is what a client is told when paths are hidden (None: the error's own message).
STATUS_BY_ERROR: tuple[tuple[type[SpyglassError], int, str, str | None], ...] = (
    (NoIndex, 503, "no_index", None),
    (DatabaseNotReady, 503, "database_not_ready", None),
    (IndexFileError, 503, "index_unavailable", "the index could not be loaded; the server log says why"),
    (ModelUnavailable, 503, "model_unavailable", "the model could not be loaded; the server log says why"),
    (Transient, 503, "busy", None),  # ServerBusy, OutOfMemory: try again
    (UnknownItem, 404, "not_found", None),
    (MediaFileError, 404, "not_found", None),
    (NotAnImage, 415, "not_an_image", None),
    (ImageTooLarge, 422, "image_too_large", None),
    (ImageRefused, 422, "image_refused", None),
    (InvalidImage, 422, "undecodable_image", None),
    (BadQuery, 400, "bad_query", None),
    (SpyglassError, 400, "bad_request", "the request could not be answered; the server log says why"),
)
JSON_PREFIXES = ("/api/", "/knn-service", "/metadata", "/indices-list", "/metrics")


def wants_json() -> bool:
    """Pages get HTML unless the client prefers JSON; API paths get JSON, except for a browser that
    opened the URL itself (it names text/html outright, as a navigation does; fetch() sends */*)."""
    if request.path.startswith(JSON_PREFIXES):
        named = dict(request.accept_mimetypes)
        return not ("text/html" in named and named["text/html"] >= request.accept_mimetypes["application/json"])
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(status: int, error: str, message: str):
    """The response for one error, in the form the client wants."""
    if wants_json():
        response = jsonify(error=error, message=message)
    else:
        response = current_app.make_response(render_template("error.html", status=status, message=message))
    response.status_code = status
    if status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _domain_error(exc: SpyglassError):
    for cls, status, code, public in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            # An empty library or a busy moment is not a fault of the server; the rest is.
            if cls is Transient:
                log.warning("busy on %s %s: %s", request.method, printable(request.path, 200), printable(str(exc)))
            elif (status >= 500 and cls is not NoIndex) or cls is SpyglassError:
                log.error("%s on %s %s: %s", code, request.method, printable(request.path, 200),
                          printable(str(exc), 500))
            exposed = current_app.extensions["spyglass"].settings.expose_paths
            return error_response(status, code, str(exc) if public is None or exposed else public)
    raise AssertionError("SpyglassError is the last entry")


def _http_error(exc: HTTPException):
    code = (exc.name or "error").lower().replace(" ", "_")
    message = exc.description or exc.name
    if exc.code == 413:
        limit = request.max_content_length
        message = f"the request is larger than the {limit // (1024 * 1024)} MiB limit (SPYGLASS_MAX_UPLOAD_BYTES)"
    response = error_response(exc.code or 500, code, message)
    # The headers the status needs: Content-Range on a 416, Allow on a 405, Retry-After.
    for name, value in exc.get_headers():
        if name.lower() in ("content-range", "allow", "retry-after", "www-authenticate"):
            response.headers[name] = value
    return response


def _database_error(exc: Exception):
    """The catalog database is down, restarting or locked: 503, to be retried."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    log.error("database unavailable on %s %s: %s: %s", request.method, printable(request.path, 200),
              type(orig).__name__, printable(first, 300))
    return error_response(503, "database_unavailable",
                          "the catalog database cannot be reached right now; try again shortly")


def _unexpected(exc: Exception):
    if database_unavailable(exc):
        return _database_error(exc)
    log.error("unexpected error on %s %s: %s", request.method, printable(request.path, 200), _one_line(exc))
    log.debug("traceback of the error above", exc_info=exc)
    return error_response(500, "internal_error", "something went wrong on the server; it is logged")


def _one_line(exc: Exception) -> str:
    """'KeyError: 'x' at engine.py:120 in embed': the error and where it was raised."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {printable(text[0] if text else '', 300)}{where}"


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(SpyglassError, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
