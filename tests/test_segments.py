"""Segment files and tombstones: every sequence of changes answers like one index rebuilt from scratch."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spyglass.search.errors import IndexFileError
from spyglass.search.store.segmented import Manifest, SegmentedStore

DIM = 8
# One step: add fresh ids, remove some held ones, re-embed some held ones, or publish (write).
steps = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(1, 30)),
    st.tuples(st.just("remove"), st.integers(1, 10)),
    st.tuples(st.just("reembed"), st.integers(1, 10)),
    st.tuples(st.just("reuse"), st.integers(1, 5)),  # SQLite hands out a deleted row's id again
    st.tuples(st.just("write"), st.just(0)),
), min_size=1, max_size=25)


def unit(rng, rows: int) -> np.ndarray:
    vectors = rng.normal(size=(rows, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force(reference: dict[int, np.ndarray], queries: np.ndarray, k: int) -> np.ndarray:
    ids = np.array(sorted(reference), dtype=np.int64)
    if not len(ids):
        return np.full((len(queries), k), -1)
    scores = np.stack([reference[i] for i in ids]) @ queries.T
    out = np.full((len(queries), k), -1, dtype=np.int64)
    for row in range(len(queries)):
        order = np.lexsort((ids, -scores[:, row]))[:k]
        out[row, :len(order)] = ids[order]
    return out


def assert_same(store: SegmentedStore, reference: dict[int, np.ndarray], rng) -> None:
    assert sorted(store.ids().tolist()) == sorted(reference) and len(store) == len(reference)
    for item_id, vector in reference.items():
        assert np.allclose(store.vector(item_id), vector)
    queries = unit(rng, 4)
    assert np.array_equal(store.search(queries, 7)[1], brute_force(reference, queries, 7))
    seen = {int(i): v for ids, vectors in store.all_vectors(5) for i, v in zip(ids, vectors, strict=True)}
    assert seen.keys() == reference.keys()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps, seed=st.integers(0, 2**16))
def test_any_sequence_of_changes_reads_back_like_a_rebuilt_index(tmp_path_factory, steps, seed):
    rng = np.random.default_rng(seed)
    directory = tmp_path_factory.mktemp("segments")
    store, reference, next_id, gone = SegmentedStore.empty(DIM), {}, 1, []
    base, manifest = None, Manifest()
    for action, count in steps:
        held = sorted(reference)
        if action == "add":
            ids = np.arange(next_id, next_id + count)
            next_id += count
            vectors = unit(rng, count)
            store.add(ids, vectors)
            reference.update(zip(ids.tolist(), vectors, strict=True))
        elif action in ("remove", "reembed") and held:
            chosen = rng.choice(held, size=min(count, len(held)), replace=False).tolist()
            assert store.remove(chosen) == len(chosen)
            for item_id in chosen:
                del reference[item_id]
            if action == "remove":
                gone += chosen
            if action == "reembed":  # as publish does it: the old entry dies, the new one is added
                vectors = unit(rng, len(chosen))
                store.add(np.asarray(chosen), vectors)
                reference.update(zip(chosen, vectors, strict=True))
        elif action == "reuse" and gone:
            ids, gone = gone[:count], gone[count:]
            vectors = unit(rng, len(ids))
            store.add(np.asarray(ids), vectors)
            reference.update(zip(ids, vectors, strict=True))
        elif action == "write":
            base, manifest, _ = store.write(directory)
        assert_same(store, reference, rng)
    base, manifest, _ = store.write(directory)
    reloaded = SegmentedStore.load(directory, base, Manifest.from_json(manifest.to_json()), mmap=True)
    assert_same(reloaded, reference, rng)
    assert_same(reloaded.compacted(), reference, rng)
    assert reloaded.compacted().dead_count() == 0


def test_a_publish_writes_only_the_new_delta_and_the_tombstones(tmp_path):
    rng = np.random.default_rng(0)
    store = SegmentedStore.empty(DIM)
    store.add(np.arange(1, 10_001), unit(rng, 10_000))
    _, _, first = store.write(tmp_path)
    store.remove([5, 6, 7])
    store.add(np.arange(10_001, 10_101), unit(rng, 100))
    base, manifest, written = store.write(tmp_path)
    assert written < 0.03 * first  # 100 new vectors and 3 tombstones, not 10,100 vectors
    assert len(manifest.deltas) == 1 and manifest.tombstones.count == 3
    assert not store.compaction_due()  # 1 % new, 0.03 % dead
    store.add(np.arange(10_101, 10_701), unit(rng, 600))
    assert store.compaction_due()  # past 5 % in deltas


def test_damaged_segment_and_tombstone_files_are_refused(tmp_path):
    rng = np.random.default_rng(1)
    store = SegmentedStore.empty(DIM)
    store.add(np.arange(1, 101), unit(rng, 100))
    store.write(tmp_path)
    store.remove([1])
    store.add(np.arange(101, 111), unit(rng, 10))
    base, manifest, _ = store.write(tmp_path)
    (tmp_path / manifest.tombstones.filename).write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(IndexFileError, match="tombstone file"):
        SegmentedStore.load(tmp_path, base, manifest)
    (tmp_path / manifest.deltas[0].filename).unlink()
    with pytest.raises(IndexFileError, match="missing"):
        SegmentedStore.load(tmp_path, base, manifest)
