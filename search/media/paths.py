"""Path rules: which paths lie inside a folder, in Python and as SQL that is case-sensitive and uses an index."""

from __future__ import annotations

import os
from typing import Sequence

from sqlalchemy import and_, false, or_

# The character after "/" in code-point (and UTF-8 byte) order: every path inside folder F sorts
# at or after "F/" and before "F0", and nothing else does.
_AFTER_SLASH = chr(ord("/") + 1)


def folder_prefix(folder: str) -> str:
    """'/m/photos' and '/m/photos/' both give '/m/photos/'."""
    return folder.rstrip("/") + "/"


def is_inside(path: str, folder: str) -> bool:
    """Whether path lies strictly inside folder, comparing exactly (case matters)."""
    return path.startswith(folder_prefix(folder))


def inside(column, folder: str):
    """SQL: the column holds a path strictly inside folder.

    A range, not LIKE: LIKE ignores ASCII case on SQLite (so /m/photos would match /m/Photos)
    and cannot use the path index on PostgreSQL. The range compares bytes on both, because the
    path columns use SQLite's default BINARY collation and PostgreSQL's "C" collation.
    """
    prefix = folder_prefix(folder)
    return and_(column >= prefix, column < prefix[:-1] + _AFTER_SLASH)


def inside_any(column, folders: Sequence[str]):
    """SQL: the column holds a path inside one of these folders (none: nothing does)."""
    return or_(false(), *[inside(column, folder) for folder in folders])


def under_roots(folders: Sequence[str], roots: Sequence[str]) -> list[str]:
    """Folders as absolute paths, as the folder filter and folder grants read them: an absolute one
    as it is, a relative one under every media root."""
    found = []
    for folder in folders:
        if os.path.isabs(folder):
            found.append(folder.rstrip("/") or "/")
        else:
            found += [f"{root.rstrip('/')}/{folder.strip('/')}" for root in roots]
    return found
