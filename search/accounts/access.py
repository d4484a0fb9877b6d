"""Who is asking, and the one rule of which items they may see.

An admin sees every item. Anyone else sees the items inside the folders granted to them, read
as the folder filter reads a folder: an absolute folder as it is, a relative one under every
media root, compared exactly (search.media.paths). No grant, nothing seen.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from spyglass.search.errors import BadQuery
from spyglass.search.media.paths import is_inside, under_roots

SCOPES = ("search", "admin")


@dataclass(frozen=True)
class Principal:
    """A person (by their page session or one of their tokens), or nobody in particular when
    SPYGLASS_AUTH=none, who sees everything."""

    name: str
    user_id: int | None = None
    is_admin: bool = False
    scope: str = "search"  # what the credential may do: a search token never reaches admin routes
    folders: tuple[str, ...] = ()
    token_id: int | None = None
    session: bool = False

    @property
    def sees_all(self) -> bool:
        """Whether no folder rule applies."""
        return self.is_admin

    @property
    def within(self) -> tuple[str, ...] | None:
        """The folders the principal's results must lie in; None for all."""
        return None if self.sees_all else self.folders

    @property
    def may_admin(self) -> bool:
        """Whether admin routes (metrics, the whole status) answer this credential."""
        return self.is_admin and self.scope == "admin"

    @property
    def key(self) -> str:
        """What fair-use limits count requests by."""
        return f"user:{self.user_id}" if self.user_id is not None else self.name


def granted_folder(folder: str) -> str:
    """A folder as a grant keeps it: absolute (made so, `~` expanded) or relative without `..`."""
    folder = folder.strip()
    if not folder:
        raise BadQuery("a granted folder cannot be empty")
    if "\x00" in folder:
        raise BadQuery("a granted folder cannot hold a NUL character")
    expanded = os.path.expanduser(folder)
    if os.path.isabs(expanded):
        return os.path.abspath(expanded)
    parts = [p for p in folder.split("/") if p not in ("", ".")]
    if ".." in parts or not parts:
        raise BadQuery(f"a relative granted folder cannot leave its media root: {folder!r}",
                       "name it relative to a media root (family/2024) or give an absolute path")
    return "/".join(parts)


def is_within(path: str, within: tuple[str, ...] | None, roots: Sequence[str]) -> bool:
    """Whether an item at this path lies in the folders `within` (None: everything), as in SQL."""
    return within is None or any(is_inside(path, folder) for folder in under_roots(within, roots))
