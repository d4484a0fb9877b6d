"""Indexer images/s against the model-only forward rate on the same images, in one run.

    python benchmarks/index_throughput.py [--images 256] [--rounds 3] [--model ViT-B-32]

The model runs with random weights (throughput does not depend on their values). Each round
times A, the encoder alone on already-decoded batches, and B, a full `spyglass index` of the
folder into a fresh catalog (scan, read, hash, decode, resize, embed, SQL, FAISS publish),
interleaved so that both see the same machine. Prints best and median of each and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from spyglass.indexer.decode import load_file  # noqa: E402
from spyglass.search.media_files import MediaRoots  # noqa: E402
from spyglass.indexer.jobs import IndexJob  # noqa: E402
from spyglass.indexer.scan import FoundFile, walk  # noqa: E402
from spyglass.search.encoder import load_encoder  # noqa: E402
from spyglass.search.settings import Settings  # noqa: E402


def make_jpegs(folder: Path, count: int, size: tuple[int, int]) -> None:
    """Photo-like JPEGs: gradients, noise and shapes, each different."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(count):
        base = rng.integers(0, 255, 3)
        pixels = (base + 80 * np.sin(xx[..., None] / (20 + i % 17) + yy[..., None] / 31)
                  + rng.normal(0, 12, (h, w, 3)))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(5):
            x0, y0 = int(rng.integers(0, w - 50)), int(rng.integers(0, h - 50))
            draw.ellipse([x0, y0, x0 + int(rng.integers(20, w // 3)), y0 + int(rng.integers(20, h // 3))],
                         fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        image.save(folder / f"photo_{i:05d}.jpg", quality=88)


def model_only_rate(encoder, batches) -> float:
    """Images/s of encode_pixels over pre-decoded batches."""
    started = time.perf_counter()
    count = 0
    for batch in batches:
        encoder.encode_pixels(batch)
        count += len(batch)
    return count / (time.perf_counter() - started)


def indexer_rate(encoder, settings: Settings, folder: Path, work: Path, round_no: int) -> float:
    """Images/s of a whole index run into a fresh catalog."""
    home = work / f"home-{round_no}"
    job = IndexJob(settings.override(home=home, database_url=None), [str(folder)],
                   encoder=encoder, progress=False, echo=lambda _: None)
    started = time.perf_counter()
    summary = job.run()
    elapsed = time.perf_counter() - started
    assert summary.added == len(list(folder.glob("*.jpg"))), summary.line()
    return summary.added / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=Settings().decode_workers)
    parser.add_argument("--size", default="1600x1200", help="JPEG size, WxH")
    args = parser.parse_args()

    import torch

    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="spyglass-bench-") as tmp:
        work = Path(tmp)
        folder = work / "media"
        print(f"making {args.images} JPEGs of {w}x{h} ...", flush=True)
        make_jpegs(folder, args.images, (w, h))
        torch.manual_seed(0)
        encoder = load_encoder(args.model, None, device="cpu")
        settings = Settings(home=work / "home", model=args.model, pretrained="", device="cpu",
                            batch_size=args.batch_size, decode_workers=args.workers)
        files = [f for f in walk(folder) if isinstance(f, FoundFile)]
        load = partial(load_file, preprocess=encoder.preprocess, max_pixels=settings.max_image_pixels,
                       draft_size=encoder.image_size, wants_pixels=lambda *_: True,
                       media=MediaRoots.of([str(folder)], settings))
        pixels = [load(f).pixels for f in files]
        batches = [torch.stack(pixels[i:i + args.batch_size]) for i in range(0, len(pixels), args.batch_size)]
        model_only_rate(encoder, batches[:1])  # warm-up

        model_rates, index_rates = [], []
        for round_no in range(args.rounds):
            model_rates.append(model_only_rate(encoder, batches))
            index_rates.append(indexer_rate(encoder, settings, folder, work, round_no))
            print(f"round {round_no + 1}: model-only {model_rates[-1]:.1f} img/s, "
                  f"indexer {index_rates[-1]:.1f} img/s", flush=True)

    print(f"\n{args.model}, {args.images} JPEGs {w}x{h}, batch {args.batch_size}, "
          f"{args.workers} decode threads, torch threads {torch.get_num_threads()}")
    print(f"{'':12}{'best':>10}{'median':>10}  (images/s)")
    print(f"{'model-only':12}{max(model_rates):>10.1f}{statistics.median(model_rates):>10.1f}")
    print(f"{'indexer':12}{max(index_rates):>10.1f}{statistics.median(index_rates):>10.1f}")
    print(f"{'ratio':12}{max(index_rates) / max(model_rates):>10.2f}"
          f"{statistics.median(index_rates) / statistics.median(model_rates):>10.2f}")


if __name__ == "__main__":
    main()
