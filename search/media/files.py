"""Reading media files safely: regular files only, inside the media roots, bounded, still the indexed file.

Every read of a library file (the indexer, thumbnails, `/file`) goes through open_media_file, so
one rule decides what may be read: the path lies inside a media root; once symbolic links are
resolved it obeys SPYGLASS_FOLLOW_SYMLINKS; it is a regular file (never a FIFO, a device or a
folder); it is no larger than SPYGLASS_MAX_FILE_BYTES; and, when the caller knows the size and
mtime it indexed, it still has them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import BinaryIO, Iterable

from spyglass.search.errors import MediaFileError
from spyglass.search.media.paths import is_inside

FOLLOW_SYMLINKS = ("inside", "all", "none")
# O_NONBLOCK: opening a FIFO swapped in for a file must not wait for a writer.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY

# The first bytes of each format Spyglass indexes, to tell that a served file is still an image.
_MAGIC = {
    "JPEG": (b"\xff\xd8\xff",), "MPO": (b"\xff\xd8\xff",), "PNG": (b"\x89PNG\r\n\x1a\n",),
    "GIF": (b"GIF87a", b"GIF89a"), "BMP": (b"BM",), "TIFF": (b"II*\x00", b"MM\x00*"),
    "FLAC": (b"fLaC", b"ID3"), "OGG": (b"OggS",), "OPUS": (b"OggS",),
}
MAGIC_BYTES = 12
# Video containers, as the catalog records them; MP4 covers .mp4, .m4v and .mov (ISO base media).
VIDEO_FORMATS = frozenset({"MP4", "MKV", "WEBM", "AVI"})
_EBML = b"\x1a\x45\xdf\xa3"  # Matroska and WebM
# The box an ISO base-media file opens with: ftyp, or moov/mdat/wide/free/skip in old QuickTime.
_ISO_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")


def format_matches(fmt: str, head: bytes) -> bool:
    """Whether a file's first bytes are those of the format the catalog recorded."""
    if fmt == "WEBP":
        return head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    if fmt == "AVI":
        return head[:4] == b"RIFF" and head[8:12] == b"AVI "
    if fmt in ("MKV", "WEBM"):
        return head.startswith(_EBML)
    if fmt in ("HEIF", "AVIF"):  # ISO base media too: an ftyp box first
        return head[4:8] == b"ftyp"
    if fmt in ("MP4", "M4A"):
        return head[4:8] in _ISO_BOXES
    if fmt == "WAV":
        return head[:4] == b"RIFF" and head[8:12] == b"WAVE"
    if fmt == "MP3":  # an ID3 tag, or straight into an MPEG audio frame (11 sync bits)
        return head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0)
    return any(head.startswith(magic) for magic in _MAGIC.get(fmt, ()))


