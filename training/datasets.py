"""Captioned and labelled image sets for `spyglass eval` and `spyglass finetune`, read from three layouts.

- a CSV/TSV file with an image column and a caption column (open_clip's `filepath` and `title`
  by default; paths relative to the file);
- a folder where `x.jpg` has a sidecar `x.txt`, one caption per line;
- class folders, `root/<label>/*.jpg` (torchvision's ImageFolder layout).

Anything unusable is skipped with the file and line that hold it, and counted; only a set with
nothing left is an error.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from spyglass.search.display import printable
from spyglass.search.errors import ConfigError

from spyglass.search.media.images import IMAGE_EXTENSIONS

# open_clip's training defaults (its --csv-img-key / --csv-caption-key).
IMAGE_KEY = "filepath"
CAPTION_KEY = "title"
MAX_CAPTION_CHARS = 1000


@dataclass(frozen=True)
class Example:
    """One image with its captions (captioned sets) or its label (class folders)."""

    image: str
    captions: tuple[str, ...] = ()
    label: str | None = None


@dataclass
class Dataset:
    """The usable examples of a set, and what was skipped, each with where and why."""

    source: str
    kind: str  # "captions" or "classes"
    examples: list[Example] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        """The class names, sorted (class folders only)."""
        return sorted({e.label for e in self.examples if e.label is not None})

    def skip(self, where: str, reason: str) -> None:
        """Remember one unusable entry."""
        self.skipped.append(f"{printable(where)}: {reason}")

    def require_examples(self) -> "Dataset":
        """The set itself, or ConfigError when nothing in it can be used."""
        if not self.examples:
            first = f"; first problem: {self.skipped[0]}" if self.skipped else ""
            raise ConfigError(f"no usable images with {'labels' if self.kind == 'classes' else 'captions'} "
                              f"in {printable(self.source)} ({len(self.skipped)} skipped{first})",
                              "give a CSV/TSV with filepath and title columns, a folder of images with "
                              ".txt captions beside them, or class folders")
        return self


def load_dataset(path: str | os.PathLike, image_key: str = IMAGE_KEY, caption_key: str = CAPTION_KEY,
                 separator: str | None = None) -> Dataset:
    """Read a data set in any of the three layouts; which one is told by what path is."""
    source = Path(path).expanduser()
    if source.is_file():
        return _from_table(source, image_key, caption_key, separator).require_examples()
    if not source.is_dir():
        raise ConfigError(f"no such data set: {printable(str(source))}", "give a CSV/TSV file or a folder")
    images = [p for p in sorted(source.rglob("*")) if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if any(p.with_suffix(".txt").is_file() for p in images):
        return _from_sidecars(source, images).require_examples()
    return _from_class_folders(source, images).require_examples()


def _from_table(table: Path, image_key: str, caption_key: str, separator: str | None) -> Dataset:
    dataset = Dataset(str(table), "captions")
    separator = separator or ("\t" if table.suffix.lower() in (".tsv", ".tab") else ",")
    by_image: dict[str, list[str]] = {}
    try:
        with open(table, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter=separator)
            missing = [key for key in (image_key, caption_key) if key not in (reader.fieldnames or [])]
            if missing:
                raise ConfigError(
                    f"{printable(str(table))}: no column {' or '.join(repr(m) for m in missing)} "
                    f"(the columns are {', '.join(repr(c) for c in reader.fieldnames or []) or 'none'})",
                    "name them with --image-key and --caption-key, or set --separator")
            for row in reader:
                where = f"{table}:{reader.line_num}"
                image, caption = (row.get(image_key) or "").strip(), _caption(row.get(caption_key))
                if not image:
                    dataset.skip(where, "no image path")
                elif caption is None:
                    dataset.skip(where, "empty caption")
                else:
                    resolved = str((table.parent / image).resolve())
                    if not os.path.isfile(resolved):
                        dataset.skip(where, f"no such image {printable(image)}")
                    else:
                        by_image.setdefault(resolved, []).append(caption)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{printable(str(table))} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ConfigError(f"{printable(str(table))}: not a readable CSV/TSV: {exc}") from None
    dataset.examples = [Example(image, tuple(captions)) for image, captions in by_image.items()]
    return dataset


def _from_sidecars(root: Path, images: list[Path]) -> Dataset:
    dataset = Dataset(str(root), "captions")
    for image in images:
        sidecar = image.with_suffix(".txt")
        if not sidecar.is_file():
            dataset.skip(str(image), "no caption file beside it (" + sidecar.name + ")")
            continue
        try:
            lines = sidecar.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            dataset.skip(str(sidecar), f"unreadable caption file: {exc}")
            continue
        captions = []
        for number, line in enumerate(lines, start=1):
            caption = _caption(line)
            if caption is None:
                if line.strip() == "" and number > 1:
                    continue  # a blank line between captions
                dataset.skip(f"{sidecar}:{number}", "empty caption")
            else:
                captions.append(caption)
        if captions:
            dataset.examples.append(Example(str(image), tuple(captions)))
        elif not lines:
            dataset.skip(str(sidecar), "empty caption file")
    return dataset


def _from_class_folders(root: Path, images: list[Path]) -> Dataset:
    dataset = Dataset(str(root), "classes")
    for image in images:
        relative = image.relative_to(root)
        if len(relative.parts) < 2:
            dataset.skip(str(image), "not inside a class folder (root/<label>/image)")
            continue
        dataset.examples.append(Example(str(image), label=relative.parts[0]))
    if len(dataset.labels) == 1:
        dataset.skip(str(root), f"only one class folder ({dataset.labels[0]}): nothing to tell apart")
        dataset.examples = []
    return dataset


def _caption(value: str | None) -> str | None:
    text = " ".join((value or "").split())
    return text[:MAX_CAPTION_CHARS] if text else None
