"""One place that turns errors into JSON `{"error", "message"}` for clients, a page for browsers."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from spyglass.search.errors import (BadQuery, DatabaseNotReady, ImageTooLarge, IndexFileError, InvalidImage,
                           ModelUnavailable, NoIndex, NotAnImage, SpyglassError, UnknownItem)

log = logging.getLogger(__name__)

# Most specific first: the first class an error is an instance of gives its status.
STATUS_BY_ERROR: tuple[tuple[type[SpyglassError], int, str], ...] = (
    (NoIndex, 503, "no_index"),
    (DatabaseNotReady, 503, "database_not_ready"),
    (IndexFileError, 503, "index_unavailable"),
    (ModelUnavailable, 503, "model_unavailable"),
    (UnknownItem, 404, "not_found"),
    (NotAnImage, 415, "not_an_image"),
    (ImageTooLarge, 422, "image_too_large"),
    (InvalidImage, 422, "undecodable_image"),
    (BadQuery, 400, "bad_query"),
    (SpyglassError, 400, "bad_request"),
)
JSON_PREFIXES = ("/api/", "/knn-service", "/metadata", "/indices-list", "/metrics")


def wants_json() -> bool:
    """API paths always get JSON; other paths get it when the client prefers it to HTML."""
    if request.path.startswith(JSON_PREFIXES):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(status: int, error: str, message: str):
    """The response for one error, in the form the client wants."""
    if wants_json():
        return jsonify(error=error, message=message), status
    return render_template("error.html", status=status, message=message), status


def _domain_error(exc: SpyglassError):
    for cls, status, code in STATUS_BY_ERROR:
        if isinstance(exc, cls):
            return error_response(status, code, str(exc))
    raise AssertionError("SpyglassError is the last entry")


def _http_error(exc: HTTPException):
    code = (exc.name or "error").lower().replace(" ", "_")
    message = exc.description or exc.name
    if exc.code == 413:
        limit = request.max_content_length
        message = f"the request is larger than the {limit // (1024 * 1024)} MiB limit (SPYGLASS_MAX_UPLOAD_BYTES)"
    return error_response(exc.code or 500, code, message)


def _unexpected(exc: Exception):
    log.exception("unexpected error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "something went wrong on the server; it is logged")


def init_app(app: Flask) -> None:
    """Register the handlers."""
    app.register_error_handler(SpyglassError, _domain_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
