"""The Ray runner's overhead against the local runner on the same folder, in interleaved rounds.

    python benchmarks/ray_overhead.py --images 256 --rounds 3 [--model ViT-B-32] [--partition-files 64]

Each round indexes the same folder of JPEGs into a fresh home, once with `--runner local` and once
with `--runner ray` (a local Ray, started once before the rounds, as a cluster would already
run), alternating which goes first. Prints best and median seconds of each, the ratio, and the
Ray runner's own figures: images/s per encoder actor (its embed time only) and the per-partition
medians, the numbers the scaling plan in the README rests on. Random weights, written once to a
checkpoint (the same vectors in every run). With --gpus N the Ray cluster gets N GPUs and one
encoder actor each (benchmarks/gpu_check.sh).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_images(folder: Path, count: int, size=(1024, 768)) -> None:
    """Photo-sized JPEGs of smooth random colour fields (they decode like photos, not like noise)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    for index in range(count):
        path = folder / f"img-{index:05d}.jpg"
        if path.exists():
            continue
        colour = rng.integers(30, 255, 3)
        wave = np.sin(xx / rng.uniform(8, 60) + rng.uniform(0, 6)) * np.cos(yy / rng.uniform(8, 60))
        pixels = np.clip(colour * (0.55 + 0.45 * wave[..., None]), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(path, quality=88)


def one_run(settings, folder: Path) -> tuple[float, str]:
    """(seconds, summary) of one index run into a fresh home."""
    from spyglass.indexer.job import run_index

    shutil.rmtree(settings.home, ignore_errors=True)
    started = time.perf_counter()
    summary = run_index(settings, [str(folder)], progress=False, echo=lambda message: None)
    return time.perf_counter() - started, summary.line()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--partition-files", type=int, default=64)
    parser.add_argument("--batch-size", type=int, help="default: SPYGLASS_BATCH_SIZE's (32 on a CPU, 256 on CUDA)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gpus", type=int, default=0, help="GPUs of the local Ray (one encoder actor each)")
    parser.add_argument("--work", type=Path, help="keep the images and checkpoint here (default: a temp dir)")
    args = parser.parse_args()

    import ray
    import torch

    from spyglass.search.model.encoder import load_encoder
    from spyglass.search.settings import Settings

    work = args.work or Path(tempfile.mkdtemp(prefix="spyglass-ray-bench-"))
    folder, checkpoint = work / "media", work / f"{args.model}.pt"
    print(f"writing {args.images} JPEGs (1024x768)...", file=sys.stderr)
    write_images(folder, args.images)
    if not checkpoint.is_file():
        torch.save(load_encoder(args.model, None, device="cpu").model.state_dict(), checkpoint)
    base = Settings(model=args.model, pretrained=str(checkpoint), device=args.device, batch_size=args.batch_size,
                    ray_partition_files=args.partition_files)
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), num_gpus=args.gpus, include_dashboard=False, log_to_driver=False)
    print(f"Ray started in {time.perf_counter() - started:.1f} s", file=sys.stderr)

    seconds = {"local": [], "ray": []}
    rates, firsts, ray_line = [], [], ""
    for round_ in range(args.rounds):
        order = ("local", "ray") if round_ % 2 == 0 else ("ray", "local")
        for runner in order:
            settings = base.override(home=work / f"home-{runner}", runner=runner)
            elapsed, line = one_run(settings, folder)
            seconds[runner].append(elapsed)
            if runner == "ray":
                ray_line = line.splitlines()[-1]
                rates.append(float(re.search(r"([\d.]+) files/s per encoder", ray_line)[1]))
                firsts.append(float(re.search(r"the first back after ([\d.]+) s", ray_line)[1]))
            print(f"round {round_ + 1} {runner}: {elapsed:.1f} s", file=sys.stderr)
    ray.shutdown()

    cores = os.cpu_count()
    print(f"{args.images} JPEGs 1024x768, {args.model} on {args.device} ({cores} cores"
          f"{f', {args.gpus} GPUs' if args.gpus else ''}), partitions of {args.partition_files} files, "
          f"{args.rounds} interleaved rounds")
    print(f"{'':36}{'best':>8}{'median':>8}")
    for runner in ("local", "ray"):
        values = seconds[runner]
        print(f"{'seconds, --runner ' + runner:36}{min(values):8.1f}{statistics.median(values):8.1f}")
    ratios = [r / l for r, l in zip(seconds["ray"], seconds["local"])]
    print(f"{'ray / local (per round)':36}{min(ratios):8.2f}{statistics.median(ratios):8.2f}")
    print(f"{'images/s, local (whole run)':36}{args.images / min(seconds['local']):8.1f}"
          f"{args.images / statistics.median(seconds['local']):8.1f}")
    print(f"{'images/s, ray (whole run)':36}{args.images / min(seconds['ray']):8.1f}"
          f"{args.images / statistics.median(seconds['ray']):8.1f}")
    print(f"{'images/s per encoder actor (embed)':36}{max(rates):8.1f}{statistics.median(rates):8.1f}")
    print(f"{'s to the first partition back':36}{min(firsts):8.1f}{statistics.median(firsts):8.1f}")
    # Past the start-up (workers starting, each actor loading the model), the steady-state cost.
    steady = [(r - f) / l for r, f, l in zip(seconds["ray"], firsts, seconds["local"])]
    print(f"{'(ray - first partition) / local':36}{min(steady):8.2f}{statistics.median(steady):8.2f}")
    print(f"last Ray run: {ray_line}")


if __name__ == "__main__":
    main()
