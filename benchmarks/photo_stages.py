"""What reading photo facts and making thumbnails at index time add to `spyglass index`.

    python benchmarks/photo_stages.py [--images 120] [--rounds 3]

One folder of photo-like JPEGs of mixed sizes (640 px to 4000 px, tests/photo_corpus.py) with EXIF
dates, cameras and GPS written into each, one ViT-B-32 checkpoint with random weights (speed does
not depend on the weights), and `spyglass index` into a fresh catalog, in turn with
SPYGLASS_INDEX_THUMBNAILS=1 (the default) and =0, interleaved for several rounds. Prints the
whole-job times (best and median of each), their ratio, and the facts line of the run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from timed_index import timed_index  # noqa: E402


def write_library(folder: Path, count: int) -> None:
    """The corpus, each JPEG given EXIF facts (as a phone writes them)."""
    from PIL import Image

    from photo_corpus import write_corpus
    from test_photo_facts import exif_block

    for number, path in enumerate(write_corpus(folder, count)):
        with Image.open(path) as image:
            image.load()
            exif = exif_block(taken=f"2023:07:{1 + number % 28:02d} 12:00:00", offset="+02:00", make="Apple",
                              model="iPhone 15", position=(48.85 + number / 1000, 2.29))
            image.save(path, "JPEG", quality=90, exif=exif)


def run(folder: Path, home: Path, checkpoint: Path, thumbnails: bool) -> tuple[float, str]:
    """(whole-job seconds, the run's facts line) with thumbnails made by the run or not."""
    elapsed, output = timed_index(folder, home, checkpoint, PRECISION="fp32", OCR="off",
                                  INDEX_THUMBNAILS="1" if thumbnails else "0")
    facts = re.search(r"Photo facts: [^\n]*", output)
    return elapsed, facts[0] if facts else "no facts line"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import open_clip
    import torch

    work = Path(tempfile.mkdtemp(prefix="spyglass-photo-stages-"))
    try:
        folder = work / "photos"
        write_library(folder, args.images)
        checkpoint = work / "vit-b-32.pt"
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), checkpoint)
        times: dict[bool, list[float]] = {True: [], False: []}
        line = ""
        for round_number in range(args.rounds):
            for thumbnails in (True, False) if round_number % 2 == 0 else (False, True):
                seconds, facts = run(folder, work / "home", checkpoint, thumbnails)
                times[thumbnails].append(seconds)
                line = facts
                print(f"round {round_number + 1}: thumbnails {'on ' if thumbnails else 'off'} {seconds:6.1f} s",
                      flush=True)
        print(f"\n{args.images} photo-like JPEGs (640-4000 px), ViT-B-32 fp32, {os.cpu_count()} cores, "
              f"{args.rounds} interleaved rounds; {line}")
        for thumbnails in (True, False):
            values = times[thumbnails]
            print(f"  index, thumbnails {'on ' if thumbnails else 'off'}: best {min(values):.1f} s, "
                  f"median {statistics.median(values):.1f} s")
        print(f"  ratio on/off: best {min(times[True]) / min(times[False]):.2f}, "
              f"median {statistics.median(times[True]) / statistics.median(times[False]):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
