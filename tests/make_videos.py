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
                size: tuple[int, int] = (160, 96), times: list[float] | None = None) -> list[float]:
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
