"""`spyglass eval`: how well a model retrieves (or labels) a captioned (or class-folder) image set.

It embeds the set with the model it is given and never touches the catalog or the live index.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Sequence

import numpy as np
from tqdm import tqdm

from spyglass.search.display import printable
from spyglass.search.errors import SpyglassError
from spyglass.search.model.encoder import Encoder
from spyglass.search.media.images import decode_gate, decode_image
from spyglass.search.model.zero_shot import DEFAULT_TEMPLATES, LabelSet, classify, label_vectors
from spyglass.search.media.files import read_regular_file

from .datasets import Dataset
from .metrics import classification_metrics, retrieval_metrics


@dataclass
class EvalReport:
    """The metrics of one model on one set, and what went into them."""

    metrics: dict
    images: int
    captions: int = 0
    classes: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict:
        """open_clip's metric names, and the counts."""
        return {**self.metrics, "images": self.images, "captions": self.captions, "classes": self.classes,
                "skipped": len(self.skipped), "seconds": round(self.seconds, 2)}

    def lines(self) -> list[str]:
        """The report for people."""
        lines = [f"{self.images:,} images" + (f", {self.captions:,} captions" if self.captions else "")
                 + (f", {self.classes:,} classes" if self.classes else "")
                 + (f" ({len(self.skipped):,} skipped)" if self.skipped else "")]
        for direction in ("text_to_image", "image_to_text"):
            if f"{direction}_R@1" in self.metrics:
                m = {k.removeprefix(direction + "_"): v for k, v in self.metrics.items() if k.startswith(direction)}
                lines.append(f"{direction.replace('_', ' ')}: R@1 {m['R@1']:.3f}  R@5 {m['R@5']:.3f}  "
                             f"R@10 {m['R@10']:.3f}  mean rank {m['mean_rank']:.1f}  median rank {m['median_rank']:.0f}")
        if "accuracy" in self.metrics:
            m = self.metrics
            lines.append(f"zero-shot: accuracy {m['accuracy']:.3f}  macro precision {m['macro_precision']:.3f}  "
                         f"macro recall {m['macro_recall']:.3f}  macro F1 {m['macro_f1']:.3f}")
        return lines


def embed_image_files(encoder: Encoder, paths: Sequence[str], batch_size: int, workers: int, max_pixels: int,
                      max_bytes: int, gate_bytes: int, progress: bool = True, desc: str = "Embedding"
                      ) -> tuple[np.ndarray, list[int], list[str]]:
    """Unit vectors of the images that decode, the indices (into paths) they belong to, and the
    problems of the rest ('path: reason'). Images are read and decoded by `workers` threads, a
    batch at a time, while the encoder embeds the batch before."""
    import torch

    load = partial(_pixels, preprocess=encoder.preprocess, draft_size=encoder.image_size, max_pixels=max_pixels,
                   max_bytes=max_bytes, gate=decode_gate(gate_bytes))
    vectors, kept, problems = [], [], []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spyglass-eval-decode") as pool, \
            tqdm(total=len(paths), unit="img", desc=desc, file=sys.stderr, disable=not progress, leave=False) as bar:
        batches = [range(start, min(start + batch_size, len(paths))) for start in range(0, len(paths), batch_size)]
        decoded = pool.map(lambda batch: [load(paths[i]) for i in batch], batches)  # one batch ahead
        for batch, results in zip(batches, decoded):
            pixels = []
            for i, result in zip(batch, results):
                if isinstance(result, str):
                    problems.append(f"{paths[i]}: {result}")
                else:
                    pixels.append(result)
                    kept.append(i)
            if pixels:
                vectors.append(encoder.encode_pixels(torch.stack(pixels)))
            bar.update(len(batch))
    return (np.concatenate(vectors) if vectors else np.zeros((0, encoder.dim), np.float32)), kept, problems


def _pixels(path: str, preprocess, draft_size: int, max_pixels: int, max_bytes: int, gate):
    """The model input of one image, or why it cannot be had."""
    try:
        decoded = decode_image(read_regular_file(path, max_bytes), max_pixels, draft_size=draft_size, gate=gate)
        return preprocess(decoded.image)
    except SpyglassError as exc:
        return str(exc)


def embed_texts(encoder: Encoder, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """Unit vectors of texts, in batches."""
    chunks = range(0, len(texts), batch_size)
    out = [encoder.encode_texts(list(texts[i:i + batch_size]))
           for i in tqdm(chunks, desc="Captions", unit="batch", file=sys.stderr, disable=not progress, leave=False)]
    return np.concatenate(out) if out else np.zeros((0, encoder.dim), np.float32)


def evaluate(dataset: Dataset, encoder: Encoder, settings, templates: Sequence[str] | None = None,
             progress: bool = True) -> EvalReport:
    """Embed the set and measure: retrieval for captioned sets, zero-shot labelling for class folders."""
    started = time.monotonic()
    device = encoder.device
    vectors, kept, failed = embed_image_files(
        encoder, [e.image for e in dataset.examples], settings.batch_for(device), settings.workers_for(device),
        settings.max_image_pixels, settings.max_file_bytes, settings.decode_memory, progress)
    skipped = list(dataset.skipped) + failed
    examples = [dataset.examples[i] for i in kept]
    if not examples:
        raise_nothing_left(dataset, skipped)
    if dataset.kind == "classes":
        label_set = LabelSet(tuple(dataset.labels), tuple(templates) if templates else DEFAULT_TEMPLATES)
        predicted = classify(vectors, label_vectors(encoder, label_set))
        truth = np.array([label_set.labels.index(e.label) for e in examples])
        metrics = classification_metrics(predicted, truth, len(label_set.labels))
        return EvalReport(metrics, len(examples), classes=len(label_set.labels), skipped=skipped,
                          seconds=time.monotonic() - started)
    captions = [c for e in examples for c in e.captions]
    owner = np.array([i for i, e in enumerate(examples) for _ in e.captions])
    metrics = retrieval_metrics(vectors, embed_texts(encoder, captions, progress=progress), owner)
    return EvalReport(metrics, len(examples), captions=len(captions), skipped=skipped,
                      seconds=time.monotonic() - started)


def raise_nothing_left(dataset: Dataset, skipped: list[str]) -> None:
    """No image of the set could be read."""
    from spyglass.search.errors import ConfigError

    raise ConfigError(f"none of the {len(dataset.examples):,} images of {printable(dataset.source)} could be "
                      f"read (last problem: {skipped[-1] if skipped else 'none'})")
