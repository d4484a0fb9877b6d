"""FAISS generations: ids, files published atomically, damaged files refused, killed publishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import GOOD_IMAGES, index_files, kept_index_files, spyglass_env
from spyglass.indexer.job import run_index
from spyglass.search.store.ann import check_factory
from spyglass.search.engine import SearchEngine
from spyglass.search.errors import ConfigError, IndexFileError
from spyglass.search.store.flat import VectorIndex, read_index_file, write_index_file


def unit_vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_ids_are_the_given_keys_and_search_is_inner_product():
    index = VectorIndex.empty(8)
    vectors = unit_vectors(5)
    index.add(np.array([11, 22, 33, 44, 55]), vectors)
    assert index.remove([22, 999]) == 1
    scores, ids = index.search(vectors[2], 2)
    assert ids[0][0] == 33 and scores[0][0] == pytest.approx(1.0, abs=1e-5)
    assert sorted(index.ids().tolist()) == [11, 33, 44, 55]
    assert np.allclose(index.vector(44), vectors[3])


def test_bad_factory_strings_are_config_errors_and_trained_ones_are_accepted():
    with pytest.raises(ConfigError, match="SPYGLASS_INDEX_FACTORY='NoSuchIndex' is not a FAISS index factory"):
        check_factory("NoSuchIndex", 8)
    with pytest.raises(ConfigError, match="SPYGLASS_INDEX_FACTORY"):
        check_factory("PQ3", 8)  # 3 sub-quantizers do not divide 8 numbers
    for fine in ("auto", "AUTO", "Flat", "IVF16,Flat", "HNSW32", "OPQ4,IVF16,PQ4x4fs"):
        check_factory(fine, 8)


def test_written_file_reads_back_and_leaves_no_temp(tmp_path):
    index = VectorIndex.empty(8)
    index.add(np.arange(10), unit_vectors(10))
    size, checksum = write_index_file(index, tmp_path, "gen-a.faiss")
    loaded = read_index_file(tmp_path / "gen-a.faiss", size, checksum)
    assert sorted(loaded.ids().tolist()) == list(range(10))
    assert [p.name for p in tmp_path.iterdir()] == ["gen-a.faiss"]


def test_truncated_and_corrupted_files_are_refused_before_faiss_reads_them(tmp_path):
    index = VectorIndex.empty(8)
    index.add(np.arange(10), unit_vectors(10))
    size, checksum = write_index_file(index, tmp_path, "gen-a.faiss")
    path = tmp_path / "gen-a.faiss"
    data = path.read_bytes()

    path.write_bytes(data[: size // 2])
    with pytest.raises(IndexFileError, match="truncated"):
        read_index_file(path, size, checksum)
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(IndexFileError, match="checksum"):
        read_index_file(path, size, checksum)
    path.unlink()
    with pytest.raises(IndexFileError, match="missing"):
        read_index_file(path, size, checksum)


def test_failed_write_keeps_the_existing_file(tmp_path, monkeypatch):
    import faiss

    index = VectorIndex.empty(8)
    index.add(np.arange(3), unit_vectors(3))
    size, checksum = write_index_file(index, tmp_path, "gen-a.faiss")

    def half_write(_index, path):
        with open(path, "wb") as handle:
            handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", half_write)
    with pytest.raises(OSError):
        write_index_file(index, tmp_path, "gen-a.faiss")
    assert len(read_index_file(tmp_path / "gen-a.faiss", size, checksum)) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["gen-a.faiss"]


KILLED_PUBLISH = textwrap.dedent("""
    import os, sys, time
    import spyglass.search.store.flat as vectors
    from spyglass.indexer.job import run_index
    from spyglass.search.settings import Settings

    real_replace = os.replace
    def replace_then_hang(src, dst):
        real_replace(src, dst)          # the new file is in place; its SQL row is not committed
        open(sys.argv[2], "w").close()  # tell the test we are at the worst moment
        time.sleep(600)
    vectors.os.replace = replace_then_hang
    run_index(Settings.from_env(), [sys.argv[1]], progress=False)
""")


def test_killed_publish_leaves_the_previous_generation_live(sqlite_settings, media, encoder, tmp_path):
    first = run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    (media / "red.jpg").unlink()
    (media / "nested" / "yellow.bmp").rename(media / "yellow moved.bmp")
    from PIL import Image
    Image.new("RGB", (40, 40), (1, 2, 3)).save(media / "added.png")

    ready = tmp_path / "ready"
    process = subprocess.Popen([sys.executable, "-c", KILLED_PUBLISH, str(media), str(ready)],
                               env=spyglass_env(sqlite_settings), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "the child never reached its publish"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()

    engine = SearchEngine(sqlite_settings, encoder_loader=lambda a, p: encoder)
    assert engine.live().generation.id == first.generation_id
    assert len(engine.live().searcher) == len(GOOD_IMAGES)
    assert engine.catalog.item_by_path(str(media / "red.jpg")) is not None  # deletion not committed
    assert engine.catalog.item_by_path(str(media / "added.png")) is None
    # The next run completes the work and removes the orphan file of the killed one.
    summary = run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    assert (summary.added, summary.removed, summary.moved) == (1, 1, 1)
    assert index_files(sqlite_settings) == kept_index_files(sqlite_settings)  # the killed run's file is gone
    assert len(engine.live().searcher) == len(GOOD_IMAGES)


def test_gpu_index_takes_turns_and_hands_big_k_to_the_cpu():
    """The routing of GpuIndex, with a CPU index standing in for the GPU copy (no GPU here)."""
    import threading

    from spyglass.search.store.flat import GPU_MAX_K, GpuIndex

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(GPU_MAX_K + 500, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    cpu = VectorIndex.empty(8)
    cpu.add(np.arange(1, len(vectors) + 1), vectors)
    stand_in = VectorIndex.empty(8)
    stand_in.add(np.arange(1, 101), vectors[:100])  # differs from the CPU copy, to see who answered

    class NotThreadSafe:
        """Fails the test if two searches ever run on it at once, as a FAISS GPU index may not."""

        def __init__(self, index):
            self.index, self.inside, self.overlaps = index, 0, 0
            self.d, self.ntotal = index.d, len(vectors)

        def search(self, queries, k):
            self.inside += 1
            self.overlaps += self.inside > 1
            try:
                threading.Event().wait(0.002)
                return self.index.search(queries, min(k, 100))
            finally:
                self.inside -= 1

    device = NotThreadSafe(stand_in.index)
    gpu = GpuIndex(device, cpu)
    threads = [threading.Thread(target=lambda: [gpu.search(vectors[:1], 10) for _ in range(20)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert device.overlaps == 0

    _, small = gpu.search(vectors[150:151], 10)
    assert set(small[0].tolist()) <= set(range(1, 101))  # answered by the "GPU" copy
    _, big = gpu.search(vectors[150:151], GPU_MAX_K + 1)
    assert big.shape[1] == GPU_MAX_K + 1 and big[0][0] == 151  # the CPU copy, which has every vector
    assert np.allclose(gpu.vector(151), vectors[150])
