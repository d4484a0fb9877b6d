"""Zero-shot labels: a list of label names and prompt templates, turned into one text vector per label.

A labels file (SPYGLASS_LABELS) has one label a line; lines starting `template:` give prompt
templates with `{label}` in them (default: "a photo of a {label}."); `#` starts a comment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from spyglass.search.display import printable
from spyglass.search.errors import ConfigError, MediaFileError
from spyglass.search.media.files import read_regular_file

DEFAULT_TEMPLATES = ("a photo of a {label}.",)
# The catalog_state row that says what the stored item labels were computed from.
LABELS_STATE_KEY = "labels"
MAX_LABELS = 10_000
MAX_LABELS_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class LabelSet:
    """Label names and the prompt templates that turn each into texts to embed."""

    labels: tuple[str, ...]
    templates: tuple[str, ...] = DEFAULT_TEMPLATES

    def __post_init__(self) -> None:
        if not self.labels:
            raise ConfigError("the label list is empty", "give one label a line")
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError("a label is listed twice", "give each label once")
        for template in self.templates:
            if "{label}" not in template:
                raise ConfigError(f"template {printable(template)!r} has no {{label}} in it",
                                  "write it as: template: a photo of a {label}.")

    @classmethod
    def read(cls, path: str | Path) -> "LabelSet":
        """Parse a labels file."""
        source = Path(path).expanduser()
        try:
            # A regular file of bounded size: /dev/zero or a FIFO must not hang the indexer under its lock.
            lines = read_regular_file(str(source), MAX_LABELS_BYTES).decode("utf-8").splitlines()
        except (MediaFileError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the labels file {printable(str(source))}: {exc}",
                              "set SPYGLASS_LABELS to a UTF-8 text file, one label a line") from None
        labels, templates = [], []
        for line in lines:
            text = line.split("#", 1)[0].strip()
            if text.lower().startswith("template:"):
                templates.append(text.split(":", 1)[1].strip())
            elif text and text not in labels:
                labels.append(text)
        if len(labels) > MAX_LABELS:
            raise ConfigError(f"{printable(str(source))} lists {len(labels):,} labels; the limit is {MAX_LABELS:,}")
        return cls(tuple(labels), tuple(templates) or DEFAULT_TEMPLATES)

    def prompts(self, label: str) -> list[str]:
        """The texts that stand for one label."""
        return [template.replace("{label}", label) for template in self.templates]

    def fingerprint(self) -> str:
        """Changes whenever a label or a template does."""
        text = "\n".join(self.labels) + "\n--\n" + "\n".join(self.templates)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def label_vectors(encoder, label_set: LabelSet, batch: int = 256) -> np.ndarray:
    """(labels, dim) unit vectors: each label's prompt embeddings averaged, as CLIP's zero-shot does."""
    prompts = [p for label in label_set.labels for p in label_set.prompts(label)]
    vectors = np.concatenate([encoder.encode_texts(prompts[i:i + batch]) for i in range(0, len(prompts), batch)])
    per_label = vectors.reshape(len(label_set.labels), len(label_set.templates), -1).mean(axis=1)
    return (per_label / np.linalg.norm(per_label, axis=1, keepdims=True)).astype(np.float32)


def top_labels(item_vectors: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For each item, its k best labels (indices into the label set) and their cosine scores."""
    scores = item_vectors @ weights.T
    k = min(k, weights.shape[0])
    best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    best_scores = np.take_along_axis(scores, best, axis=1)
    order = np.argsort(-best_scores, axis=1)
    return np.take_along_axis(best, order, axis=1), np.take_along_axis(best_scores, order, axis=1)


def classify(item_vectors: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The best label of each item."""
    return np.argmax(item_vectors @ weights.T, axis=1)


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """Templates given on a command line, checked like a labels file's."""
    return LabelSet(("x",), tuple(templates) or DEFAULT_TEMPLATES).templates
