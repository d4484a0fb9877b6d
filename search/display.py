"""Text from outside (file names, user input) made safe to print on one line of a log or terminal."""

from __future__ import annotations

import re

# C0 and C1 control characters (newlines, ANSI escapes, ...), DEL, and the Unicode line and
# paragraph separators and bidirectional overrides that can make a line read as another.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str, limit: int | None = None) -> str:
    """The text with every unsafe character written as an escape (\\n, \\x1b, \\u202e)."""
    escaped = _UNSAFE.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)
    if limit is not None and len(escaped) > limit:
        return escaped[:limit] + "…"
    return escaped
