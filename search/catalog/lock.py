"""One indexer at a time, with a lock the operating system or the database drops when its holder dies.

SQLite: flock on a file beside the database. PostgreSQL: a session advisory lock. Neither
outlives a killed process, so a crashed job never leaves the lock stuck. The query side reads
it too: a run the catalog calls "running" while nobody holds the lock was killed.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, text

from spyglass.search.errors import SpyglassError

ADVISORY_KEY = 0x5350_5947  # "SPYG"


class IndexerBusy(SpyglassError):
    """Another indexer holds the lock."""


@contextmanager
def indexer_lock(engine: Engine, home: Path):
    """Hold the indexer lock for the duration of the block, or raise IndexerBusy at once."""
    info_file = home / "indexer.lock"
    home.mkdir(parents=True, exist_ok=True)
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
            connection.commit()
            if not got:
                raise _busy(info_file)
            try:
                info_file.write_text(json.dumps(holder))
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_KEY})
                connection.commit()
        return
    handle = open(_lock_path(engine, home), "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(info_file) from None
        info_file.write_text(json.dumps(holder))
        yield
    finally:
        handle.close()  # closing drops the flock


def indexer_running(engine: Engine, home: Path) -> bool:
    """Whether some process holds the indexer lock now (it is not taken, only looked at)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            # A bigint advisory key shows in pg_locks as classid (high half) and objid (low half).
            return bool(connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid = :high AND objid = :low AND objsubid = 1 "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"high": ADVISORY_KEY >> 32, "low": ADVISORY_KEY & 0xFFFFFFFF}).scalar())
    path = _lock_path(engine, home)
    if not path.exists():
        return False
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False  # closing drops the shared lock just taken


def _lock_path(engine: Engine, home: Path) -> Path:
    database = engine.url.database or ""
    return Path(database + ".lock") if database and database != ":memory:" else home / "indexer.lock"


def _busy(info_file: Path) -> IndexerBusy:
    try:
        holder = json.loads(info_file.read_text())
        who = f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
    except (OSError, ValueError, KeyError):
        who = "another process"
    return IndexerBusy(f"another indexer is running ({who})",
                       "wait for it to finish, or stop it; a killed indexer releases the lock by itself")
