"""The keyword index: items whose texts hold a query's words, best first, on SQLite FTS5 or PostgreSQL.

The query reaches the database only as folded terms (search/words/terms.py), each quoted, so
nothing a user types is FTS or tsquery syntax. All the words must appear in one text; when no
text holds them all, a text holding at least half of them will do, ranked by how many it holds
(unless the words are so common that ranking them would cost more than it tells).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.catalog.queries import ID_CHUNK
from spyglass.search.catalog.schema import ItemText

from .terms import WordQuery

# How much a match in each field counts, against the database's score of the text. A name or a
# caption says what the item is about; text read from a photo or heard in a video may be incidental.
FIELD_WEIGHTS = {"name": 1.5, "caption": 1.5, "keywords": 1.3, "place": 1.3, "subtitle": 1.0, "speech": 1.0,
                 "ocr": 1.0, "camera": 1.0}
# Matching texts fetched per item wanted: one item can hold many (each line read, each spoken stretch).
ROWS_PER_ITEM = 4
# When no text holds every word of a query, texts holding at least this share of them match,
# ranked by that share first; unless more than FALLBACK_TEXTS texts hold any of the words: then
# they are common words, ranking them all would cost more than the whole visual search at a
# million items, and a match on some of them says little (the visual half of a hybrid stands).
MIN_COVERAGE = 0.5
FALLBACK_TEXTS = 10_000
# A name matched only as a substring ranks below every word match (IMG_204 inside IMG_2041.jpg).
SUBSTRING_SCORE = 0.0
_NOT_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class WordHit:
    """An item whose texts match: its score (higher is better) and its matching texts, best first."""

    item_id: int
    score: float
    text_ids: tuple[int, ...]


@dataclass(frozen=True)
class TextRow:
    """One matching text, for the `matches` of a result."""

    id: int
    item_id: int
    field: str
    text: str
    start_s: float | None
    end_s: float | None


class KeywordIndex:
    """Searches item_texts through the database's full-text index."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session]):
        self.sessions = sessions
        self.sqlite = engine.dialect.name == "sqlite"

    def search(self, query: WordQuery, limit: int) -> list[WordHit]:
        """Up to `limit` items, best first."""
        if not query or limit <= 0:
            return []
        rows_wanted = limit * ROWS_PER_ITEM
        with self.sessions() as session:
            rows = self._matching(session, query, rows_wanted, every=True)
            if not rows and len(query.phrases) > 1 and self._at_most(session, query, FALLBACK_TEXTS):
                rows = _covering(self._matching(session, query, rows_wanted * 4, every=False, terms=True), query)
            substring = _substring(query.text)
            if substring:
                rows += [(i, item, field, SUBSTRING_SCORE) for i, item, field in
                         self._names_containing(session, substring, rows_wanted)]
        return _by_item(rows)[:limit]

    def _matching(self, session: Session, query: WordQuery, rows: int, every: bool, terms: bool = False) -> list[tuple]:
        """(text id, item id, field, score[, terms]) of the texts that hold all (or any) of the words."""
        extra = ", t.terms" if terms else ""
        if self.sqlite:
            statement = text(
                # `rank` is bm25 computed once per row (naming bm25() twice computes it twice).
                f"SELECT t.id, t.item_id, t.field, -item_texts_fts.rank{extra} FROM item_texts_fts "
                "JOIN item_texts t ON t.id = item_texts_fts.rowid WHERE item_texts_fts MATCH :expression "
                "ORDER BY item_texts_fts.rank LIMIT :rows")
            expression = _fts5_expression(query, every)
        else:
            statement = text(
                f"SELECT t.id, t.item_id, t.field, ts_rank(to_tsvector('simple', t.terms), q) AS score{extra} "
                "FROM item_texts t, to_tsquery('simple', :expression) AS q "
                "WHERE to_tsvector('simple', t.terms) @@ q ORDER BY score DESC, t.id LIMIT :rows")
            expression = _tsquery_expression(query, every)
        return [tuple(row) for row in session.execute(statement, {"expression": expression, "rows": rows})]

    def _at_most(self, session: Session, query: WordQuery, limit: int) -> bool:
        """Whether at most `limit` texts hold any of the words: counted in index order, unranked,
        stopping at limit + 1, so it costs little however common the words are."""
        if self.sqlite:
            statement = text("SELECT count(*) FROM (SELECT rowid FROM item_texts_fts WHERE item_texts_fts "
                             "MATCH :expression LIMIT :limit)")
            expression = _fts5_expression(query, every=False)
        else:
            statement = text("SELECT count(*) FROM (SELECT 1 FROM item_texts WHERE to_tsvector('simple', terms) "
                             "@@ to_tsquery('simple', :expression) LIMIT :limit) AS found")
            expression = _tsquery_expression(query, every=False)
        return session.execute(statement, {"expression": expression, "limit": limit + 1}).scalar() <= limit

    def _names_containing(self, session: Session, substring: str, rows: int) -> list[tuple]:
        if self.sqlite:
            statement = text(
                "SELECT t.id, t.item_id, t.field FROM item_names_trigram JOIN item_texts t "
                "ON t.id = item_names_trigram.rowid WHERE item_names_trigram.terms LIKE :pattern LIMIT :rows")
        else:
            statement = text("SELECT id, item_id, field FROM item_texts WHERE field = 'name' "
                             "AND terms LIKE :pattern ORDER BY id LIMIT :rows")
        return [tuple(row) for row in session.execute(statement, {"pattern": f"%{substring}%", "rows": rows})]

    def texts(self, ids: Sequence[int]) -> dict[int, TextRow]:
        """These texts by id."""
        found: dict[int, TextRow] = {}
        with self.sessions() as session:
            for start in range(0, len(ids), ID_CHUNK):
                query = select(ItemText.id, ItemText.item_id, ItemText.field, ItemText.text, ItemText.start_s,
                               ItemText.end_s).where(ItemText.id.in_(ids[start:start + ID_CHUNK]))
                found.update((row[0], TextRow(*row)) for row in session.execute(query))
        return found


