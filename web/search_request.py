"""Turn a search request (GET query string, JSON body or multipart form) into engine arguments.

Everything here is hostile input: each field is checked for type, range and size, and anything
wrong is a BadQuery (400) that names the field, never an exception from deeper down.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

from flask import Request

from spyglass.search.arrange import SORTS, Arrangement
from spyglass.search.crops import check_crop
from spyglass.search.display import printable
from spyglass.search.errors import BadQuery
from spyglass.search.hybrid import MODES
from spyglass.search.query import Filters, QueryPart

DEFAULT_K = 20
MAX_K = 1000
# Deep pages cost a search of offset + k neighbours; nobody reads past this many results.
MAX_RESULTS_DEEP = 100_000
MAX_FILTER_CHARS = 4096
PART_KEYS = ("text", "image_base64", "image_id", "embedding")
# Catalog times are int64 nanoseconds since 1970: about the years 1678 to 2262.
_NS_PER_SECOND = 1_000_000_000
_MAX_SECONDS = (2**63 - 1) // _NS_PER_SECOND


@dataclass
class SearchRequest:
    """Everything SearchEngine.search needs."""

    parts: list[QueryPart]
    k: int = DEFAULT_K
    offset: int = 0
    min_score: float | None = None
    filters: Filters = field(default_factory=Filters)
    mode: str | None = None  # hybrid, visual or words; None: hybrid for text, else visual
    arrangement: Arrangement = field(default_factory=Arrangement)
    interpret: bool = True  # dates and places typed into a lone text become filters (search/understand.py)


def parse_search_request(request: Request) -> SearchRequest:
    """Read a GET, a JSON POST or a multipart POST."""
    if request.method == "GET":
        return _from_fields(request.args, uploaded=None)
    if request.mimetype == "application/json":
        return _from_json(read_json(request))
    if request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
        upload = request.files.get("image")
        return _from_fields(request.form, uploaded=upload.read() if upload else None)
    raise BadQuery(f"unsupported content type {printable(request.mimetype or 'none', 80)}",
                   "send JSON, multipart/form-data, or use GET with ?q=")


def read_json(request: Request) -> Any:
    """The body parsed as JSON, whatever its content type; bad or absurdly nested JSON is a BadQuery."""
    try:
        return json.loads(request.get_data(cache=True))
    except RecursionError:
        raise BadQuery("the JSON body is nested too deeply") from None
    except ValueError:  # includes bad UTF-8 and integers past Python's 4,300 digits
        raise BadQuery("the body is not valid JSON") from None


def json_object(request: Request) -> dict:
    """The body as a JSON object."""
    body = read_json(request)
    if not isinstance(body, dict):
        raise BadQuery("the body is not a JSON object")
    return body


def _from_fields(fields: Mapping[str, str], uploaded: bytes | None) -> SearchRequest:
    parts = []
    text = fields.get("q") or fields.get("text")
    if text is not None:
        parts.append(QueryPart(text=text))
    if fields.get("image_id"):
        crop = check_crop(_floats(fields["crop"], "crop")) if fields.get("crop") else None
        parts.append(QueryPart(item_id=_int(fields["image_id"], "image_id"), crop=crop))
    parts += _refinements(fields)
    if uploaded is not None:
        if not uploaded:
            raise BadQuery("the uploaded image is empty")
        parts.append(QueryPart(image=uploaded))
    if not parts:
        raise BadQuery("nothing to search for", "give q=<text>, image_id=<id>, or upload an image")
    return SearchRequest(parts=parts, **_paging(fields), filters=_filters(fields), mode=_mode(fields.get("mode")),
                         **_shown(fields))


def _from_json(body: Any) -> SearchRequest:
    if not isinstance(body, dict):
        raise BadQuery("the body is not a JSON object")
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
    return SearchRequest(parts=parts, **_paging(body), filters=_filters(filters), mode=_mode(body.get("mode")),
                         **_shown(body))


def _shown(fields: Mapping[str, Any]) -> dict:
    """sort, cutoff and collapse (how the ranking is shown), and interpret."""
    sort = fields.get("sort") or "relevance"
    if sort not in SORTS:
        raise BadQuery(f"sort must be one of {', '.join(SORTS)}")
    cutoff = fields.get("cutoff")
    cutoff = None if cutoff in (None, "") else _float(cutoff, "cutoff")
    if cutoff is not None and not 0.0 < cutoff <= 1.0:
        raise BadQuery("cutoff must be above 0 and at most 1 (a share of the best hit's score)")
    return {"arrangement": Arrangement(sort, cutoff, _bool(fields.get("collapse"), "collapse", False)),
            "interpret": _bool(fields.get("interpret"), "interpret", True)}


def _bool(value: Any, name: str, default: bool) -> bool:
    if value in (None, ""):
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return value.lower() in ("1", "true", "yes", "on")
    raise BadQuery(f"{name} must be true or false")


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
        crop = check_crop(_floats(raw["crop"], f"{where}.crop")) if raw.get("crop") is not None else None
        return QueryPart(item_id=_int(value, f"{where}.image_id"), weight=weight, crop=crop)
    if key == "embedding":
        return QueryPart(embedding=embedding(value, f"{where}.embedding"), weight=weight)
    return QueryPart(image=decode_base64(value, f"{where}.image_base64"), weight=weight)


# A 👎 or a "without" pulls away half as hard as the query pulls towards what it asks for.
PUSH_AWAY = -0.5


def _refinements(fields) -> list[QueryPart]:
    """The page's refinements in a query string: positive=ids (👍), negative=ids (👎), without=text (repeatable)."""
    parts = [QueryPart(item_id=_int(i, "positive"), weight=1.0) for i in _ids(fields.get("positive"))]
    parts += [QueryPart(item_id=_int(i, "negative"), weight=PUSH_AWAY) for i in _ids(fields.get("negative"))]
    texts = fields.getlist("without") if hasattr(fields, "getlist") else [fields.get("without")]
    parts += [QueryPart(text=_filter_text(text, "without"), weight=PUSH_AWAY) for text in texts if text]
    return parts


