"""Real captioned images nobody here wrote: Debian's tuxpaint-stamps-default, about 800 stamps with
an English caption each, trained on from scratch by `spyglass finetune` and measured on held-out stamps.

    python benchmarks/tuxpaint.py [--work demo] [--stamps DIR] [--epochs 60] [--seed 0] [--retrain]
                                  [--docs docs/install.md]

Finds the stamps (DIR, /usr/share/tuxpaint/stamps, or WORK/tuxpaint after an `apt-get download`
of the package into WORK, which needs no root), writes WORK/stamps.csv (filepath, title: the
first, English, line of each stamp's .txt), trains benchmarks/small-clip.json from random
weights into WORK/model, and prints held-out recall before and after and the time it took.
Each stamp has two captions: its English description and its name with its folders
("apple granny smith (food, fruit)"). A model already trained in WORK/model with the same seed
and epochs is reused (its metrics.json), unless --retrain. Then it asks the model the demo's
queries over every stamp and prints where the stamps they name rank; --docs rewrites the block
between the demo markers of that page with the tables, the machine and the date, so what the
docs say is this output. `make demo` runs this, then indexes the stamps and serves the page.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
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
# What the demo is asked, and the word in a stamp's name that makes it an answer.
# Each word names at least one stamp (most name a few): "car", "bird" and "fish" name none.
QUERIES = (("apple", "apple"), ("a dog", "dog"), ("a frog", "frog"), ("a penguin", "penguin"), ("a spider", "spider"),
           ("a lion", "lion"), ("a guitar", "guitar"), ("the moon", "moon"), ("a flower", "flower"))
MARKERS = ("<!-- demo:start (written by benchmarks/tuxpaint.py --docs) -->", "<!-- demo:end -->")


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


def trained(work: Path, seed: int, epochs: int) -> dict | None:
    """The metrics of a model this script already trained in WORK/model with this seed and epochs."""
    try:
        metrics = json.loads((work / "model" / "metrics.json").read_text())
        made = json.loads((work / "model" / "spyglass.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if made.get("seed") == seed and metrics.get("epochs_asked") == epochs else None


def ask(work: Path, stamps: Path) -> list[tuple[str, int | None, int, int, str]]:
    """For each demo query: the rank of the first stamp it names, how many of the first 5 it names,
    how many there are, and the first one's name."""
    import numpy as np
    from PIL import Image

    from spyglass.search.model.encoder import load_encoder

    encoder = load_encoder(str(ARCHITECTURE), str(work / "model"), device="cpu")
    images = sorted(p for p in stamps.rglob("*.png") if p.with_suffix(".txt").is_file())
    vectors = np.concatenate([encoder.encode_images([Image.open(p).convert("RGB") for p in images[i:i + 64]])
                              for i in range(0, len(images), 64)])
    names = [name_caption(p, stamps) for p in images]
    found = []
    for query, word in QUERIES:
        order = np.argsort(-(vectors @ encoder.encode_texts([query])[0]))
        relevant = [word in re.split(r"\W+", names[i].split(" (")[0]) for i in order]
        first = relevant.index(True) + 1 if any(relevant) else None
        found.append((query, first, sum(relevant[:5]), sum(relevant), images[order[first - 1]].name if first else ""))
    return found


def report(count: int, metrics: dict, answers, seed: int, minutes: float, reused: bool) -> str:
    """The tables the docs show, with where and when they were measured."""
    when = time.strftime("%Y-%m-%d")
    cpu = f"{os.cpu_count()} cores, {platform.machine()}"
    lines = [f"Measured by `python benchmarks/tuxpaint.py` on {when} ({cpu}; seed {seed}; training "
             f"{'reused, it took' if reused else 'took'} {minutes:.1f} min, early stopping kept epoch "
             f"{metrics['best_epoch']}), on the {metrics['val_images']} of {count} stamps it never saw:", "",
             "| held-out stamps | R@1 | R@5 | R@10 | image-to-text R@5 |", "|---|---|---|---|---|"]
    for name, values in (("untrained (random weights)", metrics["before"]), ("after `finetune --from-scratch`",
                                                                            metrics["after"])):
        lines.append(f"| {name} | {values['text_to_image_R@1']:.3f} | {values['text_to_image_R@5']:.3f} | "
                     f"{values['text_to_image_R@10']:.3f} | {values['image_to_text_R@5']:.3f} |")
    lines += ["", f"And over all {count} indexed stamps (most of them trained on), where the stamps a query names "
              "rank:", "", "| query | first one it names | of the first 5 | stamps it names |", "|---|---|---|---|"]
    for query, first, top5, total, name in answers:
        lines.append(f"| {query} | {f'{first} ({name})' if first else 'none'} | {top5} | {total} |")
    return "\n".join(lines)


def write_docs(page: Path, text: str) -> None:
    """Replace what lies between the demo markers of a docs page."""
    content = page.read_text()
    start, end = content.index(MARKERS[0]) + len(MARKERS[0]), content.index(MARKERS[1])
    page.write_text(content[:start] + "\n" + text + "\n" + content[end:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=Path("demo"))
    parser.add_argument("--stamps", type=Path)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retrain", action="store_true", help="Train again even if WORK/model holds this run's model.")
    parser.add_argument("--docs", type=Path, help="Write the results between this page's demo markers.")
    args = parser.parse_args()
    work = args.work.resolve()
    stamps = find_stamps(work, args.stamps)
    work.mkdir(parents=True, exist_ok=True)
    link = work / "stamps"
    if not link.exists():
        link.symlink_to(stamps, target_is_directory=True)
    count = write_table(stamps, work / "stamps.csv")
    print(f"{count} captioned stamps from {stamps}", flush=True)
    metrics = None if args.retrain else trained(work, args.seed, args.epochs)
    reused = metrics is not None
    if metrics is None:
        settings = Settings(home=work / "home", model=str(ARCHITECTURE), pretrained="", device="auto")
        finetune(load_dataset(work / "stamps.csv"), settings,
                          FinetuneOptions(out=work / "model", mode="from-scratch", epochs=args.epochs,
                                          seed=args.seed, force=True), echo=print)
        metrics_file = work / "model" / "metrics.json"
        metrics = json.loads(metrics_file.read_text())
        metrics["epochs_asked"] = args.epochs  # what `trained` matches a later run against
        metrics_file.write_text(json.dumps(metrics, indent=2))
    else:
        print(f"reusing the model trained in {work / 'model'} (--retrain trains again)", flush=True)
    text = report(count, metrics, ask(work, stamps), args.seed, metrics["seconds"] / 60, reused)
    print("\n" + text)
    (work / "demo-results.md").write_text(text + "\n")
    if args.docs:
        write_docs(args.docs, text)
        print(f"\nwritten into {args.docs}")


if __name__ == "__main__":
    main()
