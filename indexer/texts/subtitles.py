"""SubRip (.srt) and WebVTT (.vtt) cues: start, end and text, from bytes anyone may have written."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TIME = r"(?:(\d{1,3}):)?(\d{1,2}):(\d{2})[,.](\d{1,3})"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_TAG = re.compile(r"<[^>]{0,200}>|\{\\[^}]{0,200}\}")  # <i>, <c.yellow>, {\an8}
# Bounds on what one file may make: cues, and characters of one cue.
MAX_CUES = 20_000
MAX_CUE_CHARS = 1_000


@dataclass(frozen=True)
class Cue:
    """One timed subtitle."""

    start_s: float
    end_s: float
    text: str


def _seconds(hours: str | None, minutes: str, seconds: str, fraction: str) -> float:
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + int(fraction.ljust(3, "0")) / 1000


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM dropped), else Windows-1252: the rule imports use; NUL becomes U+FFFD."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    return text.replace("\x00", "\ufffd")


def parse_cues(data: bytes) -> list[Cue]:
    """The cues of an .srt or .vtt file, in file order; lines that are not cues are passed over."""
    cues: list[Cue] = []
    lines = decode_text(data).splitlines()
    position = 0
    while position < len(lines) and len(cues) < MAX_CUES:
        timing = _TIMING.match(lines[position])
        position += 1
        if timing is None:
            continue
        start, end = _seconds(*timing.groups()[:4]), _seconds(*timing.groups()[4:])
        text_lines = []
        while position < len(lines) and lines[position].strip():
            text_lines.append(_TAG.sub("", lines[position]).strip())
            position += 1
        text = " ".join(line for line in text_lines if line)[:MAX_CUE_CHARS]
        if text and end >= start:
            cues.append(Cue(start, end, text))
    return cues
