"""Test films like a phone's: 720p H.264 at 29.97 fps, a cut every few seconds, photos that drift, with grain."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

NTSC = Fraction(30000, 1001)


def write_film(path: Path, seconds: float = 60.0, shot_s: float = 5.0, size: tuple[int, int] = (1280, 720),
               bit_rate: int = 4_300_000, seed: int = 0) -> list[float]:
    """Write the film; returns the presentation time of the first frame of every shot after the first."""
    import av

    from photo_corpus import photo

    width, height = size
    rng = np.random.default_rng(seed)
    shots = int(np.ceil(seconds / shot_s))
    # Each shot: a photo larger than the frame, panned a few pixels a second, with fresh grain.
    pictures = [np.asarray(photo(width + 64, height + 36, seed * 1000 + i)) for i in range(shots)]
    count = int(seconds * NTSC)
    cuts = []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=NTSC)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = bit_rate
        stream.codec_context.time_base = 1 / NTSC
        for i in range(count):
            t = float(i / NTSC)
            shot = min(int(t // shot_s), shots - 1)
            if i and shot != min(int(float((i - 1) / NTSC) // shot_s), shots - 1):
                cuts.append(t)
            dx, dy = int((t - shot * shot_s) * 10) % 64, int((t - shot * shot_s) * 5) % 36
            grain = rng.normal(0, 5, (height, width, 1))
            pixels = np.clip(pictures[shot][dy:dy + height, dx:dx + width] + grain, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return cuts
