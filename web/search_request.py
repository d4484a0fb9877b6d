"""Turn a search request (GET query string, JSON body or multipart form) into engine arguments."""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from flask import Request

from spyglass.search.errors import BadQuery
from spyglass.search.query import Filters, QueryPart

DEFAULT_K = 20
MAX_K = 1000
PART_KEYS = ("text", "image_base64", "image_id", "embedding")


@dataclass
class SearchRequest:
    """Everything SearchEngine.search needs."""

    parts: list[QueryPart]
    k: int = DEFAULT_K
    offset: int = 0
    min_score: float | None = None
    filters: Filters = field(default_factory=Filters)


def parse_search_request(request: Request) -> SearchRequest:
    """Read a GET, a JSON POST or a multipart POST."""
    if request.method == "GET":
        return _from_fields(request.args, uploaded=None)
    if request.mimetype == "application/json":
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise BadQuery("the body is not a JSON object")
        return _from_json(body)
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        upload = request.files.get("image")
        return _from_fields(request.form, uploaded=upload.read() if upload else None)
    raise BadQuery(f"unsupported content type {request.mimetype or 'none'}",
                   "send JSON, multipart/form-data, or use GET with ?q=")


def _from_fields(fields: Mapping[str, str], uploaded: bytes | None) -> SearchRequest:
    parts = []
    text = fields.get("q") or fields.get("text")
    if text is not None:
        parts.append(QueryPart(text=text))
    if fields.get("image_id"):
        parts.append(QueryPart(item_id=_int(fields["image_id"], "image_id")))
    if uploaded is not None:
        if not uploaded:
            raise BadQuery("the uploaded image is empty")
        parts.append(QueryPart(image=uploaded))
    if not parts:
        raise BadQuery("nothing to search for", "give q=<text>, image_id=<id>, or upload an image")
    return SearchRequest(parts=parts, **_paging(fields), filters=_filters(fields))


def _from_json(body: dict[str, Any]) -> SearchRequest:
    if "query" in body:
        if not isinstance(body["query"], list) or not body["query"]:
            raise BadQuery("query must be a non-empty list of parts")
        parts = [_part(p, f"query[{i}]") for i, p in enumerate(body["query"])]
    else:
        given = {k: body[k] for k in PART_KEYS if body.get(k) is not None}
        if not given:
            raise BadQuery("nothing to search for",
                           "give one of text, image_base64, image_id, embedding, or a query list")
        parts = [_part({k: v}, k) for k, v in given.items()]
    filters = body.get("filters") or {}
    if not isinstance(filters, dict):
        raise BadQuery("filters must be an object")
    return SearchRequest(parts=parts, **_paging(body), filters=_filters(filters))


def _part(raw: Any, where: str) -> QueryPart:
    if not isinstance(raw, dict):
        raise BadQuery(f"{where} must be an object such as {{\"text\": \"beach\", \"weight\": 1}}")
    weight = _float(raw.get("weight", 1.0), f"{where}.weight")
    keys = [k for k in PART_KEYS if raw.get(k) is not None]
    if len(keys) != 1:
        raise BadQuery(f"{where} needs exactly one of {', '.join(PART_KEYS)}")
    key, value = keys[0], raw[keys[0]]
    if key == "text":
        if not isinstance(value, str):
            raise BadQuery(f"{where}.text must be a string")
        return QueryPart(text=value, weight=weight)
    if key == "image_id":
        return QueryPart(item_id=_int(value, f"{where}.image_id"), weight=weight)
    if key == "embedding":
        if not isinstance(value, list) or not all(isinstance(x, (int, float)) for x in value):
            raise BadQuery(f"{where}.embedding must be a list of numbers")
        return QueryPart(embedding=value, weight=weight)
    return QueryPart(image=decode_base64(value, f"{where}.image_base64"), weight=weight)


def decode_base64(value: Any, where: str) -> bytes:
    """Bytes from base64 text, with or without a data: URL prefix."""
    if not isinstance(value, str):
        raise BadQuery(f"{where} must be a base64 string")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadQuery(f"{where} is not valid base64") from None
    if not data:
        raise BadQuery(f"{where} is empty")
    return data


def _paging(fields: Mapping[str, Any]) -> dict:
    k = _int(fields.get("k", DEFAULT_K), "k")
    offset = _int(fields.get("offset", 0), "offset")
    if not 1 <= k <= MAX_K:
        raise BadQuery(f"k must be between 1 and {MAX_K}, not {k}")
    if offset < 0:
        raise BadQuery(f"offset must not be negative, not {offset}")
    min_score = fields.get("min_score")
    return {"k": k, "offset": offset,
            "min_score": None if min_score in (None, "") else _float(min_score, "min_score")}


def _filters(fields: Mapping[str, Any]) -> Filters:
    kind = fields.get("kind") or None
    folder = fields.get("folder") or None
    for name, value in (("kind", kind), ("folder", folder)):
        if value is not None and not isinstance(value, str):
            raise BadQuery(f"{name} must be a string")
    return Filters(folder=folder, kind=kind,
                   mtime_from_ns=_time_ns(fields.get("mtime_from"), "mtime_from"),
                   mtime_to_ns=_time_ns(fields.get("mtime_to"), "mtime_to"))


def _time_ns(value: Any, name: str) -> int | None:
    """Epoch seconds, or an ISO 8601 date or datetime (UTC when it has no zone)."""
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1_000_000_000)
    try:
        return int(float(value) * 1_000_000_000)
    except (TypeError, ValueError):
        pass
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        raise BadQuery(f"{name} must be epoch seconds or an ISO date such as 2024-06-30") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1_000_000_000)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise BadQuery(f"{name} must be a whole number")
    try:
        number = float(value) if isinstance(value, float) else int(value)
    except (TypeError, ValueError):
        raise BadQuery(f"{name} must be a whole number, not {value!r}") from None
    if isinstance(number, float) and not number.is_integer():
        raise BadQuery(f"{name} must be a whole number, not {value!r}")
    return int(number)


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise BadQuery(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadQuery(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise BadQuery(f"{name} must be a finite number")
    return number
