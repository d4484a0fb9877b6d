"""Alembic on an empty SQLite file and an empty PostgreSQL database gives exactly the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from spyglass.search.catalog.db import create_db_engine
from spyglass.search.errors import DatabaseNotReady, EmptyDatabase
from spyglass.search.catalog.migrate import current_revision, head_revision, require_current, upgrade
from spyglass.search.catalog.schema import Base, made_by_hand


def test_upgrade_head_matches_the_models(database_url):
    engine = create_db_engine(database_url)
    assert upgrade(engine) == (None, head_revision())
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "include_name": lambda name, _type, _parents: not made_by_hand(name)})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []
    assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
    engine.dispose()


def test_upgrade_is_idempotent(database_url):
    engine = create_db_engine(database_url)
    upgrade(engine)
    assert upgrade(engine) == (head_revision(), head_revision())
    require_current(engine)
    engine.dispose()


def test_schema_check_says_what_to_run(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(EmptyDatabase, match="spyglass index"):
        require_current(engine)
    upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'old'")
    with pytest.raises(DatabaseNotReady, match="spyglass db upgrade"):
        require_current(engine)
    assert current_revision(engine) == "old"


def test_sqlite_runs_in_wal_mode(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'c.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_path_columns_compare_bytes_on_postgresql(database_url):
    # "Inside a folder" is a range on these columns; it is exact only under a bytewise collation.
    engine = create_db_engine(database_url)
    upgrade(engine)
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            collations = dict(connection.exec_driver_sql(
                "SELECT table_name, collation_name FROM information_schema.columns "
                "WHERE column_name = 'path' AND table_schema = 'public'").all())
        assert collations == {t: "C" for t in ("media_roots", "media_items", "skipped_files", "staged_vectors")}
    engine.dispose()


def test_0009_turns_caption_bytes_into_text_and_marks_imported_items(tmp_path):
    """An older import stored a CSV's Latin-1 caption as bytes, and every answer naming it failed."""
    from alembic import command
    from sqlalchemy import text

    from spyglass.search.catalog.migrate import alembic_config

    engine = create_db_engine(f"sqlite:///{tmp_path / 'old.db'}", writer=True)
    command.upgrade(alembic_config(engine), "0008")
    with engine.begin() as connection:
        for item_id, path, url, caption in [(1, "/m/a.jpg", None, None),
                                            (2, "https://x.test/b", "https://x.test/b", b"caf\xe9 au lait"),
                                            (3, "/m/c.jpg", None, "c\xe9".encode())]:
            connection.execute(text(
                "INSERT INTO media_items (id, path, size, mtime_ns, content_hash, kind, format, width, height, "
                "indexed_at, url, caption) VALUES (:id, :path, 1, 1, 'h', 'image', 'JPEG', 1, 1, "
                "'2026-01-01 00:00:00', :url, :caption)"), {"id": item_id, "path": path, "url": url, "caption": caption})
        connection.execute(text("INSERT INTO skipped_files (path, size, mtime_ns, reason, seen_at) VALUES "
                                "('/m/big.png', 1, 1, 'image is too large to decode in the memory available', "
                                "'2026-01-01 00:00:00')"))
    upgrade(engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, caption, typeof(caption), origin FROM media_items ORDER BY id")).all()
        assert [tuple(row) for row in rows] == [(1, None, "null", "index"), (2, "café au lait", "text", "import"),
                                               (3, "cé", "text", "import")]
        assert connection.execute(text("SELECT count(*) FROM skipped_files")).scalar() == 0
    engine.dispose()
