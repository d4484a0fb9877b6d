"""What every writing run does around its work: the lock, migrations, its row in index_runs, its roots."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.catalog.lock import indexer_lock
from spyglass.search.catalog.migrate import upgrade
from spyglass.search.catalog.schema import IndexRun, MediaRoot, utcnow
from spyglass.search.display import printable
from spyglass.search.errors import ConfigError, RunInterrupted
from spyglass.search.media.files import MediaRoots
from spyglass.search.settings import Settings

Echo = Callable[[str], None]


@contextmanager
def locked(db: Engine, sessions: sessionmaker[Session], settings: Settings, echo: Echo) -> Iterator[None]:
    """Hold the indexer lock, with the catalog migrated and earlier killed runs marked, for the block."""
    # The lock first: migrations, like everything else that writes, run one indexer at a time.
    with indexer_lock(db, settings.home):
        before, after = upgrade(db)
        if before != after:
            echo(f"Catalog database migrated from {before or 'empty'} to {after}.")
        interrupted = mark_interrupted_runs(sessions)
        if interrupted:
            echo(f"{interrupted} earlier run(s) had been killed before they finished; "
                 "this run carries on from what they staged.")
        yield


def mark_interrupted_runs(sessions: sessionmaker[Session]) -> int:
    """Runs still marked running when the lock is free were killed: say so. Call under the lock."""
    with sessions.begin() as session:
        return session.execute(update(IndexRun).where(IndexRun.status == "running").values(
            status="interrupted", error="killed before it finished")).rowcount


@dataclass(frozen=True)
class RunStart:
    """A started run: its row, the ids of its roots, and the media rules over every recorded root."""

    run_id: int
    root_ids: dict[str, int]
    media: MediaRoots


def start_run(sessions: sessionmaker[Session], roots: list[str], settings: Settings) -> RunStart:
    """Record the roots (new ones get rows) and a running run."""
    with sessions.begin() as session:
        root_ids = {}
        for root in roots:
            row = session.scalar(select(MediaRoot).where(MediaRoot.path == root))
            if row is None:
                row = MediaRoot(path=root)
                session.add(row)
                session.flush()
            root_ids[root] = row.id
        run = IndexRun(roots=json.dumps(roots))
        session.add(run)
        session.flush()
        # Links may point into any recorded media folder, not only the ones of this run.
        media = MediaRoots.of(session.scalars(select(MediaRoot.path)), settings)
        return RunStart(run.id, root_ids, media)


def finish_run(sessions: sessionmaker[Session], run_id: int, roots: list[str], counts: tuple[int, int, int, int],
               status: str, error: str | None = None) -> None:
    """Close the run's row with its (added, updated, removed, skipped) counts; a done run stamps its roots."""
    with sessions.begin() as session:
        run = session.get(IndexRun, run_id)
        run.status, run.error, run.finished_at = status, error, utcnow()
        run.added, run.updated, run.removed, run.skipped = counts
        if status == "done":
            for root in session.scalars(select(MediaRoot).where(MediaRoot.path.in_(roots))):
                root.last_indexed_at = run.finished_at


def present_recorded_roots(sessions: sessionmaker[Session], settings: Settings, drop_missing: bool,
                           echo: Echo) -> list[str]:
    """Recorded roots and SPYGLASS_MEDIA; a missing one is skipped and its items kept."""
    with sessions() as session:
        recorded = list(session.scalars(select(MediaRoot.path).order_by(MediaRoot.path)))
    wanted = dict.fromkeys(recorded + [os.path.abspath(os.path.expanduser(r)) for r in settings.media_roots])
    if not wanted:
        raise ConfigError("no folders to reindex",
                          "give the folders, run `spyglass index <folder>` first, or set SPYGLASS_MEDIA")
    present = []
    for root in wanted:
        if os.path.isdir(root):
            present.append(root)
        elif drop_missing and root in recorded:
            present.append(root)  # walked as empty: its items leave the index
            echo(f"folder {printable(root)} is missing: dropping its items (--drop-missing)")
        else:
            # An unmounted disk must not look like a library whose every file was deleted.
            echo(f"skipping folder {printable(root)}: it is missing; its items stay in the index")
    return present


def checked_root(root: str | os.PathLike) -> str:
    """A folder given on the command line, absolute; ConfigError when it is missing or a file."""
    path = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if not os.path.exists(path):
        raise ConfigError(f"no such folder: {printable(path)}", "check the path you gave to `spyglass index`")
    if not os.path.isdir(path):
        raise ConfigError(f"{printable(path)} is a file, not a folder", "give the folder that holds it")
    return path


def interrupted(sessions: sessionmaker[Session], run_id: int, roots: list[str], counts: tuple[int, int, int, int],
                generation_id: int | None) -> RunInterrupted:
    """Record a run stopped by Ctrl-C as `interrupted`, and the one line that says what was kept."""
    finish_run(sessions, run_id, roots, counts, "interrupted", "stopped by Ctrl-C")
    if generation_id is not None:
        return RunInterrupted(f"interrupted; what this run published is kept (generation {generation_id})",
                              "run the same command again to finish: it resumes where this one stopped")
    return RunInterrupted("interrupted before this run published anything; the batches it embedded are staged",
                          "run the same command again: it resumes from them")
