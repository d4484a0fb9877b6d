"""Text as the keyword index sees it: one rule for what is stored and what is asked.

Both catalogs index `terms`, a space-separated string this module makes; neither database
tokenizes on its own. That makes SQLite FTS5 and PostgreSQL agree, and it lets Chinese and
Japanese be searched: they are written without spaces, so a run of CJK characters is cut into
overlapping pairs (北京会议 -> 北京 京会 会议), and a query's pairs must appear in a row (a phrase).
A query is only ever turned into these terms, so nothing a user types is FTS syntax.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# Letters and digits; "_" and every other character separate words (IMG_2041 -> img 2041).
WORD = re.compile(r"[^\W_]+")
# Han, kana, and the CJK compatibility block: scripts written without spaces between words.
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]+")
# A longer word is cut: nobody searches for it, and an index entry has limits.
MAX_TERM_CHARS = 64
# A query of more words than this keeps the first ones (each one costs a lookup).
MAX_QUERY_TERMS = 32


def fold(text: str) -> str:
    """Compatibility forms, case and accents folded: 'Ｃafé' -> 'cafe'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def pieces(word: str) -> list[tuple[str, bool]]:
    """A folded word split into its CJK runs and the rest: (piece, is_cjk)."""
    found, at = [], 0
    for run in CJK.finditer(word):
        if run.start() > at:
            found.append((word[at:run.start()], False))
        found.append((run.group(), True))
        at = run.end()
    if at < len(word):
        found.append((word[at:], False))
    return found


def _pairs(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)]


def groups(text: str) -> list[list[str]]:
    """The text's terms in order, grouped: a CJK run's pairs form one group (a phrase), any other word its own."""
    found = []
    for match in WORD.finditer(fold(text)):
        for piece, cjk in pieces(match.group()):
            found.append(_pairs(piece) if cjk else [piece[:MAX_TERM_CHARS]])
    return found


def index_terms(text: str) -> str:
    """What the keyword index stores for a text: its terms, space-separated."""
    return " ".join(term for group in groups(text) for term in group)


@dataclass(frozen=True)
class WordQuery:
    """A user's words as index terms: phrases (CJK pairs, or one word each), the last one a prefix."""

    phrases: tuple[tuple[str, ...], ...]
    text: str  # the query folded, for matching inside file names

    @classmethod
    def parse(cls, text: str) -> "WordQuery":
        """Any text at all: quotes, stars, NEAR(, AND, brackets and NUL are just characters."""
        phrases = tuple(tuple(group) for group in groups(text)[:MAX_QUERY_TERMS])
        return cls(phrases, fold(text).strip())

    def __bool__(self) -> bool:
        return bool(self.phrases)

    @property
    def prefix(self) -> str | None:
        """The last word, matched as a prefix ('img 204' finds img_2041), when it is not CJK and has 2+ characters."""
        last = self.phrases[-1] if self.phrases else ()
        return last[0] if len(last) == 1 and len(last[0]) >= 2 and not CJK.match(last[0]) else None

    def all_terms(self) -> set[str]:
        """Every term, for marking snippets."""
        return {term for phrase in self.phrases for term in phrase}
