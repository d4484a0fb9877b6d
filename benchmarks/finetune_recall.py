"""Held-out recall of a dual encoder trained from scratch by `spyglass finetune`, with the defaults alone.

    python benchmarks/finetune_recall.py [--images 2000] [--seeds 0 1 2] [--minutes 10]

Renders --images pictures with compositional captions (shape, colour, size, background,
position: tests/captioned_shapes.py), trains the tests' tiny architecture at 64 pixels from
random weights for each seed with the default schedule (only --epochs is chosen, to fit the
time budget), and prints held-out text-to-image R@1/R@5/R@10 before and after, the time each run
took and whether it reached R@5 >= 0.8 within --minutes. On a GPU it trains there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from captioned_shapes import make_set  # noqa: E402

from spyglass.training.datasets import load_dataset  # noqa: E402
from spyglass.training.finetune import FinetuneOptions, finetune  # noqa: E402
from spyglass.search.settings import Settings  # noqa: E402

TINY_AT_64 = {"embed_dim": 32,
              "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
              "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=60, help="at most; early stopping may end sooner")
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        table = make_set(work / "set", args.images, seed=1234)
        config = work / "tiny-clip-64.json"
        config.write_text(json.dumps(TINY_AT_64))
        settings = Settings(home=work / "home", model=str(config), pretrained="", device="auto")
        dataset = load_dataset(table)
        rows = []
        for seed in args.seeds:
            started = time.monotonic()
            result = finetune(dataset, settings, FinetuneOptions(out=work / f"model-{seed}", mode="from-scratch",
                                                                 epochs=args.epochs, seed=seed, progress=False),
                              echo=lambda m: None)
            seconds = time.monotonic() - started
            reached = next((e for e in result.epochs if e["text_to_image_R@5"] >= 0.8), None)
            rows.append((seed, result, seconds, reached))
            print(f"seed {seed}: R@5 {result.before['text_to_image_R@5']:.3f} -> {result.after['text_to_image_R@5']:.3f} "
                  f"(R@1 {result.after['text_to_image_R@1']:.3f}, R@10 {result.after['text_to_image_R@10']:.3f}) "
                  f"in {seconds / 60:.1f} min, {len(result.epochs)} epochs; R@5 >= 0.8 "
                  + (f"at epoch {reached['epoch']}" if reached else "never"), flush=True)
    print(f"\n{args.images} images ({result.train_images} trained on, {result.val_images} held out), tiny architecture at 64 px")
    print("| seed | R@5 before | R@5 after | R@1 after | R@10 after | minutes | R@5 >= 0.8 within budget |")
    print("|---|---|---|---|---|---|---|")
    for seed, result, seconds, reached in rows:
        within = bool(reached) and seconds / 60 <= args.minutes
        print(f"| {seed} | {result.before['text_to_image_R@5']:.3f} | {result.after['text_to_image_R@5']:.3f} | "
              f"{result.after['text_to_image_R@1']:.3f} | {result.after['text_to_image_R@10']:.3f} | {seconds / 60:.1f} | "
              f"{'yes' if within else 'no'} |")


if __name__ == "__main__":
    main()
