"""Alembic, driven from the settings' database URL instead of alembic.ini."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect

from spyglass.search.errors import DatabaseNotReady, EmptyDatabase


def migrations_dir() -> Path:
    """The migrations/ folder, wherever the package is installed."""
    import spyglass.migrations as migrations

    return Path(migrations.__file__).parent


def alembic_config(engine: Engine):
    """An Alembic Config whose env.py runs on this engine."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    """The newest migration in the code."""
    from alembic.script import ScriptDirectory

    config = alembic_config(None)  # type: ignore[arg-type]
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for an empty database."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Apply pending migrations; returns (revision before, revision after)."""
    from alembic import command

    before = current_revision(engine)
    command.upgrade(alembic_config(engine), "head")
    return before, head_revision()


def require_current(engine: Engine) -> None:
    """Fail with the fix when the schema is missing or behind the code."""
    current = current_revision(engine)
    if current == head_revision():
        return
    if current is None and not inspect(engine).get_table_names():
        raise EmptyDatabase("the catalog database is empty: nothing has been indexed yet",
                               "run `spyglass index <folder>` (or `spyglass db upgrade`)")
    raise DatabaseNotReady(f"the catalog database is at migration {current}, the code needs "
                           f"{head_revision()}", "run `spyglass db upgrade`")
