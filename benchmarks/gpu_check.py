"""GPU checks: the FAISS GPU copy answers as the CPU index does, under concurrent requests and past k=2048.

    python benchmarks/gpu_check.py [--vectors 1000000] [--threads 16] [--ivf-vectors 200000]

Flat: the same top 10 as the CPU for every query, from many threads at once, and batched QPS
on both. IVF (trained and tuned as `spyglass index` does it): the GPU copy of the approximate
index gives the same top 10 as its CPU copy at the tuned nprobe.

Needs a GPU and faiss with GPU support (`pip install -e '.[gpu]'`). Prints the figures and
exits 1 when the GPU answers differ from the CPU's or a concurrent search fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from spyglass.search.store.flat import GPU_MAX_K, GpuIndex, VectorIndex  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--ivf-vectors", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--queries", type=int, default=2000)
    args = parser.parse_args()

    import faiss

    gpus = faiss.get_num_gpus()
    print(f"faiss {faiss.__version__}, GPUs seen: {gpus}")
    if gpus == 0:
        print("no GPU: nothing to check")
        return 1
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.vectors, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cpu = VectorIndex.empty(args.dim)
    cpu.add(np.arange(1, args.vectors + 1, dtype=np.int64), vectors)
    started = time.perf_counter()
    device = cpu.on_search_device()
    print(f"copied {args.vectors:,} x {args.dim} to the GPU in {time.perf_counter() - started:.2f} s "
          f"({type(device).__name__})")
    assert isinstance(device, GpuIndex)

    queries = vectors[rng.integers(0, args.vectors, size=args.queries)]
    _, expected = cpu.search(queries, 10)
    failures, mismatches, latencies = [], 0, []

    def one(i: int):
        began = time.perf_counter()
        _, ids = device.search(queries[i:i + 1], 10)
        latencies.append(time.perf_counter() - began)
        return i, ids[0]

    with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
        for future in [pool.submit(one, i) for i in range(args.queries)]:
            try:
                i, ids = future.result()
                mismatches += int(set(ids.tolist()) != set(expected[i].tolist()))
            except Exception as exc:  # noqa: BLE001 - each failure is what this check counts
                failures.append(repr(exc))
    ms = sorted(x * 1000 for x in latencies)
    print(f"{args.queries} searches from {args.threads} threads: {len(failures)} failed, {mismatches} top-1 "
          f"sets of 10 differ from the CPU's; p50 {statistics.median(ms):.2f} ms, p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms")

    _, big = device.search(queries[:1], GPU_MAX_K * 2)
    _, big_cpu = cpu.search(queries[:1], GPU_MAX_K * 2)
    big_ok = big.shape[1] == GPU_MAX_K * 2 and (big == big_cpu).all()
    print(f"k={GPU_MAX_K * 2} (past the GPU's limit, answered by the CPU copy): {'same as CPU' if big_ok else 'DIFFERENT'}")

    for size in (256, 1024):
        batch = queries[:size]
        for name, index in (("cpu", cpu), ("gpu", device)):
            best = best_of_5(index, batch)
            print(f"Flat {name}: {size} queries in one call, best of 5: {best * 1000:.1f} ms "
                  f"= {size / best:,.0f} queries/s")
    ivf_ok = check_ivf(args)
    return 0 if not failures and mismatches == 0 and big_ok and ivf_ok else 1


def best_of_5(index, queries) -> float:
    """Seconds of the fastest of 5 batched searches for the top 10."""
    times = []
    for _ in range(5):
        began = time.perf_counter()
        index.search(queries, 10)
        times.append(time.perf_counter() - began)
    return min(times)


def check_ivf(args) -> bool:
    """An IVF index built and tuned by the indexer's own code answers alike on the GPU and the CPU."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from synthetic_vectors import clustered_vectors

    from spyglass.indexer.ann_build import build
    from spyglass.search.store.ann import AnnIndex

    vectors = clustered_vectors(args.ivf_vectors + 1000, args.dim)
    store = VectorIndex.empty(args.dim)
    store.add(np.arange(1, args.ivf_vectors + 1, dtype=np.int64), vectors[:args.ivf_vectors])
    built = build(store, "IVF1024,Flat", 0.95, print, progress=False)
    cpu = AnnIndex(built.ann.index, store, built.ann.params, exact_codes=True, duplicates=False)
    gpu = AnnIndex(built.ann.index, store, built.ann.params, exact_codes=True, duplicates=False).on_search_device()
    queries = vectors[args.ivf_vectors:]
    _, on_cpu = cpu.search(queries, 10)
    _, on_gpu = gpu.search(queries, 10)
    differ = sum(set(a.tolist()) != set(b.tolist()) for a, b in zip(on_cpu, on_gpu, strict=True))
    timings = {name: len(queries) / best_of_5(index, queries) for name, index in (("cpu", cpu), ("gpu", gpu))}
    print(f"IVF1024,Flat on {args.ivf_vectors:,} vectors ({built.ann.params.describe()}, on GPU: "
          f"{gpu._gpu is not None}): {differ} of {len(queries)} top-10 sets differ; batched "
          f"{timings['cpu']:,.0f} q/s on the CPU, {timings['gpu']:,.0f} q/s on the GPU")
    return gpu._gpu is not None and differ <= len(queries) // 100


if __name__ == "__main__":
    sys.exit(main())
