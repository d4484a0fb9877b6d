"""Video indexing speed on this machine: minutes of 720p H.264 indexed per minute, and frames kept.

Makes one 720p H.264 film (shots of moving texture with a cut every few seconds, 29.97 fps)
and one ViT-B-32 checkpoint with random weights (speed does not depend on the weights), then
indexes the folder into a fresh home with `spyglass index` in several rounds, interleaved with
a model-only round (the same number of frames embedded with no decoding) so both meet the same
throttling. Prints best and median of the rounds.

    python benchmarks/video_throughput.py --seconds 60 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timed_index import timed_index  # noqa: E402

NTSC = Fraction(30000, 1001)


def write_film(path: Path, seconds: float, shot_seconds: float, size=(1280, 720)) -> None:
    """A 720p H.264 film: each shot a texture drifting a few pixels a frame, a cut every shot_seconds."""
    import av

    width, height = size
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=NTSC)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        texture = None
        for index in range(int(seconds * NTSC)):
            t = float(index / NTSC)
            if texture is None or int(t / shot_seconds) != int((t - float(1 / NTSC)) / shot_seconds):
                yy, xx = np.mgrid[0:height + 64, 0:width + 64]
                colour = rng.integers(40, 255, 3)
                pattern = np.sin(xx / rng.uniform(4, 30)) * np.cos(yy / rng.uniform(4, 30))
                texture = np.clip(colour * (0.6 + 0.4 * pattern[..., None]), 0, 255).astype(np.uint8)
            shift = index % 64
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(texture[shift:shift + height, shift:shift + width]),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def index_round(folder: Path, home: Path, checkpoint: Path) -> tuple[float, float, int, int]:
    """(whole-job s, the run's own s, frames kept, frames sampled) of `spyglass index` into a fresh home."""
    elapsed, line = timed_index(folder, home, checkpoint)
    own = re.search(r"unchanged \(([\d.]+) s", line)
    frames = re.search(r"([\d,]+) frames kept of ([\d,]+) sampled", line)
    return elapsed, float(own[1]), int(frames[1].replace(",", "")), int(frames[2].replace(",", ""))


def model_round(encoder, frames: int) -> float:
    """Seconds to embed this many frames with no decoding, in batches of 32."""
    import torch

    pixels = torch.rand(32, 3, encoder.image_size, encoder.image_size)
    started = time.perf_counter()
    for start in range(0, frames, 32):
        encoder.encode_pixels(pixels[: min(32, frames - start)])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60, help="length of the film")
    parser.add_argument("--shot-seconds", type=float, default=5, help="a cut every this many seconds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path, help="keep the film and checkpoint here (default: a temp dir)")
    args = parser.parse_args()

    import torch

    from spyglass.search.model.encoder import load_encoder

    work = args.work or Path(tempfile.mkdtemp(prefix="spyglass-video-bench-"))
    folder, checkpoint = work / "media", work / "vit-b-32.pt"
    folder.mkdir(parents=True, exist_ok=True)
    film = folder / "film.mp4"
    if not film.is_file():
        print(f"writing a {args.seconds:.0f} s 720p H.264 film...", file=sys.stderr)
        write_film(film, args.seconds, args.shot_seconds)
    if not checkpoint.is_file():
        torch.save(load_encoder("ViT-B-32", None, device="cpu").model.state_dict(), checkpoint)
    encoder = load_encoder("ViT-B-32", str(checkpoint), device="cpu", precision="auto")
    minutes = args.seconds / 60
    whole, own, model, kept, sampled = [], [], [], 0, 0
    for round_ in range(args.rounds):
        elapsed, run_s, kept, sampled = index_round(folder, work / "home", checkpoint)
        whole.append(minutes / (elapsed / 60))
        own.append(minutes / (run_s / 60))
        model.append(minutes / (model_round(encoder, sampled) / 60))
        print(f"round {round_ + 1}: job {elapsed:.1f} s, run {run_s:.1f} s", file=sys.stderr)
    print(f"720p H.264, {args.seconds:.0f} s at 29.97 fps, a cut every {args.shot_seconds:g} s; "
          f"ViT-B-32 {encoder.precision_check.describe()} on {os.cpu_count()} cores")
    print(f"{'':34}{'best':>8}{'median':>8}")
    for name, values in (("video min per min, whole job", whole), ("video min per min, the run", own),
                         ("  model only, same frames", model)):
        print(f"{name:34}{max(values):>8.1f}{statistics.median(values):>8.1f}")
    print(f"frames kept per minute of video: {kept / minutes:.1f} ({sampled / minutes:.1f} sampled, "
          f"{int(args.seconds * NTSC / minutes)} decoded)")
    print(f"run / model-only ratio (median): {statistics.median(own) / statistics.median(model):.2f}")


if __name__ == "__main__":
    main()
