"""Timed text tracks inside a video file (SubRip in Matroska, mov_text in MP4, WebVTT, ASS): each
cue with its times, read by demuxing the subtitle streams alone (no frame is decoded)."""

from __future__ import annotations

import re

from .sources import FolderListing, ItemFacts, Piece, TextUnreadable, bounded, open_regular
from .subtitles import MAX_CUE_CHARS, MAX_CUES

# ASS override blocks ({\i1}, {\an8}) and line breaks (\N, \n) inside a cue's text.
_OVERRIDES = re.compile(r"\{[^}]{0,200}\}")
_BREAKS = re.compile(r"\\[Nnh]")
_TAGS = re.compile(r"<[^>]{0,200}>")


def cue_text(raw: bytes | str) -> str:
    """A decoded cue as plain text."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(_TAGS.sub("", _OVERRIDES.sub("", _BREAKS.sub(" ", text))).split())[:MAX_CUE_CHARS]


class TrackSource:
    """The text subtitle tracks of a video."""

    name = "tracks"
    extractor = "tracks 1"

    def signature(self, item: ItemFacts, folder: FolderListing) -> str | None:
        return item.content_hash if item.local and item.kind == "video" else None

    def read(self, item: ItemFacts, folder: FolderListing) -> list[Piece]:
        import av

        pieces: list[Piece] = []
        try:
            with open_regular(item.path) as handle, av.open(handle, metadata_errors="ignore") as container:
                streams = [s for s in container.streams if s.type == "subtitle"]
                if not streams:
                    return []
                for packet in container.demux(*streams):
                    if packet.pts is None or packet.time_base is None:
                        continue
                    start = float(packet.pts * packet.time_base)
                    end = start + float((packet.duration or 0) * packet.time_base)
                    try:
                        cues = packet.decode()
                    except av.FFmpegError:
                        continue  # a bitmap track (DVD, PGS) or a damaged cue: nothing to read here
                    for cue in cues:
                        raw = getattr(cue, "dialogue", None) or getattr(cue, "text", None) or b""
                        text = cue_text(raw)
                        if text:
                            pieces.append(Piece("subtitle", text, start, max(start, end)))
                    if len(pieces) >= MAX_CUES:
                        break
        except (av.FFmpegError, OSError) as exc:
            raise TextUnreadable(f"cannot read its subtitle tracks: {exc}") from None
        return bounded(pieces)
