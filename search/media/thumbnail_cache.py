"""The thumbnail cache on disk: bounded in bytes (SPYGLASS_THUMBNAIL_CACHE), least recently used out first.

A hit touches its file's mtime, so the mtimes order the files by last use. Each process counts
what it writes and, every tenth of the limit, sweeps the folder: when the files hold more than
the limit, the least recently used go until they hold 90 % of it. Several worker processes
share one folder, so it can overshoot by at most a tenth of the limit per process between
sweeps. Writing is best effort: a full disk costs the cache, never the answer.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
# What a sweep brings the cache down to, as a fraction of the limit: room for the next writes.
LOW_WATER = 0.9
# A temp file older than this was left by a writer that died.
STALE_TEMP_SECONDS = 3600


class ThumbnailCache:
    """Thumbnails by name under one folder, at most `limit` bytes of them (roughly; see above)."""

    def __init__(self, folder: Path, limit: int):
        self.folder = folder
        self.limit = limit
        self._lock = threading.Lock()
        self._written = 0
        self._swept = False

    def path(self, name: str) -> Path:
        """Where the thumbnail of this name lives (two-character shards, like git's objects)."""
        return self.folder / name[:2] / name

    def get(self, name: str) -> Path | None:
        """The cached file, marked as just used; None when it is not cached."""
        target = self.path(name)
        try:
            os.utime(target)
        except OSError:  # not there, or a read-only cache: a miss either way
            return None if not target.is_file() else target
        return target

    def put(self, name: str, data: bytes) -> Path | None:
        """Store a thumbnail (temp file, then rename); None when it could not be kept."""
        if len(data) > self.limit:
            return None
        target = self.path(name)
        temp = target.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(temp, "wb") as handle:
                handle.write(data)
            os.replace(temp, target)  # concurrent writers of one thumbnail each write their own temp
        except OSError as exc:
            _remove(temp)
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
                raise
            log.warning("thumbnail cache: cannot write %s (%s); serving without caching", target.name,
                        exc.strerror or exc)
            self.sweep()  # a full disk may be the cache's own doing
            return None
        with self._lock:
            self._written += len(data)
            due = not self._swept or self._written >= max(self.limit // 10, 1)
            if due:
                self._written, self._swept = 0, True
        if due:
            self.sweep()
        return target if target.exists() else None

    def sweep(self) -> int:
        """Remove the least recently used files until the cache holds at most 90 % of the limit
        (only when it holds more than the limit), and dead writers' temp files; returns bytes freed."""
        files, total, freed = [], 0, 0
        now = time.time()
        for shard in _entries(self.folder):
            if not shard.is_dir(follow_symlinks=False):
                continue
            for entry in _entries(Path(shard.path)):
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if entry.name.endswith(".tmp"):
                    if now - info.st_mtime > STALE_TEMP_SECONDS:
                        freed += _remove(Path(entry.path), info.st_size)
                    continue
                files.append((info.st_mtime, entry.path, info.st_size))
                total += info.st_size
        if total <= self.limit:
            return freed
        files.sort()
        for _, path, size in files:
            if total <= LOW_WATER * self.limit:
                break
            removed = _remove(Path(path), size)
            total -= removed
            freed += removed
        return freed

    def size(self) -> int:
        """Bytes the cached thumbnails hold now."""
        return sum(entry.stat(follow_symlinks=False).st_size
                   for shard in _entries(self.folder) if shard.is_dir(follow_symlinks=False)
                   for entry in _entries(Path(shard.path)) if not entry.name.endswith(".tmp"))


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []


def _remove(path: Path, size: int = 0) -> int:
    try:
        path.unlink()
    except OSError:
        return 0
    return size
