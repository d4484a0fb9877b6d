"""`spyglass eval --modes`: recall@k of visual, words and hybrid search on a captioned set, through
the real indexer and engine, each caption a query whose answer is its image.

The images are linked (or copied) into a scratch library without their captions: a caption read
from a sidecar would find its own image by its words and measure nothing. What the words stage
reads there (file names, photo metadata, OCR, speech, as the settings say) is what words and
hybrid search have to go on.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

from spyglass.indexer.job import run_index
from spyglass.search.engine import SearchEngine
from spyglass.search.hybrid import MODES
from spyglass.search.settings import Settings
from spyglass.training.datasets import Dataset

KS = (1, 5, 10)


def _link(source: str, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or no hard links there
        shutil.copyfile(source, target)


def search_recall(dataset: Dataset, settings: Settings, echo: Callable[[str], None],
                  progress: bool = True) -> dict[str, dict[str, float]]:
    """{mode: {"R@1": ..., "R@5": ..., "R@10": ...}} over every caption of the set."""
    with tempfile.TemporaryDirectory(prefix="spyglass-eval-") as scratch:
        library = Path(scratch) / "library"
        library.mkdir()
        names = {}
        for number, example in enumerate(dataset.examples):
            # Its own name (words a user gave it), made unique by its number.
            name = f"{number:06d}_{os.path.basename(example.image)}"
            _link(example.image, library / name)
            names[name] = example
        local = replace(settings, home=Path(scratch) / "home", database_url=None, media="", labels=None)
        echo(f"indexing {len(names):,} images into a scratch catalog ...")
        run_index(local, [str(library)], progress=progress)
        engine = SearchEngine(local)
        try:
            found: dict[str, dict[str, float]] = {}
            for mode in MODES:
                ranks = []
                for name, example in names.items():
                    for caption in example.captions:
                        hits = engine.search_text(caption, k=max(KS), mode=mode).hits
                        ranked = [hit.item.relative_path for hit in hits]
                        ranks.append(ranked.index(name) + 1 if name in ranked else None)
                found[mode] = {f"R@{k}": sum(1 for r in ranks if r is not None and r <= k) / max(1, len(ranks))
                               for k in KS}
            return found
        finally:
            engine.close()
