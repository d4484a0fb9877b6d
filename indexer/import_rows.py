"""The rules for one row of imported metadata: its text decoded, its url and path checked.

Everything in an embeddings folder is someone else's data, so every field is checked here
before it can reach the catalog:

- Text is UTF-8. A caption that is not (a CSV saved by a spreadsheet, say) is read as
  Windows-1252, the Latin-1 superset such exports use; a url or image_path that is not
  valid UTF-8 refuses its row.
- A caption is cut at MAX_CAPTION_CHARS characters; NUL and the other C0 control characters
  but tab, newline and carriage return become U+FFFD (PostgreSQL stores no NUL, and no page needs them).
- A url is an absolute http(s) URL with a host, at most MAX_URL_CHARS long, with no space or
  control character: anything else (javascript:, file:, a bare path) refuses its row.
- An image_path is made absolute against the source folder; whether it may be read is the
  job's to decide, under the media-file rules.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_CAPTION_CHARS = 4096
MAX_URL_CHARS = 4096
# Bytes of a caption the reader passes on: enough for MAX_CAPTION_CHARS + 1 characters of UTF-8.
CAPTION_READ_BYTES = 4 * (MAX_CAPTION_CHARS + 1)
MAX_PATH_CHARS = 4096  # Linux's PATH_MAX
_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f]")


class RowRefused(Exception):
    """This row cannot be imported; the message says why, for the user."""


@dataclass
class RowText:
    """A row's fields as text, and what had to be done to them."""

    image_path: str | None
    url: str | None
    caption: str | None
    recoded: bool = False  # the caption was not UTF-8 and was read as Windows-1252
    shortened: bool = False  # the caption was cut at MAX_CAPTION_CHARS


def row_text(image_path, url, caption, base: str) -> RowText:
    """The row's fields checked and made text; RowRefused when the row cannot be imported."""
    caption_text, recoded = _caption(caption)
    shortened = caption_text is not None and len(caption_text) > MAX_CAPTION_CHARS
    if shortened:
        caption_text = caption_text[:MAX_CAPTION_CHARS]
    return RowText(_local_path(image_path, base), _url(url), caption_text, recoded, shortened)


def _as_text(value, field: str) -> str | None:
    """str as it is; bytes as UTF-8 (RowRefused when they are not)."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise RowRefused(f"its {field} is not valid UTF-8") from None
    if isinstance(value, str):
        return value
    raise RowRefused(f"its {field} is a {type(value).__name__}, not text")


def _caption(value) -> tuple[str | None, bool]:
    recoded = False
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            value = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data" and len(raw) >= CAPTION_READ_BYTES:
                value = raw[:exc.start].decode("utf-8")  # the reader cut a long caption inside a character
            else:
                value, recoded = raw.decode("cp1252", errors="replace"), True
    elif value is not None and not isinstance(value, str):
        raise RowRefused(f"its caption is a {type(value).__name__}, not text")
    if value is None:
        return None, False
    return _CONTROLS.sub("\ufffd", value), recoded


def _url(value) -> str | None:
    text = _as_text(value, "url")
    if text is None or not text.strip():
        return None
    text = text.strip()
    if len(text) > MAX_URL_CHARS:
        raise RowRefused(f"its url is longer than the {MAX_URL_CHARS:,} characters allowed")
    if _URL_FORBIDDEN.search(text):
        raise RowRefused("its url holds a space or a control character (percent-encode them)")
    try:
        parts = urlsplit(text)
    except ValueError:
        raise RowRefused("its url is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise RowRefused("its url is not an absolute http:// or https:// URL")
    return text


def _local_path(value, base: str) -> str | None:
    text = _as_text(value, "image_path")
    if text is None or not text.strip():
        return None
    if "\x00" in text:
        raise RowRefused("its image_path holds a NUL character")
    if len(text) > MAX_PATH_CHARS:
        raise RowRefused(f"its image_path is longer than the {MAX_PATH_CHARS:,} characters a path can have")
    return os.path.abspath(os.path.join(base, os.path.expanduser(text)))
