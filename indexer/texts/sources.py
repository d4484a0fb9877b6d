"""The text sources that need no model: an item's name, its caption, and its sidecar files.

Each source says what it would read from an item (a signature: when it is unchanged, nothing is
read again) and reads it into pieces of text for item_texts.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

from .subtitles import decode_text, parse_cues

# Sidecar files larger than this are not read (a subtitle file of a feature film is ~100 KB).
MAX_SIDECAR_BYTES = 4 * 1024 * 1024
# Characters one source may store for one item: a bound on what a hostile file can make us keep.
MAX_TEXT_CHARS = 200_000
SUBTITLE_SUFFIXES = (".srt", ".vtt")


def open_regular(path: str):
    """The file opened for reading, only if it is a regular file (never a FIFO or a device put in its place)."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise OSError(f"{os.path.basename(path)} is no longer a regular file")
    return os.fdopen(descriptor, "rb")


class TextUnreadable(Exception):
    """The source could not read this item; the message says why in one line."""


@dataclass(frozen=True)
class ItemFacts:
    """What a text source needs to know of an item."""

    id: int
    path: str
    relative_path: str
    kind: str
    content_hash: str
    caption: str | None
    local: bool  # a file in a media folder (an import may bring a url alone)
    duration_s: float | None = None  # a video's or an audio file's length
    place: str | None = None  # from the facts stage (GPS named offline)
    camera: str | None = None


@dataclass(frozen=True)
class Piece:
    """One text to store: its field, the text shown, the text indexed (when it differs), its times."""

    field: str
    text: str
    start_s: float | None = None
    end_s: float | None = None
    indexed: str | None = None
    confidence: float | None = None  # text read from pixels: how sure the reader was
    box: str | None = None  # and where: "left,top,right,bottom" as fractions of the picture


class TextSource(Protocol):
    """Reads one kind of text from items."""

    name: str  # kept in item_texts.source and text_extractions.source
    extractor: str  # what reads it, with its version: a change reads every item again

    def signature(self, item: ItemFacts, folder: "FolderListing") -> str | None:
        """What would be read (None: nothing applies to this item)."""

    def read(self, item: ItemFacts, folder: "FolderListing") -> list[Piece]:
        """The pieces, or TextUnreadable."""


class FolderListing:
    """The files of the folders a run looks in for sidecars, each folder listed once."""

    def __init__(self):
        self._folders: dict[str, dict[str, tuple[str, os.stat_result]]] = {}

    def files(self, folder: str) -> dict[str, tuple[str, os.stat_result]]:
        """Regular files of a folder, (name, stat) by lower-cased name (none when it cannot be read)."""
        if folder not in self._folders:
            if len(self._folders) > 4096:
                self._folders.clear()
            found: dict[str, tuple[str, os.stat_result]] = {}
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        if stat.S_ISREG(info.st_mode):
                            found[entry.name.lower()] = (entry.name, info)
            except OSError:
                pass
            self._folders[folder] = found
        return self._folders[folder]


class NameSource:
    """The file's name and the folders it is in, inside its media folder (apple_red.png -> apple red)."""

    name = "name"
    extractor = "name 1"

    def signature(self, item: ItemFacts, folder: FolderListing) -> str | None:
        return item.relative_path

    def read(self, item: ItemFacts, folder: FolderListing) -> list[Piece]:
        path = PurePosixPath(item.relative_path)
        # The extension is not a word of the name: every JPEG would match "jpg".
        return [Piece("name", item.relative_path, indexed=str(path.with_suffix("")) if path.suffix else None)]


class CaptionSource:
    """The caption `spyglass import` stored."""

    name = "caption"
    extractor = "caption 1"

    def signature(self, item: ItemFacts, folder: FolderListing) -> str | None:
        return hashlib.blake2b(item.caption.encode("utf-8", "replace"), digest_size=16).hexdigest() \
            if item.caption else None

    def read(self, item: ItemFacts, folder: FolderListing) -> list[Piece]:
        return [Piece("caption", item.caption or "")]


class PlaceSource:
    """Where and with what it was taken (the facts stage's place and camera), as words: "paris" and
    "iphone" find what a photo's pixels cannot say."""

    name = "place"
    extractor = "place 1"

    def signature(self, item: ItemFacts, folder: FolderListing) -> str | None:
        if not item.place and not item.camera:
            return None
        return hashlib.blake2b(f"{item.place}|{item.camera}".encode("utf-8", "replace"), digest_size=16).hexdigest()

    def read(self, item: ItemFacts, folder: FolderListing) -> list[Piece]:
        return [Piece(field, text) for field, text in (("place", item.place), ("camera", item.camera)) if text]


class SidecarSource:
    """Files beside the item with its name: `photo.txt` or `photo.jpg.txt` (a caption), and
    `clip.srt`, `clip.vtt`, `clip.en.srt` (timed subtitles)."""

    name = "sidecar"
    extractor = "sidecar 1"

    def _sidecars(self, item: ItemFacts, folder: FolderListing) -> list[tuple[str, os.stat_result]]:
        if not item.local:
            return []
        directory, filename = os.path.split(item.path)
        stem = os.path.splitext(filename)[0].lower()
        found = []
        for name, (real, info) in folder.files(directory).items():
            if name in (f"{stem}.txt", f"{filename.lower()}.txt"):
                found.append((real, info))
            elif name.endswith(SUBTITLE_SUFFIXES) and (name[:-4] == stem or name[:-4].rsplit(".", 1)[0] == stem):
                found.append((real, info))
        return sorted(found, key=lambda pair: pair[0])

    def signature(self, item: ItemFacts, folder: FolderListing) -> str | None:
        found = self._sidecars(item, folder)
        return ";".join(f"{name}:{info.st_size}:{info.st_mtime_ns}" for name, info in found) or None

    def read(self, item: ItemFacts, folder: FolderListing) -> list[Piece]:
        directory = os.path.dirname(item.path)
        pieces: list[Piece] = []
        for name, info in self._sidecars(item, folder):
            if info.st_size > MAX_SIDECAR_BYTES:
                raise TextUnreadable(f"{name} is {info.st_size:,} bytes; sidecars are read up to "
                                     f"{MAX_SIDECAR_BYTES:,}")
            try:  # not through a link that replaced the file since it was listed
                descriptor = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
                with os.fdopen(descriptor, "rb") as handle:
                    data = handle.read(MAX_SIDECAR_BYTES + 1)
            except OSError as exc:
                raise TextUnreadable(f"cannot read {name}: {exc.strerror}") from None
            if name.lower().endswith(".txt"):
                pieces.append(Piece("caption", decode_text(data).strip()))
            else:
                pieces.extend(Piece("subtitle", cue.text, cue.start_s, cue.end_s) for cue in parse_cues(data))
        return bounded([p for p in pieces if p.text])


def bounded(pieces: list[Piece]) -> list[Piece]:
    """The pieces up to MAX_TEXT_CHARS in all: a hostile file cannot make us keep more."""
    kept, total = [], 0
    for piece in pieces:
        if total + len(piece.text) > MAX_TEXT_CHARS:
            break
        kept.append(piece)
        total += len(piece.text)
    return kept
