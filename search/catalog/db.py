"""Database engines and the schema check; SQLite gets WAL and a busy timeout."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.errors import ConfigError

SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_db_engine(url: str, writer: bool = False) -> Engine:
    """An engine for the catalog URL; a SQLite file's folder is created if missing.

    On SQLite a writer's transactions start with BEGIN IMMEDIATE: they take the write lock up
    front and wait for it (busy timeout), instead of failing when a read turns into a write.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"SPYGLASS_DATABASE_URL={url!r} is not a database URL",
                          "e.g. sqlite:////path/spyglass.db or postgresql://user@host/db") from None
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
    event.listen(engine, "connect", _configure_sqlite)
    begin = "BEGIN IMMEDIATE" if writer else "BEGIN"
    # pysqlite's own transaction handling is switched off in _configure_sqlite; we begin here.
    event.listen(engine, "begin", lambda connection: connection.exec_driver_sql(begin))
    return engine


def _configure_sqlite(dbapi_connection, _record) -> None:
    # WAL lets searches read while an indexer writes; foreign keys are off by default in SQLite.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded rows usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def redacted(url: str) -> str:
    """The URL with any password hidden, for status output."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
