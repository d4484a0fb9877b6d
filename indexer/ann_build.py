"""Train, fill and tune an approximate index from the stored vectors, to a recall target."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from spyglass.search.store.ann import AnnIndex, AnnParams, has_exact_codes, new_ann, with_ids
from spyglass.search.errors import IndexFileError
from spyglass.search.store.index_choice import is_auto, ladder, needs_training_points
from spyglass.search.store.flat import VectorIndex

# Recall is measured as recall@10: the share of the exact top 10 that the index returns.
RECALL_K = 10
# Held-out query vectors: enough for a recall figure good to about +-0.01.
TUNING_QUERIES = 1000
# Vectors k-means is trained on at least (when there are that many), and at most per list.
MIN_TRAINING = 50_000
MAX_POINTS_PER_LIST = 256
RERANK_DEPTHS = (1, 2, 4, 8, 16, 32, 64)
ADD_CHUNK = 65_536
Echo = Callable[[str], None]


@dataclass
class AnnBuild:
    """An approximate index, trained, filled and tuned, with what tuning measured."""

    factory: str
    ann: AnnIndex
    recall: float  # recall@10 against exact search on the held-out queries
    query_ms: float  # one query, median, at the chosen parameters
    exact_query_ms: float  # the same queries by exact search over the store
    trained_on: int
    built_vectors: int


def wanted_factory(setting: str, count: int, dim: int, memory: int) -> list[str]:
    """The types to try for this setting and library, in order; the last is always Flat."""
    if is_auto(setting):
        return [choice.factory for choice in ladder(count, dim, memory)]
    return [setting] if setting == "Flat" else [setting, "Flat"]


def build_to_target(store: VectorIndex, setting: str, memory: int, target: float,
                    echo: Echo, progress: bool = True, seed: int = 0) -> AnnBuild | None:
    """The first type of the setting's ladder that reaches the target; None means exact search."""
    options = wanted_factory(setting, len(store), store.dim, memory)
    for factory, fallback in zip(options, options[1:] + [None]):
        if factory == "Flat":
            return None
        hard_minimum = max(needs_training_points(factory) // 39, 1)
        if len(store) < max(hard_minimum, 2 * RECALL_K):
            echo(f"Index: {len(store):,} vectors are too few to train {factory}; "
                 f"searching exactly ({fallback}) until there are more.")
            continue
        built = build(store, factory, target, echo, progress, seed)
        if built.recall >= target:
            return built
        echo(f"Index: {factory} reaches recall@10 {built.recall:.3f} at best, below the target "
             f"{target:.3f} (SPYGLASS_INDEX_RECALL); falling back to {fallback}.")
    return None


def build(store: VectorIndex, factory: str, target: float, echo: Echo, progress: bool = True,
          seed: int = 0) -> AnnBuild:
    """Train on a sample, add every stored vector, then tune on held-out vectors."""
    rng = np.random.default_rng(seed)
    ids = store.sorted_ids()
    queries_n = min(TUNING_QUERIES, max(len(ids) // 10, RECALL_K))
    shuffled = rng.permutation(len(ids))
    query_ids = np.sort(ids[shuffled[:queries_n]])
    rest = ids[shuffled[queries_n:]]
    index = new_ann(store.dim, factory)
    trained_on = 0
    if not index.is_trained:
        lists = _list_count(index)
        wanted = max(needs_training_points(factory), MIN_TRAINING)
        if lists:
            wanted = min(wanted, lists * MAX_POINTS_PER_LIST)
        sample = np.sort(rest[:min(len(rest), wanted)])
        trained_on = len(sample)
        echo(f"Index: training {factory} on {trained_on:,} of {len(ids):,} vectors...")
        started = time.monotonic()
        try:
            index.train(_vectors(store, sample))
        except RuntimeError as exc:
            if "NaN" not in str(exc) and "Inf" not in str(exc):
                raise
            # Only an index written before imports were checked holds such vectors.
            raise IndexFileError("the index holds vectors that are not finite numbers, which FAISS "
                                 "cannot train on", "run `spyglass check --repair` to drop them") from None
        echo(f"Index: trained in {time.monotonic() - started:.1f} s.")
    index = with_ids(index)
    with tqdm(total=len(ids), unit="vec", desc=f"Filling {factory}", file=sys.stderr,
              disable=not progress, dynamic_ncols=True) as bar:
        for chunk_ids, vectors in store.all_vectors(ADD_CHUNK):
            index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), chunk_ids)
            bar.update(len(chunk_ids))
    queries = _vectors(store, query_ids)
    exact_ms, truth = _timed_exact(store, queries, query_ids)
    params, recall, query_ms = tune(index, store, queries, query_ids, truth, target, has_exact_codes(factory))
    echo(f"Index: {factory} tuned to {params.describe()}: recall@10 {recall:.3f} on "
         f"{len(query_ids):,} held-out vectors, {query_ms:.2f} ms a query (exact: {exact_ms:.2f} ms).")
    searcher = AnnIndex(index, store, params, has_exact_codes(factory), duplicates=False)
    return AnnBuild(factory, searcher, recall, query_ms, exact_ms, trained_on, len(ids))


def tune(index, store: VectorIndex, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray,
         target: float, exact_codes: bool = False) -> tuple[AnnParams, float, float]:
    """The fastest (parameter, re-rank depth) that reaches the target; else the most exact tried."""
    name, values = _knob(index)

    def searcher(params: AnnParams) -> AnnIndex:
        return AnnIndex(index, store, params, exact_codes, duplicates=False)

    feasible: list[tuple[AnnParams, float]] = []
    best: tuple[float, AnnParams] | None = None
    start = len(values) - 1
    for rerank in RERANK_DEPTHS[:1] if exact_codes else RERANK_DEPTHS:  # exact scores need no re-rank
        # Recall grows with both knobs: a deeper re-rank needs no more probes than a shallower one.
        reached = None
        for position in range(start, -1, -1) if feasible else range(len(values)):
            params = AnnParams({name: int(values[position])} if name else {}, rerank)
            recall = measure_recall(searcher(params), queries, query_ids, truth)
            if best is None or recall > best[0]:
                best = (recall, params)
            if recall >= target:
                reached = (position, params, recall)
                if not feasible:
                    break  # ascending: the first that reaches it is the cheapest
            elif feasible:
                break  # descending: one step too far
        if reached is not None:
            start = reached[0]
            feasible.append((reached[1], reached[2]))
        if not name and reached is not None:
            break
    if not feasible:
        recall, params = best
        return params, recall, _query_ms(searcher(params), queries)
    timed = [(_query_ms(searcher(params), queries), params, recall) for params, recall in feasible]
    query_ms, params, recall = min(timed, key=lambda entry: entry[0])
    return params, recall, query_ms


def measure_recall(searcher, queries: np.ndarray, query_ids: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's exact top 10 (itself left out) that the searcher returns."""
    _, found = searcher.search(queries, RECALL_K + 1)
    hits = 0
    for row, query_id in enumerate(query_ids):
        returned = [i for i in found[row] if i != query_id and i >= 0][:RECALL_K]
        hits += len(set(returned) & set(truth[row]))
    return hits / (len(query_ids) * RECALL_K)


def _timed_exact(store: VectorIndex, queries: np.ndarray, query_ids: np.ndarray) -> tuple[float, np.ndarray]:
    _, found = store.search(queries, RECALL_K + 1)
    truth = np.full((len(query_ids), RECALL_K), -1, dtype=np.int64)
    for row, query_id in enumerate(query_ids):
        others = [i for i in found[row] if i != query_id and i >= 0][:RECALL_K]
        truth[row, :len(others)] = others
    return _query_ms(store, queries), truth


def _query_ms(searcher, queries: np.ndarray, count: int = 100) -> float:
    """Median milliseconds of one query at a time, as the web server asks them."""
    times = []
    for row in queries[:count]:
        started = time.perf_counter()
        searcher.search(row[None, :], RECALL_K)
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def _knob(index) -> tuple[str | None, list[int]]:
    """The search parameter that trades speed for recall in this type, and the values to try."""
    import faiss

    lists = _list_count(index)
    if lists:
        return "nprobe", [2 ** p for p in range(0, int(np.log2(lists)) + 1)]
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if hasattr(faiss.downcast_index(inner), "hnsw"):
        return "efSearch", [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
    return None, [0]


def _list_count(index) -> int:
    import faiss

    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return 0


def _vectors(store: VectorIndex, ids: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(store.vectors(ids), dtype=np.float32)
