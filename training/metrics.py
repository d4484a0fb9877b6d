"""Retrieval and classification metrics under open_clip's names, for many captions per image.

Text to image: each caption ranks every image; its rank is that of its own image. Image to
text: each image ranks every caption; its rank is that of its best-placed caption, so a hit at
k is any of its captions in the top k (as CLIP_benchmark counts). Ranks count the candidates
scoring strictly higher, so ties go the model's way. Keys: `text_to_image_R@1`,
`image_to_text_R@5`, `text_to_image_mean_rank`, `image_to_text_median_rank`, ... as open_clip's
training logs them, plus `accuracy` and `macro_precision` / `macro_recall` / `macro_f1`.
"""

from __future__ import annotations

import numpy as np

RECALL_AT = (1, 5, 10)
_CHUNK = 1024


def retrieval_metrics(image_vectors: np.ndarray, text_vectors: np.ndarray, text_image: np.ndarray) -> dict:
    """Both directions' R@1/5/10, mean and median rank; text_image[j] is the image of caption j."""
    text_image = np.asarray(text_image, dtype=np.int64)
    n_images = len(image_vectors)
    t2i = np.empty(len(text_vectors), dtype=np.int64)
    best_caption_score = np.full(n_images, -np.inf, dtype=np.float32)
    for start in range(0, len(text_vectors), _CHUNK):
        scores = text_vectors[start:start + _CHUNK] @ image_vectors.T  # (chunk, images)
        own = scores[np.arange(len(scores)), text_image[start:start + _CHUNK]]
        t2i[start:start + _CHUNK] = (scores > own[:, None]).sum(axis=1)
        np.maximum.at(best_caption_score, text_image[start:start + _CHUNK], own)
    i2t = np.zeros(n_images, dtype=np.int64)
    for start in range(0, n_images, _CHUNK):
        scores = image_vectors[start:start + _CHUNK] @ text_vectors.T  # (chunk, captions)
        i2t[start:start + _CHUNK] = (scores > best_caption_score[start:start + _CHUNK, None]).sum(axis=1)
    metrics = {}
    for name, ranks in (("image_to_text", i2t), ("text_to_image", t2i)):
        metrics[f"{name}_mean_rank"] = float(ranks.mean() + 1)
        metrics[f"{name}_median_rank"] = float(np.floor(np.median(ranks)) + 1)
        for k in RECALL_AT:
            metrics[f"{name}_R@{k}"] = float(np.mean(ranks < k))
    return metrics


def classification_metrics(predicted: np.ndarray, truth: np.ndarray, classes: int) -> dict:
    """Accuracy and macro precision, recall and F1 (a class never predicted has precision 0)."""
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    precision, recall, f1 = [], [], []
    for c in range(classes):
        tp = int(np.sum((predicted == c) & (truth == c)))
        fp = int(np.sum((predicted == c) & (truth != c)))
        fn = int(np.sum((predicted != c) & (truth == c)))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        precision.append(p)
        recall.append(r)
        f1.append(2 * p * r / (p + r) if p + r else 0.0)
    return {"accuracy": float(np.mean(predicted == truth)), "macro_precision": float(np.mean(precision)),
            "macro_recall": float(np.mean(recall)), "macro_f1": float(np.mean(f1))}


def headline(metrics: dict) -> float:
    """The one number that decides "better": text-to-image recall, the search this tool runs.

    The mean of R@1, R@5 and R@10, so that a model still improving at R@1 counts as improving
    after R@5 has reached 1 on a small held-out split.
    """
    return float(np.mean([metrics[f"text_to_image_R@{k}"] for k in RECALL_AT]))
