"""Walk media folders: every supported file once, with its size and mtime; problems as skips."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from spyglass.search.media.files import MediaRoots

from spyglass.search.media.audio import AUDIO_SUFFIXES
from spyglass.search.media.images import IMAGE_EXTENSIONS, RAW_EXTENSIONS
from spyglass.search.media.video_frames import VIDEO_SUFFIXES



def video_support() -> bool:
    """Whether PyAV is installed (`pip install 'spyglass[video]'`), so videos and audio files can be indexed."""
    import importlib.util

    return importlib.util.find_spec("av") is not None


@dataclass
class ScanCounts:
    """What a walk passed over: videos, when they cannot be indexed."""

    unindexable_videos: int = 0
    unindexable_audio: int = 0
    raw_photos: int = 0  # camera RAW files: known, not decoded


@dataclass(frozen=True)
class FoundFile:
    """A supported file and the stat facts that tell whether it changed."""

    path: str
    root: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    """A path that could not be taken, and why, in words for the user.

    `lasting` is False for a failure that says nothing about the file (memory ran out, a read
    fault, a Ray partition lost): such a skip is not remembered, so the next run tries again.
    """

    path: str
    reason: str
    lasting: bool = True


def walk(root: str | os.PathLike, media: MediaRoots | None = None, videos: bool = True,
         counts: ScanCounts | None = None) -> Iterator[FoundFile | Skipped]:
    """Yield the supported files under root, recursively, following links but never looping.

    Videos are yielded only when `videos` is true; otherwise `counts` counts them, so the caller
    can say once how to index them (they are not recorded as skipped: installing PyAV is
    enough for the next run to take them).

    A directory reached twice (a symlink loop, or two links to one folder) is walked once.
    Symbolic links are followed as media's policy allows (SPYGLASS_FOLLOW_SYMLINKS); without
    media, every link is followed.
    """
    root_path = os.path.abspath(os.path.expanduser(os.fspath(root)))
    seen_dirs: set[tuple[int, int]] = set()
    stack = [root_path]
    while stack:
        directory = stack.pop()
        try:
            info = os.stat(directory)
        except OSError as exc:
            yield Skipped(directory, f"cannot open folder: {exc.strerror}")
            continue
        if (info.st_dev, info.st_ino) in seen_dirs:
            continue
        seen_dirs.add((info.st_dev, info.st_ino))
        try:
            with os.scandir(directory) as entries:
                children = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(directory, f"cannot read folder: {exc.strerror}")
            continue
        subdirs = []
        for entry in children:
            found = _visit(entry, root_path, media, videos, counts)
            if found == "dir":
                subdirs.append(entry.path)
            elif found is not None:
                yield found
        # Reversed so that the stack pops folders in name order.
        stack.extend(reversed(subdirs))


def _visit(entry: os.DirEntry, root: str, media: MediaRoots | None, videos: bool = True,
           counts: ScanCounts | None = None) -> FoundFile | Skipped | str | None:
    suffix = Path(entry.name).suffix.lower()
    try:
        info = entry.stat()  # follows symlinks
    except OSError as exc:
        if entry.is_symlink():
            return Skipped(entry.path, "broken symbolic link")
        return Skipped(entry.path, f"cannot stat: {exc.strerror}")
    is_dir = stat.S_ISDIR(info.st_mode)
    if not is_dir and not videos and suffix in _STREAMED:
        if counts is not None and suffix in AUDIO_SUFFIXES:
            counts.unindexable_audio += 1
        elif counts is not None:
            counts.unindexable_videos += 1
        return None
    if not is_dir and suffix in RAW_EXTENSIONS and stat.S_ISREG(info.st_mode):
        if counts is not None:
            counts.raw_photos += 1
        return None
    if not is_dir and (not stat.S_ISREG(info.st_mode) or suffix not in _SUFFIXES):
        return None
    if media is not None and entry.is_symlink():
        refusal = media.link_refusal(entry.path)
        if refusal is not None:
            return Skipped(entry.path, refusal)
    if is_dir:
        return "dir"
    if not _is_utf8(entry.path):
        return Skipped(entry.path.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
                       "file name is not valid UTF-8")
    if not os.access(entry.path, os.R_OK):
        return Skipped(entry.path, "permission denied")
    return FoundFile(path=entry.path, root=root, size=info.st_size, mtime_ns=info.st_mtime_ns)


# Videos and audio files are read with PyAV: without it, a walk counts them instead.
_STREAMED = VIDEO_SUFFIXES | AUDIO_SUFFIXES
_SUFFIXES = IMAGE_EXTENSIONS | _STREAMED


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
