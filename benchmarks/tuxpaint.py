"""Real captioned images nobody here wrote: Debian's tuxpaint-stamps-default, about 800 stamps with
an English caption each, trained on from scratch by `spyglass finetune` and measured on held-out stamps.

    python benchmarks/tuxpaint.py [--work demo] [--stamps DIR] [--epochs 60] [--seed 0]

Finds the stamps (DIR, /usr/share/tuxpaint/stamps, or WORK/tuxpaint after an `apt-get download`
of the package into WORK, which needs no root), writes WORK/stamps.csv (filepath, title: the
first, English, line of each stamp's .txt), trains benchmarks/small-clip.json from random
weights into WORK/model, and prints held-out recall before and after and the time it took.
Each stamp has two captions: its English description and its name with its folders
("apple granny smith (food, fruit)"). `make demo` runs this, then indexes the stamps with the
model and serves the search page.
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from spyglass.training.datasets import load_dataset  # noqa: E402
from spyglass.training.finetune import FinetuneOptions, finetune  # noqa: E402
from spyglass.search.settings import Settings  # noqa: E402

PACKAGE = "tuxpaint-stamps-default"
SYSTEM_STAMPS = Path("/usr/share/tuxpaint/stamps")
ARCHITECTURE = ROOT / "benchmarks" / "small-clip.json"
_TRANSLATION = re.compile(r"^[A-Za-z_@]+\.utf8=")


def find_stamps(work: Path, given: Path | None) -> Path:
    """The stamps folder: the one given, the installed package's, or one unpacked into work."""
    for candidate in (given, SYSTEM_STAMPS, work / "tuxpaint" / "usr/share/tuxpaint/stamps"):
        if candidate is not None and candidate.is_dir():
            return candidate
    work.mkdir(parents=True, exist_ok=True)
    print(f"downloading {PACKAGE} (about 160 MB) into {work} ...", flush=True)
    subprocess.run(["apt-get", "download", PACKAGE], cwd=work, check=True)
    deb = next(work.glob(f"{PACKAGE}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "tuxpaint")], check=True)
    deb.unlink()
    return work / "tuxpaint" / "usr/share/tuxpaint/stamps"


def english_caption(text_file: Path) -> str | None:
    """A stamp's description: the first line that is not a translation (`xx.utf8=...`)."""
    for line in text_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip() and not _TRANSLATION.match(line):
            return " ".join(line.split())
    return None


def name_caption(image: Path, stamps: Path) -> str:
    """The stamp's own name and its folders, as words: 'apple red (food, fruit)'."""
    words = " ".join(re.split(r"[_\-\s]+", image.stem)).strip()
    folders = [p for p in image.relative_to(stamps).parent.parts if p not in ("cartoon", "filled", "outline")]
    return f"{words} ({', '.join(folders)})" if folders else words


def write_table(stamps: Path, table: Path) -> int:
    """filepath,title rows: every PNG stamp with an English description, and its name as a second caption.

    The descriptions are whole sentences ("A Granny Smith apple."); the names ("apple granny
    smith (food, fruit)") teach the short queries people type. Returns how many stamps.
    """
    rows, count = [], 0
    for image in sorted(stamps.rglob("*.png")):
        caption = english_caption(image.with_suffix(".txt")) if image.with_suffix(".txt").is_file() else None
        if caption:
            rows += [(str(image), caption), (str(image), name_caption(image, stamps))]
            count += 1
    table.parent.mkdir(parents=True, exist_ok=True)
    with open(table, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filepath", "title"])
        writer.writerows(rows)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("demo"))
    parser.add_argument("--stamps", type=Path)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work.resolve()
    stamps = find_stamps(work, args.stamps)
    work.mkdir(parents=True, exist_ok=True)
    link = work / "stamps"
    if not link.exists():
        link.symlink_to(stamps, target_is_directory=True)
    count = write_table(stamps, work / "stamps.csv")
    print(f"{count} captioned stamps from {stamps}", flush=True)
    settings = Settings(home=work / "home", model=str(ARCHITECTURE), pretrained="", device="auto")
    started = time.monotonic()
    result = finetune(load_dataset(work / "stamps.csv"), settings,
                      FinetuneOptions(out=work / "model", mode="from-scratch", epochs=args.epochs, seed=args.seed,
                                      force=True), echo=print)
    minutes = (time.monotonic() - started) / 60
    print(f"\ntuxpaint stamps: {result.train_images} trained on, {result.val_images} held out; "
          f"small-clip from scratch, seed {args.seed}, best epoch {result.best_epoch}, {minutes:.1f} min")
    print("| held-out | R@1 | R@5 | R@10 | image-to-text R@5 |")
    print("|---|---|---|---|---|")
    for name, metrics in (("untrained", result.before), ("trained", result.after)):
        print(f"| {name} | {metrics['text_to_image_R@1']:.3f} | {metrics['text_to_image_R@5']:.3f} | "
              f"{metrics['text_to_image_R@10']:.3f} | {metrics['image_to_text_R@5']:.3f} |")


if __name__ == "__main__":
    main()
