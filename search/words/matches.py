"""The `matches` of a result: which of an item's texts hold the query's words, as escaped snippets."""

from __future__ import annotations

from dataclasses import dataclass

from .keyword_index import TextRow
from .snippets import snippet
from .terms import WordQuery

# A result shows at most this many of its matching texts.
MAX_MATCHES = 3


@dataclass(frozen=True)
class Match:
    """One matching text: its field, a snippet (HTML-escaped, matches in <mark>), and its times if it has them."""

    field: str
    snippet: str
    start_s: float | None = None
    end_s: float | None = None

    def as_dict(self) -> dict:
        """JSON-ready form; times only for a timed text (speech, a subtitle, a video frame's text)."""
        found: dict = {"field": self.field, "snippet": self.snippet}
        if self.start_s is not None:
            found.update(start_s=round(self.start_s, 3), end_s=round(self.end_s if self.end_s is not None
                                                                    else self.start_s, 3))
        return found


def matches_of(text_ids: tuple[int, ...], texts: dict[int, TextRow], query: WordQuery) -> tuple[Match, ...]:
    """An item's best matching texts (best first) as matches."""
    found = []
    for text_id in text_ids[:MAX_MATCHES]:
        row = texts.get(text_id)
        if row is not None:  # a text deleted since the search
            found.append(Match(row.field, snippet(row.text, query), row.start_s, row.end_s))
    return tuple(found)
