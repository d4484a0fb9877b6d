"""Exact vectors stored in float16: half the bytes, scored in float32, true to the embedded vectors,
and float32 segments of an existing library converted at its next compaction."""

from __future__ import annotations

import numpy as np
import pytest

from spyglass.search.errors import ConfigError
from spyglass.search.settings import Settings
from spyglass.search.store.segmented import SegmentedStore

DIM = 64


def unit(rows: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_float16_segments_take_half_the_bytes_and_stay_true_to_the_vectors(tmp_path):
    vectors, ids = unit(2000), np.arange(10, 2010, dtype=np.int64)
    sizes = {}
    for storage in ("float32", "float16"):
        store = SegmentedStore.empty(DIM, storage)
        store.add(ids, vectors)
        base, _, _ = store.write(tmp_path / storage)
        sizes[storage] = base.size
        assert store.segments[0].storage == storage
        stored = store.vectors(ids)
        assert stored.dtype == np.float32
        if storage == "float32":
            np.testing.assert_array_equal(stored, vectors)  # bit for bit
        else:
            cosines = np.sum(stored * vectors, axis=1) / np.linalg.norm(stored, axis=1)
            assert cosines.min() >= 0.9999
            assert not np.array_equal(stored, vectors)  # rounded: really float16
            # A score (a dot product with a query) moves by at most a few 1e-4.
            assert np.abs(stored @ vectors[:20].T - vectors @ vectors[:20].T).max() < 5e-4
        # Every vector finds itself first, scored from its decoded values in float32.
        scores, found = store.search(vectors[:50], 1)
        assert (found[:, 0] == ids[:50]).all() and np.allclose(scores[:, 0], 1.0, atol=1e-3)
    # 2,000 x 64 dimensions: 512,000 bytes of float32 codes against 256,000 (the ids alike; headers differ).
    assert abs(sizes["float32"] - sizes["float16"] - 2000 * DIM * 2) < 1024


def test_a_float32_library_gets_float16_deltas_and_is_converted_at_compaction(tmp_path):
    old, new = unit(300, 1), unit(40, 2)
    store = SegmentedStore.empty(DIM, "float32")
    store.add(np.arange(300, dtype=np.int64), old)
    store.write(tmp_path)
    store.storage = "float16"  # the setting changed; the next run opens the library with it
    store.add(np.arange(300, 340, dtype=np.int64), new)
    store.write(tmp_path)
    assert [s.storage for s in store.segments] == ["float32", "float16"]
    assert store.compaction_due()
    compacted = store.compacted()
    assert [s.storage for s in compacted.segments] == ["float16"] and compacted.storage == "float16"
    everything, stored = np.concatenate([old, new]), compacted.vectors(np.arange(340))
    assert (np.sum(stored * everything, axis=1) / np.linalg.norm(stored, axis=1)).min() >= 0.9999


def test_the_index_job_writes_the_setting_and_searches_alike(sqlite_settings, media, encoder):
    from spyglass.indexer.job import run_index
    from spyglass.search.engine import SearchEngine

    engines = {}
    for storage in ("float32", "float16"):
        chosen = sqlite_settings.override(home=sqlite_settings.home.parent / storage, vector_storage=storage)
        run_index(chosen, [str(media)], progress=False, echo=lambda _: None)
        engines[storage] = SearchEngine(chosen, encoder_loader=lambda a, p: encoder)
    images = sorted(media.glob("*.png"))
    for image in images:
        a, b = (e.live().searcher.vector(e.catalog.item_by_path(str(image)).id) for e in engines.values())
        assert float(a @ b) / float(np.linalg.norm(b)) >= 0.9999
        assert engines["float16"].search_image(image, k=1).hits[0].item.path == str(image)
    sizes = {name: sum(p.stat().st_size for p in (sqlite_settings.home.parent / name / "index").glob("*.faiss"))
             for name in engines}
    assert 0 < sizes["float16"] < 0.75 * sizes["float32"]


def test_the_setting_is_checked():
    assert Settings().vector_storage == "float16"
    with pytest.raises(ConfigError, match="SPYGLASS_VECTOR_STORAGE"):
        Settings.from_env({"SPYGLASS_VECTOR_STORAGE": "int8"})
