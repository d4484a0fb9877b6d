"""Exact vectors in float32 and float16: bytes on disk, exact-search latency and agreement, interleaved.

    python benchmarks/vector_storage.py [--items 300000] [--dim 512] [--queries 50] [--rounds 3]

Writes one segment of random unit vectors (ViT-B-32's 512 dimensions) in each storage through the
store the indexer uses (SegmentedStore), memory-maps it back as a serving worker does, and times
single-query exact searches, the two storages alternating in every round. Reports bytes per
vector, best and median p50 latency, recall@10 of float16 against float32's exact top 10, and
the lowest cosine of a stored float16 vector to its float32 original.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from spyglass.search.store.segmented import SegmentedStore

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.items, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = np.arange(args.items, dtype=np.int64)
    # Queries near stored vectors, as a query near its best matches is.
    queries = vectors[rng.choice(args.items, args.queries, replace=False)] + rng.normal(
        0, 0.05, (args.queries, args.dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory(prefix="spyglass-storage-") as tmp:
        stores, sizes = {}, {}
        for storage in ("float32", "float16"):
            store = SegmentedStore.empty(args.dim, storage)
            store.add(ids, vectors)
            base, manifest, _ = store.write(Path(tmp) / storage)
            sizes[storage] = base.size
            stores[storage] = SegmentedStore.load(Path(tmp) / storage, base, manifest, mmap=True)
        latency: dict[str, list[float]] = {s: [] for s in stores}
        for round_no in range(args.rounds):
            order = list(stores) if round_no % 2 == 0 else list(reversed(stores))
            for storage in order:
                times = []
                for query in queries:
                    started = time.perf_counter()
                    stores[storage].search(query[None], 10)
                    times.append(time.perf_counter() - started)
                latency[storage].append(statistics.median(times) * 1000)
        _, exact = stores["float32"].search(queries, 10)
        _, half = stores["float16"].search(queries, 10)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, half)])
        sample = ids[:: max(1, args.items // 5000)]
        stored = stores["float16"].vectors(sample)
        cosine = np.sum(stored * vectors[sample], axis=1) / np.linalg.norm(stored, axis=1)

    print(f"{args.items:,} unit vectors of {args.dim} dimensions, {args.queries} single-query exact searches "
          f"a round, {args.rounds} rounds interleaved")
    for storage in stores:
        print(f"{storage}: {sizes[storage] / 1e6:,.1f} MB on disk, {sizes[storage] / args.items:,.0f} bytes per "
              f"vector; p50 {min(latency[storage]):.1f} ms best, {statistics.median(latency[storage]):.1f} ms median")
    print(f"float16 / float32 bytes: {sizes['float16'] / sizes['float32']:.3f}; recall@10 of float16 against "
          f"float32's exact top 10: {recall:.4f}; lowest cosine of a stored float16 vector to its original "
          f"({len(sample):,} sampled): {cosine.min():.6f}")


if __name__ == "__main__":
    main()