@dataclass(frozen=True)
class MediaRoots:
    """The media root folders and the symbolic-link policy that applies inside them."""

    roots: tuple[str, ...]
    follow_symlinks: str = "inside"
    max_bytes: int = 512 * 1024 * 1024
    _real: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        roots = tuple(dict.fromkeys(os.path.abspath(r) for r in self.roots))
        object.__setattr__(self, "roots", roots)
        object.__setattr__(self, "_real", tuple(os.path.realpath(r) for r in roots))

    @classmethod
    def of(cls, roots: Iterable[str], settings) -> "MediaRoots":
        """The roots with the policy and size limit of these settings."""
        return cls(tuple(roots), settings.follow_symlinks, settings.max_file_bytes)

    def root_of(self, path: str) -> str | None:
        """The innermost media root that path lies inside (by its text), if any."""
        inside = [root for root in self.roots if is_inside(path, root)]
        return max(inside, key=len) if inside else None

    def link_refusal(self, path: str) -> str | None:
        """Why the symbolic link at path may not be followed, or None when it may."""
        if self.follow_symlinks == "all":
            return None
        if self.follow_symlinks == "none":
            return "symbolic link, not followed (SPYGLASS_FOLLOW_SYMLINKS=none)"
        if self._inside_a_real_root(os.path.realpath(path)):
            return None
        return "symbolic link to a place outside the media folders, not followed (SPYGLASS_FOLLOW_SYMLINKS=inside)"

    def _inside_a_real_root(self, real: str) -> bool:
        return any(real == root or is_inside(real, root) for root in self._real)

    def _resolved(self, path: str) -> str:
        """The real path to open, or MediaFileError when the path breaks the rules."""
        root = self.root_of(path)
        if root is None:
            raise MediaFileError("the file is not inside a media folder")
        real = os.path.realpath(path)
        if self.follow_symlinks == "none":
            if real != os.path.join(os.path.realpath(root), os.path.relpath(path, root)):
                raise MediaFileError("the file is reached through a symbolic link "
                                     "(SPYGLASS_FOLLOW_SYMLINKS=none)")
        elif self.follow_symlinks == "inside" and not self._inside_a_real_root(real):
            raise MediaFileError("the file is a symbolic link to a place outside the media folders "
                                 "(SPYGLASS_FOLLOW_SYMLINKS=inside)")
        return real

    def open(self, path: str, expected: tuple[int, int] | None = None,
             streamed: bool = False) -> tuple[BinaryIO, os.stat_result]:
        """Open a media file for reading under the rules; expected is the (size, mtime_ns) it must have.

        `streamed` files (videos) are read piece by piece, never whole, so the byte limit does not
        apply to them: SPYGLASS_MAX_VIDEO_SECONDS bounds the work instead.
        """
        real = self._resolved(path)
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except FileNotFoundError:
            raise MediaFileError("the file is gone from disk") from None
        except OSError as exc:  # ELOOP: the resolved path became a link since it was resolved
            raise MediaFileError(f"cannot open the file: {exc.strerror or exc}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):  # checked before fdopen, which refuses a folder with a raw IsADirectoryError
                raise MediaFileError("not a regular file")
        except BaseException:
            os.close(fd)
            raise
        handle = os.fdopen(fd, "rb")
        try:
            # Non-blocking was for the open only: Linux's sendfile honours it and sends nothing.
            os.set_blocking(fd, True)
            opened = _opened_path(fd)
            if opened is not None and opened != real:
                # A folder on the way was swapped for a link between resolving and opening.
                raise MediaFileError("the file moved while it was being opened")
            if expected is not None and (info.st_size, info.st_mtime_ns) != tuple(expected):
                raise MediaFileError("the file changed since it was indexed (its size or modification "
                                     "time differs)", "`spyglass reindex` indexes it again")
            if info.st_size > self.max_bytes and not streamed:
                raise MediaFileError(f"the file is {info.st_size:,} bytes, over the "
                                     f"{self.max_bytes:,}-byte limit (SPYGLASS_MAX_FILE_BYTES)")
        except BaseException:
            handle.close()
            raise
        return handle, info

    def open_indexed(self, path: str, size: int, mtime_ns: int, fmt: str) -> tuple[BinaryIO, os.stat_result]:
        """Open a file only while it is still the one indexed: same size, mtime and format by its magic bytes."""
        handle, info = self.open(path, expected=(size, mtime_ns), streamed=fmt in VIDEO_FORMATS)
        try:
            # pread leaves the file position alone: servers hand the descriptor to sendfile.
            if not format_matches(fmt, os.pread(handle.fileno(), MAGIC_BYTES, 0)):
                raise MediaFileError(f"the file is no longer a {fmt} image", "`spyglass reindex` brings the index up to date")
        except BaseException:
            handle.close()
            raise
        return handle, info

    def read(self, path: str, expected: tuple[int, int] | None = None) -> tuple[bytes, os.stat_result]:
        """The whole file, under the same rules, never more than max_bytes however it grows."""
        handle, info = self.open(path, expected)
        with handle:
            data = handle.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise MediaFileError(f"the file grew past the {self.max_bytes:,}-byte limit "
                                 "(SPYGLASS_MAX_FILE_BYTES) while it was read")
        return data, info


def read_regular_file(path: str, max_bytes: int) -> bytes:
    """A file the user named (not a library file): regular, and at most max_bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise MediaFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise MediaFileError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise MediaFileError(f"{path} is over the {max_bytes:,}-byte limit")
    return data


def _opened_path(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # no /proc (not Linux): the O_NOFOLLOW open is the guard
        return None