def _fts5_expression(query: WordQuery, every: bool) -> str:
    """'"北京 京会 会议" "img" "204"*': each phrase quoted (terms hold letters and digits only)."""
    parts = [f'"{" ".join(phrase)}"' for phrase in query.phrases]
    if query.prefix is not None:
        parts[-1] += "*"
    return (" AND " if every else " OR ").join(parts)


def _tsquery_expression(query: WordQuery, every: bool) -> str:
    """"'北京' <-> '京会' & 'img' & '204':*" for to_tsquery."""
    parts = ["(" + " <-> ".join(f"'{term}'" for term in phrase) + ")" for phrase in query.phrases]
    if query.prefix is not None:
        parts[-1] = f"'{query.prefix}':*"
    return (" & " if every else " | ").join(parts)


def _substring(folded: str) -> str | None:
    """The query as a name's terms would hold it ('img_204' -> 'img 204'), when it is 3+ characters."""
    spaced = _NOT_WORD.sub(" ", folded).strip()
    return spaced if len(spaced) >= 3 else None


def _covering(rows: list[tuple], query: WordQuery) -> list[tuple]:
    """Texts that hold at least MIN_COVERAGE of the query's words (phrases), scored by how many
    first: a text that shares one common word with a long query is not a match."""
    wanted = len(query.phrases)
    kept = []
    for text_id, item_id, field, score, terms in rows:
        held = f" {terms} "
        found = sum(1 for i, phrase in enumerate(query.phrases)
                    if f" {' '.join(phrase)} " in held
                    or (i == wanted - 1 and query.prefix is not None and f" {query.prefix}" in held))
        if found / wanted >= MIN_COVERAGE:
            kept.append((text_id, item_id, field, found / wanted * (1.0 + float(score))))
    return sorted(kept, key=lambda row: -row[3])


def _by_item(rows: list[tuple]) -> list[WordHit]:
    """Rows (text id, item id, field, score) as items, each scored by its best weighted text."""
    best: dict[int, float] = {}
    texts: dict[int, list[tuple[float, int]]] = {}
    for text_id, item_id, field, score in rows:
        weighted = float(score) * FIELD_WEIGHTS.get(field, 1.0)
        best[item_id] = max(best.get(item_id, weighted), weighted)
        texts.setdefault(item_id, []).append((weighted, text_id))
    order = sorted(best, key=lambda item: (-best[item], item))
    return [WordHit(item, best[item], tuple(dict.fromkeys(i for _, i in sorted(texts[item], key=lambda t: -t[0]))))
            for item in order]
