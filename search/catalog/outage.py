"""One rule for failures of the catalog database, read by the web (503 or 500) and the CLI (its one line)."""

from __future__ import annotations

import os

from spyglass.search.display import printable

# SQLite's words for a catalog that is busy or out of reach (its other OperationalErrors, such
# as "no such column", are bugs or a schema out of step, and stay faults).
_SQLITE_UNAVAILABLE = ("locked", "busy", "unable to open", "disk i/o", "readonly", "database or disk is full")


def database_unavailable(exc: Exception) -> bool:
    """Whether exc says the catalog database cannot be reached now (down, restarting, locked, full)."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if isinstance(exc, (DisconnectionError, PoolTimeout)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if isinstance(exc, OperationalError):
        orig = exc.orig
        if type(orig).__module__.startswith("psycopg"):
            return True  # psycopg raises OperationalError for connection failures only
        return any(word in str(orig).lower() for word in _SQLITE_UNAVAILABLE)
    return False


def database_failure(exc: Exception, database_url: str | None = None) -> str | None:
    """One line for a failure of the catalog database, or None when exc is not one.

    A full disk says so; a broken constraint is a fault of Spyglass's, reported as one; only
    the rest (the database out of reach, or refusing) is blamed on SPYGLASS_DATABASE_URL.
    """
    from sqlalchemy.exc import DBAPIError, IntegrityError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    if not isinstance(exc, (DBAPIError, PoolTimeout)):
        return None
    orig = getattr(exc, "orig", None)
    reason = str(orig or exc).strip().splitlines()[0] if str(orig or exc).strip() else type(exc).__name__
    where = sqlite_file(database_url)
    if disk_full(orig, where):
        return (f"the disk is full writing the catalog database{f' {printable(where)}' if where else ''}: "
                f"{printable(reason, 200)}; everything published before this is kept (free some space and "
                "run again)")
    if isinstance(exc, IntegrityError):
        return (f"the catalog database refused a write: {printable(reason, 300)} (a fault of Spyglass's, "
                "not of your settings: please report it; nothing of this write was kept)")
    return (f"the catalog database failed: {printable(reason, 300)} (check SPYGLASS_DATABASE_URL, "
            "and that the server is running)")


def disk_full(orig, sqlite_path: str | None) -> bool:
    """SQLite's "database or disk is full", PostgreSQL's disk_full (53100) and friends, or SQLite's
    "disk I/O error" on a disk with no room left (what it says when the journal cannot grow)."""
    text = str(orig or "").lower()
    if ("database or disk is full" in text or "no space left on device" in text
            or getattr(orig, "sqlstate", None) in ("53100", "53400")):
        return True
    if "disk i/o error" in text and sqlite_path:
        try:
            disk = os.statvfs(os.path.dirname(os.path.abspath(sqlite_path)))
        except OSError:
            return False
        return disk.f_bavail * disk.f_frsize < 1024 * 1024
    return False


def sqlite_file(database_url: str | None) -> str | None:
    """The file of a sqlite:/// URL, else None."""
    if database_url and database_url.startswith("sqlite:///"):
        return database_url[len("sqlite:///"):]
    return None
