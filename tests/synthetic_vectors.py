"""Clustered unit vectors, shaped like image embeddings (many near neighbours, uneven clusters)."""

import numpy as np


def clustered_vectors(count: int, dim: int, clusters: int = 100, spread: float = 0.35,
                      seed: int = 0) -> np.ndarray:
    """`count` unit float32 vectors around `clusters` random centres of uneven sizes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    weights = rng.pareto(1.5, clusters) + 1
    members = rng.choice(clusters, size=count, p=weights / weights.sum())
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 100_000):  # bounded temporaries at 10 M x 512
        part = members[start:start + 100_000]
        noise = rng.normal(scale=spread / np.sqrt(dim), size=(len(part), dim)).astype(np.float32)
        chunk = centres[part] + noise
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start:start + len(part)] = chunk
    return out
