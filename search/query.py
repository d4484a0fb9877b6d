"""What a search asks for: weighted query parts, and metadata filters."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

from datetime import datetime

from sqlalchemy import exists, func, or_

from spyglass.search.errors import BadQuery
from spyglass.search.media.paths import inside_any, under_roots
from spyglass.search.catalog.schema import ItemLabel, MediaItem


# The text encoder reads 77 tokens (about 300 characters of English); longer texts are cut there.
# The byte bound keeps tokenising cheap: open_clip's BPE costs the square of a word's length.
MAX_TEXT_BYTES = 1000
MAX_WORD_CHARS = 100
MAX_QUERY_PARTS = 16
MAX_WEIGHT = 1000.0
# A run of letters, or of punctuation, is one word to open_clip's tokenizer.
_LONG_WORD = re.compile(rf"(?:[^\W\d_]{{{MAX_WORD_CHARS + 1},}})|(?:[^\w\s]{{{MAX_WORD_CHARS + 1},}})")


def check_text(text: str) -> None:
    """Refuse a query text that is empty, not valid Unicode, or past the length bounds."""
    if not text.strip():
        raise BadQuery("the query text is empty", "type what you are looking for")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadQuery("the query text is not valid Unicode (it holds a lone surrogate)") from None
    if size > MAX_TEXT_BYTES:
        raise BadQuery(f"the query text is {size:,} bytes; the limit is {MAX_TEXT_BYTES:,}",
                       "the model reads only about the first 300 characters anyway")
    if _LONG_WORD.search(text):
        raise BadQuery(f"the query text has a word of more than {MAX_WORD_CHARS} characters",
                       "split it with spaces")


@dataclass(frozen=True)
class QueryPart:
    """One thing to search for, with a weight; a negative weight pushes results away from it."""

    text: str | None = None
    image: bytes | None = None
    item_id: int | None = None
    embedding: Sequence[float] | None = None
    weight: float = 1.0
    crop: tuple[float, float, float, float] | None = None  # a box of the item_id's image (search/crops.py)

    def __post_init__(self) -> None:
        given = [v for v in (self.text, self.image, self.item_id, self.embedding) if v is not None]
        if len(given) != 1:
            raise BadQuery("each query part needs exactly one of text, image, image_id or embedding")
        if self.crop is not None and self.item_id is None:
            raise BadQuery("crop goes with image_id: it is a box of that indexed image")
        if self.text is not None:
            check_text(self.text)
        if not -MAX_WEIGHT <= self.weight <= MAX_WEIGHT:  # NaN fails this too
            raise BadQuery(f"a query part's weight must be between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}")


@dataclass(frozen=True)
class Filters:
    """Metadata conditions every result must meet."""

    folder: str | None = None  # relative to a media root, or an absolute folder
    kind: str | None = None
    label: str | None = None  # the item's best zero-shot label (SPYGLASS_LABELS)
    mtime_from_ns: int | None = None
    mtime_to_ns: int | None = None
    # Taken between these wall-clock times, inclusive (MediaItem.taken_at: EXIF, else the mtime).
    taken_from: datetime | None = None
    taken_to: datetime | None = None
    camera: str | None = None  # a part of the camera's name, any case: "iphone", "EOS R5"
    place: str | None = None  # a part of the place's name: "Paris", "Japan"
    near: tuple[float, float, float] | None = None  # (latitude, longitude, km)
    # The folders the asking principal may see (search.accounts.access); None: every item.
    within: tuple[str, ...] | None = None

    def active(self) -> bool:
        """Whether any condition is set."""
        return any(v is not None for v in (self.folder, self.kind, self.label, self.mtime_from_ns, self.mtime_to_ns,
                                           self.taken_from, self.taken_to, self.camera, self.place, self.near,
                                           self.within))

    def conditions(self, roots: Sequence[str]) -> list:
        """SQLAlchemy conditions on MediaItem."""
        conditions = []
        if self.folder:
            conditions.append(inside_any(MediaItem.path, under_roots([self.folder], roots)))
        if self.within is not None:
            conditions.append(inside_any(MediaItem.path, under_roots(self.within, roots)))
        if self.kind:
            conditions.append(MediaItem.kind == self.kind)
        if self.label:
            conditions.append(exists().where(ItemLabel.item_id == MediaItem.id, ItemLabel.rank == 1,
                                             ItemLabel.label == self.label))
        if self.mtime_from_ns is not None:
            conditions.append(MediaItem.mtime_ns >= self.mtime_from_ns)
        if self.mtime_to_ns is not None:
            conditions.append(MediaItem.mtime_ns <= self.mtime_to_ns)
        if self.taken_from is not None:
            conditions.append(MediaItem.taken_at >= self.taken_from)
        if self.taken_to is not None:
            conditions.append(MediaItem.taken_at <= self.taken_to)
        if self.camera:
            conditions.append(_contains(MediaItem.camera, self.camera))
        if self.place:
            conditions.append(_contains(MediaItem.place, self.place))
        if self.near is not None:
            conditions.extend(near_conditions(*self.near))
        return conditions


# Kilometres per degree of latitude (and of longitude at the equator) on the mean-radius sphere.
KM_PER_DEGREE = 111.195


def near_conditions(latitude: float, longitude: float, km: float) -> list:
    """Within km of a point: a latitude band (cheap), then the equirectangular distance, which is
    within 1% of the great circle up to a few hundred km away from the poles; no wrap at 180 degrees."""
    band = km / KM_PER_DEGREE
    scale = max(math.cos(math.radians(latitude)), 0.01)
    dy = (MediaItem.latitude - latitude) * KM_PER_DEGREE
    dx = (MediaItem.longitude - longitude) * (KM_PER_DEGREE * scale)
    return [MediaItem.latitude.is_not(None), MediaItem.latitude.between(latitude - band, latitude + band),
            dy * dy + dx * dx <= km * km]


def _contains(column, text: str):
    """Case-insensitive 'holds this text' (SQLite lowers ASCII only, so the text as typed matches too)."""
    return or_(column.contains(text, autoescape=True), func.lower(column).contains(text.lower(), autoescape=True))
