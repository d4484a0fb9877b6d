"""`spyglass check` for the keyword index: SQLite's FTS5 tables against item_texts; --repair rebuilds them.

PostgreSQL keeps its GIN indexes in step itself (and `REINDEX` is its own repair), so only the
rows are checked there.
"""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError

_REBUILD = [
    "INSERT INTO item_texts_fts(item_texts_fts) VALUES ('rebuild')",
    # The trigram table holds names only: emptied, then filled with them (a 'rebuild' would take every text).
    "INSERT INTO item_names_trigram(item_names_trigram) VALUES ('delete-all')",
    "INSERT INTO item_names_trigram(rowid, terms) SELECT id, terms FROM item_texts WHERE field = 'name'",
]


def keyword_problem(engine: Engine) -> str | None:
    """What is wrong with the keyword index, or None."""
    with engine.connect() as connection:
        orphans = connection.execute(text(
            "SELECT count(*) FROM item_texts WHERE item_id NOT IN (SELECT id FROM media_items)")).scalar()
        if orphans:
            return f"{orphans:,} texts of items that no longer exist"
        if engine.dialect.name != "sqlite":
            return None
        try:
            # rank 1: the full-text index must hold exactly what item_texts holds.
            connection.execute(text("INSERT INTO item_texts_fts(item_texts_fts, rank) VALUES ('integrity-check', 1)"))
            connection.execute(text("INSERT INTO item_names_trigram(item_names_trigram) VALUES ('integrity-check')"))
            names = connection.execute(text("SELECT count(*) FROM item_texts WHERE field = 'name'")).scalar()
            indexed = connection.execute(text("SELECT count(*) FROM item_names_trigram_docsize")).scalar()
        except DatabaseError as exc:
            return f"the full-text index does not match the texts ({str(exc.orig).splitlines()[0]})"
        finally:
            connection.rollback()
    if names != indexed:
        return f"the name index holds {indexed:,} names of {names:,}"
    return None


def repair_keyword_index(engine: Engine) -> str:
    """Rebuild the keyword index from item_texts; returns what was done."""
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM item_texts WHERE item_id NOT IN (SELECT id FROM media_items)"))
        if engine.dialect.name == "sqlite":
            for statement in _REBUILD:
                connection.execute(text(statement))
        else:
            connection.execute(text("REINDEX TABLE item_texts"))
    return "rebuilt the keyword index from the stored texts"
