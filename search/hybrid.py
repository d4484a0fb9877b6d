"""Searching words and pixels in one box: the keyword index and the vectors, fused by rank.

A text query is hybrid by default: the visual ranking and the keyword ranking are fused by
reciprocal rank fusion (search/words/fusion.py). `words` ranks by the keyword index alone,
`visual` by the vectors alone; images, items and embeddings are always visual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from spyglass.search.errors import BadQuery
from spyglass.search.live import Snapshot
from spyglass.search.query import Filters, QueryPart
from spyglass.search.words.fusion import reciprocal_rank_fusion
from spyglass.search.words.keyword_index import KeywordIndex, WordHit
from spyglass.search.words.matches import MAX_MATCHES, Match, matches_of
from spyglass.search.words.terms import WordQuery

if TYPE_CHECKING:
    from spyglass.search.engine import SearchEngine, SearchResult

MODES = ("hybrid", "visual", "words")
# Each ranking fused is at least this deep, so an item the other ranking places first still meets
# its rank in this one even when the page is short.
FUSION_DEPTH = 100
# A filtered keyword search widens its matches up to this many items before it settles for fewer.
MAX_WORD_FETCH = 100_000


def resolve_mode(mode: str | None, parts: Sequence[QueryPart]) -> str:
    """The mode a search runs in: hybrid for text alone unless asked otherwise; visual for anything else."""
    if mode is not None and mode not in MODES:
        raise BadQuery(f"mode must be one of {', '.join(MODES)}, not {mode[:40]!r}")
    texts_only = bool(parts) and all(part.text is not None for part in parts)
    if not texts_only:
        if mode == "words":
            raise BadQuery("mode=words needs a text query", "images, items and embeddings are searched visually")
        return "visual"
    return mode or "hybrid"


def word_query(parts: Sequence[QueryPart]) -> WordQuery:
    """The words of the text parts that pull (a negative weight pushes away: its words are not wanted)."""
    return WordQuery.parse(" ".join(part.text for part in parts if part.text is not None and part.weight > 0))


class WordSearch:
    """The keyword half of a search, and its fusion with the visual half."""

    def __init__(self, engine: "SearchEngine"):
        self.engine = engine
        self.keywords = KeywordIndex(engine.db, engine.catalog.sessions)

    def search(self, snapshot: Snapshot, parts: Sequence[QueryPart], mode: str, k: int, offset: int,
               min_score: float | None, filters: Filters | None) -> "SearchResult":
        """A page of hybrid or words-only results."""
        if k <= 0 or offset < 0:
            raise BadQuery(f"k must be positive and offset not negative (k={k}, offset={offset})")
        wanted = offset + k + 1
        depth = max(wanted, FUSION_DEPTH)
        query = word_query(parts)
        words = self._words(query, depth, filters)
        if mode == "words":
            ranked, vector = [(w.item_id, w.score) for w in words], None
        else:
            vector = self.engine.embed(parts, snapshot)
            visual = self.engine.ranked(snapshot, vector, depth, min_score, filters)
            ranked = reciprocal_rank_fusion([[i for i, _ in visual], [w.item_id for w in words]])
        on_page = {item_id for item_id, _ in ranked[offset:offset + k]}
        return self.engine.page(snapshot, ranked, k, offset, vector,
                                self._matches([w for w in words if w.item_id in on_page], query))

    def _words(self, query: WordQuery, depth: int, filters: Filters | None) -> list[WordHit]:
        """The best `depth` keyword matches that meet the filters: the matches widen until enough of
        them do, so someone who sees 1 % of the library gets their own best matches, not 1 % of everyone's."""
        if filters is None or not filters.active():
            return self.keywords.search(query, depth)
        conditions = filters.conditions(self.engine.catalog.root_paths())
        fetch = depth
        while True:
            found = self.keywords.search(query, fetch)
            if not found:
                return found
            meeting = self.engine.catalog.ids_meeting([w.item_id for w in found], conditions)
            kept = [w for w in found if w.item_id in meeting]
            if len(kept) >= depth or len(found) < fetch or fetch >= MAX_WORD_FETCH:
                return kept[:depth]
            fetch = min(MAX_WORD_FETCH, fetch * 8)

    def _matches(self, words: list[WordHit], query: WordQuery) -> dict[int, tuple[Match, ...]]:
        """Snippets of these items' matching texts."""
        texts = self.keywords.texts([i for w in words for i in w.text_ids[:MAX_MATCHES]])
        return {w.item_id: matches_of(w.text_ids, texts, query) for w in words}
