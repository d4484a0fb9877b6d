"""Videos made with PyAV and real codecs: shots of solid colour or moving texture, cuts at known times."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

NTSC = Fraction(30000, 1001)  # 29.97 fps


def shot_frame(kind: str, colour: tuple[int, int, int], t: float, size: tuple[int, int], seed: int) -> np.ndarray:
    """One RGB frame of a shot: a flat colour, or a texture drifting slowly (motion, no cut)."""
    width, height = size
    if kind == "solid":
        return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()
    yy, xx = np.mgrid[0:height, 0:width]
    # Stripes and blobs drifting a few pixels a second: motion, never a cut.
    pattern = (np.sin((xx - 6 * t) / (5 + seed)) * np.cos((yy + 3 * t) / (7 + seed)))[..., None]
    return np.clip(np.array(colour) * (0.6 + 0.4 * pattern), 0, 255).astype(np.uint8)


def write_video(path: Path, shots: list[tuple[float, str, tuple[int, int, int]]], fps: Fraction = NTSC,
                size: tuple[int, int] = (160, 96), times: list[float] | None = None,
                x264_params: str | None = None) -> list[float]:
    """Write the shots (duration s, kind, colour) back to back; returns every frame's presentation time.

    `times`, when given, are the frames' presentation times (a variable frame rate), in seconds;
    the container's time base is then 1/1000 s.
    """
    import av

    bounds = np.cumsum([0.0] + [d for d, _, _ in shots])
    if times is None:
        count = int(bounds[-1] * fps)
        times = [float(i / fps) for i in range(count)]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if path.suffix != ".webm" else "libvpx-vp9",
                                      rate=fps if times is None else None)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if x264_params:
            stream.options = {"x264-params": x264_params}
        time_base = Fraction(1, 1000) if path.suffix == ".mkv" else 1 / fps
        stream.codec_context.time_base = time_base
        for i, t in enumerate(times):
            shot = int(np.searchsorted(bounds, t, side="right")) - 1
            _, kind, colour = shots[min(shot, len(shots) - 1)]
            frame = av.VideoFrame.from_ndarray(shot_frame(kind, colour, t, size, seed=shot), format="rgb24")
            frame.pts = round(t / time_base)
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return times


def spoken(sentence: str, rate: int = 16_000) -> np.ndarray:
    """A sentence spoken by Debian's espeak-ng, as float32 mono samples at `rate`."""
    import subprocess
    import tempfile

    import av

    with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
        subprocess.run(["espeak-ng", "-w", wav.name, sentence], check=True, capture_output=True)
        with av.open(wav.name) as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks = [r.to_ndarray().reshape(-1) for f in container.decode(audio=0) for r in resampler.resample(f)]
    return np.concatenate(chunks).astype(np.float32)


def write_spoken_video(path: Path, seconds: float, speech: list[tuple[float, str]], audio_only: bool = False,
                       rate: int = 16_000) -> None:
    """A video (or, with audio_only, an audio file: .wav, .flac, .ogg, .mp3, .m4a) of `seconds`, silent
    but for each (start time, sentence) spoken there by espeak-ng."""
    import av

    track = np.zeros(int(seconds * rate), np.float32)
    for start, sentence in speech:
        voice = spoken(sentence, rate)
        at = int(start * rate)
        track[at:at + len(voice)] = voice[:len(track) - at]
    codec = {".wav": "pcm_s16le", ".flac": "flac", ".ogg": "libvorbis", ".mp3": "libmp3lame"}.get(path.suffix, "aac")
    with av.open(str(path), "w") as container:
        video = None
        if not audio_only:
            video = container.add_stream("libx264", rate=25)
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream(codec, rate=rate)
        audio.layout = "mono"
        step = 1024
        fmt = audio.codec_context.codec.audio_formats[0].name
        for begin in range(0, len(track), step):
            frame = av.AudioFrame.from_ndarray(track[None, begin:begin + step], format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, begin
            resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate)
            for converted in resampler.resample(frame):
                for packet in audio.encode(converted):
                    container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
        if video is not None:
            for i in range(int(seconds * 25)):
                frame = av.VideoFrame.from_ndarray(shot_frame("solid", (40, 120, 40), i / 25, (64, 48), 0),
                                                   format="rgb24")
                frame.pts = i
                for packet in video.encode(frame):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