def _ids(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, str) or len(value) > MAX_FILTER_CHARS:
        raise BadQuery("positive and negative must be item ids separated by commas")
    return [piece for piece in value.split(",") if piece.strip()]


def _floats(value: Any, name: str) -> list[float]:
    pieces = value.split(",") if isinstance(value, str) else value
    if not isinstance(pieces, list):
        raise BadQuery(f"{name} must be numbers separated by commas, or a list of numbers")
    return [_float(piece, name) for piece in pieces[:8]]


def embedding(value: Any, where: str) -> list[float]:
    """A raw query vector: a flat list of finite numbers (its length is checked against the model)."""
    if not isinstance(value, list) or not value or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise BadQuery(f"{where} must be a non-empty list of numbers")
    try:
        vector = [float(x) for x in value]
    except OverflowError:  # an integer too large for a float
        raise BadQuery(f"{where} must hold finite numbers") from None
    if not all(math.isfinite(x) for x in vector):
        raise BadQuery(f"{where} must hold finite numbers")
    return vector


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
    if not 0 <= offset <= MAX_RESULTS_DEEP - k:
        raise BadQuery(f"offset must be between 0 and {MAX_RESULTS_DEEP - k} (offset + k is at most "
                       f"{MAX_RESULTS_DEEP:,}), not {offset}")
    min_score = fields.get("min_score")
    return {"k": k, "offset": offset,
            "min_score": None if min_score in (None, "") else _float(min_score, "min_score")}


def _mode(value: Any) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or value not in MODES:
        raise BadQuery(f"mode must be one of {', '.join(MODES)}")
    return value


