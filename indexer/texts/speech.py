"""Speech heard in videos and audio files, transcribed by faster-whisper (CTranslate2 Whisper models).

SPYGLASS_SPEECH_MODEL names the model like the image weights: a faster-whisper model name
(`tiny.en`, `small`, ...; downloaded once into the model cache) or a local CTranslate2 model
folder (offline). The audio is decoded with PyAV to 16 kHz mono, a window at a time, so a long
recording never sits in memory whole; voice-activity detection (Silero VAD, inside faster-whisper)
skips the silence. Recordings longer than SPYGLASS_MAX_VIDEO_SECONDS are read up to that length.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import threading
from pathlib import Path

import numpy as np

from spyglass.search.errors import ConfigError

from .sources import FolderListing, ItemFacts, Piece, TextUnreadable, bounded, open_regular

SAMPLE_RATE = 16_000
# Audio transcribed at a time: ten minutes is 38 MB of float32 samples.
WINDOW_SECONDS = 600.0
SPOKEN_KINDS = ("video", "audio")


def speech_available() -> bool:
    """Whether faster-whisper is installed (`pip install 'spyglass[speech]'`)."""
    return importlib.util.find_spec("faster_whisper") is not None


def _model_label(model: str) -> str:
    """The model as the extractor records it: a name, or a folder by its name and its weights' size."""
    path = Path(model).expanduser()
    if path.is_dir():
        weights = path / "model.bin"
        size = weights.stat().st_size if weights.is_file() else 0
        return f"{path.name} ({size} bytes)"
    return model


class SpeechSource:
    """Spoken stretches: each segment whisper finds, with its start and end."""

    name = "speech"

    def __init__(self, model: str, max_seconds: float, cache: Path | None, threads: int):
        if not speech_available():
            raise ConfigError(f"SPYGLASS_SPEECH_MODEL={model} but faster-whisper is not installed",
                              "pip install 'spyglass[speech]'")
        path = Path(model).expanduser()
        if (os.sep in model or model.startswith(".")) and not (path / "model.bin").is_file():
            raise ConfigError(f"SPYGLASS_SPEECH_MODEL={model} is not a CTranslate2 model folder (no model.bin)",
                              "give a faster-whisper model name such as tiny.en, or a folder converted with "
                              "ct2-transformers-converter")
        self.model, self.max_seconds, self.cache, self.threads = model, max_seconds, cache, threads
        self.extractor = f"faster-whisper {importlib.metadata.version('faster-whisper')} {_model_label(model)}"
        self._whisper = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._whisper is None:
                from faster_whisper import WhisperModel

                try:
                    self._whisper = WhisperModel(self.model, device="cpu", compute_type="int8",
                                                 cpu_threads=self.threads,
                                                 download_root=str(self.cache) if self.cache else None)
                except Exception as exc:  # noqa: BLE001 - a missing or unreachable model: say how to fix it
                    raise ConfigError(f"cannot load the speech model {self.model}: {type(exc).__name__}: {exc}",
                                      "offline, set SPYGLASS_SPEECH_MODEL to a local CTranslate2 model folder; "
                                      "empty turns speech off") from None
            return self._whisper

    def signature(self, item: ItemFacts, folder: FolderListing) -> str | None:
        return item.content_hash if item.local and item.kind in SPOKEN_KINDS else None

    def read(self, item: ItemFacts, folder: FolderListing) -> list[Piece]:
        whisper = self._load()
        pieces: list[Piece] = []
        for offset, samples in audio_windows(item.path, self.max_seconds):
            segments, _ = whisper.transcribe(samples, beam_size=1, vad_filter=True, condition_on_previous_text=False)
            pieces.extend(Piece("speech", segment.text.strip(), offset + segment.start, offset + segment.end)
                          for segment in segments if segment.text.strip())
        return bounded(pieces)


def audio_windows(path: str, max_seconds: float, window: float = WINDOW_SECONDS):
    """(start time, 16 kHz mono float32 samples) a window at a time, up to max_seconds; nothing for a
    file with no audio stream."""
    import av

    try:
        handle = open_regular(path)
        container = av.open(handle, metadata_errors="ignore")
    except (av.FFmpegError, OSError) as exc:
        raise TextUnreadable(f"cannot open its audio: {exc}") from None
    with handle, container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            return
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        per_window, limit = int(window * SAMPLE_RATE), int(max_seconds * SAMPLE_RATE)
        buffered: list[np.ndarray] = []
        held, taken, start = 0, 0, 0.0
        try:
            for frame in container.decode(streams[0]):
                for resampled in resampler.resample(frame):
                    samples = resampled.to_ndarray().reshape(-1)[:max(0, limit - taken)]
                    buffered.append(samples)
                    held += len(samples)
                    taken += len(samples)
                if held >= per_window:
                    whole = np.concatenate(buffered)
                    yield start, whole[:per_window]
                    start += per_window / SAMPLE_RATE
                    buffered, held = [whole[per_window:]], len(whole) - per_window
                if taken >= limit:
                    break
        except av.FFmpegError as exc:
            raise TextUnreadable(f"cannot decode its audio: {exc}") from None
        if held:
            yield start, np.concatenate(buffered)
