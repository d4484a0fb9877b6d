"""Alembic on an empty SQLite file and an empty PostgreSQL database gives exactly the models."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from spyglass.search.db import create_db_engine
from spyglass.search.errors import DatabaseNotReady, EmptyDatabase
from spyglass.search.migrate import current_revision, head_revision, require_current, upgrade
from spyglass.search.schema import Base


def test_upgrade_head_matches_the_models(database_url):
    engine = create_db_engine(database_url)
    assert upgrade(engine) == (None, head_revision())
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True}),
                                Base.metadata)
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