def _filters(fields: Mapping[str, Any]) -> Filters:
    return Filters(folder=_filter_text(fields.get("folder"), "folder"),
                   kind=_filter_text(fields.get("kind"), "kind"),
                   label=_filter_text(fields.get("label"), "label"),
                   mtime_from_ns=_time_ns(fields.get("mtime_from"), "mtime_from"),
                   mtime_to_ns=_time_ns(fields.get("mtime_to"), "mtime_to"),
                   taken_from=_wall_time(fields.get("taken_from"), "taken_from", end=False),
                   taken_to=_wall_time(fields.get("taken_to"), "taken_to", end=True),
                   camera=_filter_text(fields.get("camera"), "camera"),
                   place=_filter_text(fields.get("place"), "place"),
                   near=_near(fields.get("near")))


def _wall_time(value: Any, name: str, end: bool) -> datetime | None:
    """An ISO date or datetime, as the wall clock where a photo was taken; a date alone as taken_to
    means the end of that day."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadQuery(f"{name} must be an ISO date such as 2023-07-14, or a date and time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadQuery(f"{name} must be an ISO date such as 2023-07-14, or a date and time") from None
    if end and len(value.strip()) == 10:
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999999)
    return moment.replace(tzinfo=None)


def _near(value: Any) -> tuple[float, float, float] | None:
    """'lat,lon,km' (or a list of the three): within km of that point."""
    if value in (None, ""):
        return None
    pieces = value.split(",") if isinstance(value, str) else value
    if not isinstance(pieces, list) or len(pieces) != 3:
        raise BadQuery("near must be latitude,longitude,km such as 48.8584,2.2945,5")
    latitude, longitude, km = (_float(piece, "near") for piece in pieces)
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180 and 0 < km <= 20_000):
        raise BadQuery("near needs a latitude in [-90, 90], a longitude in [-180, 180] and km in (0, 20000]")
    return latitude, longitude, km


def _filter_text(value: Any, name: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise BadQuery(f"{name} must be a string")
    # PostgreSQL text holds no NUL, and a lone surrogate has no UTF-8 form.
    if "\x00" in value or len(value) > MAX_FILTER_CHARS or not _encodes(value):
        raise BadQuery(f"{name} must be text of at most {MAX_FILTER_CHARS} characters, without NUL")
    return value


def _encodes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _time_ns(value: Any, name: str) -> int | None:
    """Epoch seconds, or an ISO 8601 date or datetime (UTC when it has no zone), as int64 nanoseconds."""
    if value in (None, ""):
        return None
    if isinstance(value, bool):
        raise BadQuery(f"{name} must be epoch seconds or an ISO date such as 2024-06-30")
    seconds = None
    if isinstance(value, (int, float)):
        seconds = value
    elif isinstance(value, str):
        try:
            seconds = float(value)
        except ValueError:
            seconds = _iso_seconds(value, name)
    else:
        raise BadQuery(f"{name} must be epoch seconds or an ISO date such as 2024-06-30")
    if not (isinstance(seconds, int) or math.isfinite(seconds)) or abs(seconds) > _MAX_SECONDS:
        raise BadQuery(f"{name} must be a time between the years 1678 and 2262")
    return int(seconds * _NS_PER_SECOND) if isinstance(seconds, float) else seconds * _NS_PER_SECOND


def _iso_seconds(value: str, name: str) -> float:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadQuery(f"{name} must be epoch seconds or an ISO date such as 2024-06-30") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.timestamp()
    except (OverflowError, OSError, ValueError):
        raise BadQuery(f"{name} must be a time between the years 1678 and 2262") from None


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise BadQuery(f"{name} must be a whole number")
    try:
        number = float(value) if isinstance(value, float) else int(value)
    except (TypeError, ValueError):
        raise BadQuery(f"{name} must be a whole number, not {printable(repr(value), 60)}") from None
    if isinstance(number, float) and not number.is_integer():
        raise BadQuery(f"{name} must be a whole number, not {printable(repr(value), 60)}")
    return int(number)


def _float(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise BadQuery(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise BadQuery(f"{name} must be a number, not {printable(repr(value), 60)}") from None
    if not math.isfinite(number):
        raise BadQuery(f"{name} must be a finite number")
    return number
