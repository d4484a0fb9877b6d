"""Clustered unit vectors, shaped like image embeddings: uneven clusters of low intrinsic dimension."""

import numpy as np


def clustered_vectors(count: int, dim: int, clusters: int = 100, spread: float = 0.5,
                      intrinsic: int = 16, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """`count` unit float32 vectors around `clusters` random centres of uneven sizes.

    Within a cluster, vectors vary along a few random directions of its own (`intrinsic` of
    them) plus a little noise in every direction: embeddings of photos vary along few factors
    (pose, light, background), not as isotropic noise, which no index could organise.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    bases = rng.normal(size=(clusters, intrinsic, dim)).astype(np.float32) / np.sqrt(dim)
    weights = rng.pareto(1.5, clusters) + 1
    members = rng.choice(clusters, size=count, p=weights / weights.sum())
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 50_000):  # bounded temporaries at 10 M x 512
        part = members[start:start + 50_000]
        factors = rng.normal(scale=spread / np.sqrt(intrinsic), size=(len(part), intrinsic)).astype(np.float32)
        chunk = centres[part] + rng.normal(scale=noise / np.sqrt(dim), size=(len(part), dim)).astype(np.float32)
        for cluster in np.unique(part):
            rows = part == cluster
            chunk[rows] += factors[rows] @ bases[cluster]
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start:start + len(part)] = chunk
    return out
