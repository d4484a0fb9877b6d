"""Audio files as items: which files are audio, and the facts kept about one (format, length)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from spyglass.search.errors import SpyglassError

AUDIO_SUFFIXES = frozenset({".mp3", ".m4a", ".wav", ".flac", ".ogg", ".opus"})


class AudioRefused(SpyglassError):
    """An audio file that is not indexed, and why."""


def is_audio(path: str | Path) -> bool:
    """By extension, in any case."""
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def audio_format(path: str | Path) -> str:
    """The catalog's format name: the extension, upper case (MP3, M4A, WAV, FLAC, OGG, OPUS)."""
    return Path(path).suffix.lstrip(".").upper()


def audio_seconds(handle: BinaryIO, max_seconds: float) -> float:
    """The length of the first audio stream, from the header (else by reading its packets, up to
    the limit); AudioRefused for a file with no audio stream or one longer than max_seconds."""
    import av

    try:
        with av.open(handle, metadata_errors="ignore") as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise AudioRefused("no audio stream in it")
            stream = streams[0]
            seconds = None
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                seconds = container.duration / 1_000_000
            if seconds is None or seconds <= 0:  # no length in the header: count what is there
                seconds = 0.0
                for packet in container.demux(stream):
                    if packet.pts is not None and packet.time_base is not None:
                        seconds = max(seconds, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                    if seconds > max_seconds:
                        break
    except av.FFmpegError as exc:
        raise AudioRefused(f"not a readable audio file: {exc}") from None
    if seconds > max_seconds:
        raise AudioRefused(f"it runs {seconds / 3600:.1f} h, over the SPYGLASS_MAX_VIDEO_SECONDS limit of "
                           f"{max_seconds / 3600:.1f} h")
    return seconds


def spoken_name(path: str | Path) -> str:
    """What stands for a recording in the image space until its words are read: its name, as words."""
    return Path(path).stem.replace("_", " ").replace("-", " ").strip() or "a recording"
