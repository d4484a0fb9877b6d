"""Approximate indexes: trained on the stored vectors, tuned to a recall target, carried forward."""

import numpy as np
import pytest

from spyglass.indexer.ann_build import build, build_to_target, measure_recall
from spyglass.indexer.ann_carry import CarriedAnn
from spyglass.search.store.ann import AnnIndex, AnnParams
from spyglass.search.store.flat import VectorIndex
from synthetic_vectors import clustered_vectors


def store_of(vectors: np.ndarray, first_id: int = 1) -> VectorIndex:
    store = VectorIndex.empty(vectors.shape[1])
    store.add(np.arange(first_id, first_id + len(vectors)), vectors)
    return store


@pytest.fixture(scope="module")
def store():
    return store_of(clustered_vectors(6_000, 32, clusters=40))


def exact_top(store: VectorIndex, queries: np.ndarray, k: int) -> np.ndarray:
    return store.search(queries, k)[1]


def test_an_ivf_index_is_trained_tuned_to_the_target_and_measured(store):
    messages = []
    built = build(store, "IVF64,Flat", 0.95, messages.append, progress=False)
    assert built.recall >= 0.95 and built.ann.params.faiss["nprobe"] < 64
    assert built.trained_on > 0 and built.built_vectors == len(store) and built.query_ms > 0
    assert any("tuned to nprobe=" in m for m in messages)
    # A stricter target needs more probes.
    stricter = build(store, "IVF64,Flat", 0.999, messages.append, progress=False)
    assert stricter.ann.params.faiss["nprobe"] >= built.ann.params.faiss["nprobe"]


def test_compressed_codes_reach_the_target_through_exact_rescoring(store):
    built = build(store, "IVF64,PQ16x4fs", 0.95, lambda _: None, progress=False)
    assert built.recall >= 0.95 and built.ann.params.rerank > 1
    queries = clustered_vectors(200, 32, clusters=40, seed=9)
    scores, ids = built.ann.search(queries, 10)
    # Every returned score is the exact inner product with the stored vector.
    for row in range(5):
        assert np.allclose(scores[row], store.vectors(ids[row]) @ queries[row], atol=1e-5)


def test_graph_types_are_tuned_by_ef_search(store):
    built = build(store, "HNSW16", 0.95, lambda _: None, progress=False)
    assert built.recall >= 0.95 and "efSearch" in built.ann.params.faiss


def test_a_target_out_of_reach_falls_back_to_exact_search(store):
    messages = []
    assert build_to_target(store, "PQ2x4fs", 1 << 30, 0.9999, messages.append, progress=False) is None
    assert any("below the target" in m and "falling back to Flat" in m for m in messages)


def test_too_few_vectors_to_train_means_exact_search_for_now():
    messages = []
    small = store_of(clustered_vectors(12, 32))
    assert build_to_target(small, "IVF64,Flat", 1 << 30, 0.9, messages.append, progress=False) is None
    assert "too few to train IVF64,Flat" in messages[0]


def test_auto_is_exact_for_a_small_library(store):
    assert build_to_target(store, "auto", 1 << 30, 0.95, lambda _: None, progress=False) is None


@pytest.mark.parametrize("factory", ["IVF32,Flat", "IVF32,PQ8x4fs", "HNSW16"])
def test_a_carried_index_answers_like_a_rebuilt_one(factory):
    """Removals and additions carried into an index give the results of one built from scratch."""
    vectors = clustered_vectors(4_000, 32, clusters=30, seed=1)
    store = store_of(vectors[:3_000])
    built = build(store, factory, 0.9, lambda _: None, progress=False)
    carried = CarriedAnn.of_build(built)
    # Remove 500 items, re-embed 100 (new vectors under old ids), add 1,000 new ones.
    removed = list(range(1, 501))
    reembedded = np.arange(501, 601)
    new_ids = np.arange(3_001, 4_001)
    store.remove(removed + reembedded.tolist())
    fresh = clustered_vectors(100, 32, clusters=30, seed=2)
    store.add(np.concatenate([reembedded, new_ids]), np.concatenate([fresh, vectors[3_000:]]))
    carried.update(removed + reembedded.tolist(), np.concatenate([reembedded, new_ids]),
                   np.concatenate([fresh, vectors[3_000:]]))
    exhaustive = AnnParams({name: 4096 for name in built.ann.params.faiss} | (
        {"nprobe": 32} if "nprobe" in built.ann.params.faiss else {}), rerank=1000)
    searcher = AnnIndex(carried.index, store, exhaustive, duplicates=True)
    queries = clustered_vectors(50, 32, clusters=30, seed=3)
    _, found = searcher.search(queries, 10)
    assert not np.isin(found, removed).any()  # removed items never come back
    assert np.array_equal(found, exact_top(store, queries, 10))  # searched to the end: exact
    if factory == "HNSW16":
        assert carried.fields["ann_stale"] == 600  # graphs cannot remove: old entries are stale
    else:
        assert carried.fields["ann_stale"] == 0


def test_recall_is_measured_against_exact_search(store):
    queries = store.vectors(np.arange(1, 21))
    truth = exact_top(store, queries, 11)[:, 1:]
    perfect = measure_recall(store, queries, np.arange(1, 21), truth)
    assert perfect == 1.0
    broken = AnnIndex(build(store, "IVF64,Flat", 0.5, lambda _: None, progress=False).ann.index, store,
                      AnnParams({"nprobe": 1}, 1))
    assert measure_recall(broken, queries, np.arange(1, 21), truth) < 1.0
