"""Real processes, real kills: kill -9 a reindex at random moments; swap indexes under live search."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select

from conftest import free_port, run_spyglass, serving, spyglass_env
from spyglass.search.engine import SearchEngine
from spyglass.search.failpoints import ENV as FAILPOINT_ENV
from spyglass.search.failpoints import NAMES as FAILPOINTS
from spyglass.search.catalog.schema import IndexGeneration, IndexRun, MediaItem, StagedVector

KILLS = int(os.environ.get("SPYGLASS_TEST_KILLS", "6"))  # `make fuzz` runs 40


def make_image(path, seed: int) -> None:
    """A small PNG, different for every seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (48, 40), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x, y = rng.randrange(40), rng.randrange(32)
        draw.rectangle([x, y, x + 8, y + 8], fill=tuple(rng.randrange(256) for _ in range(3)))
    image.save(path)


def assert_consistent_once_published(settings, media) -> None:
    """assert_consistent, once a generation has been published (a killed first run may have none)."""
    engine = SearchEngine(settings)
    try:
        published = engine.catalog.live_generation() is not None if engine._schema_ready() else False
    finally:
        engine.close()
    if published:
        assert_consistent(settings, media)


def assert_consistent(settings, media) -> int:
    """Index loads; its ids are the catalog rows; the rows are the files on disk; nothing staged."""
    engine = SearchEngine(settings)
    try:
        snapshot = engine.live()
        with engine.catalog.sessions() as session:
            rows = dict(session.execute(select(MediaItem.id, MediaItem.path)).all())
        ids = snapshot.stored.ids().tolist()
        assert len(ids) == len(set(ids)), "duplicate vectors"
        assert set(ids) == set(rows), "index ids differ from the catalog rows"
        assert snapshot.generation.vector_count == len(ids)
        return len(rows)
    finally:
        engine.close()


def change_library(media, rng, seed: int) -> int:
    """New, changed and deleted files, so that the next run has work in every phase."""
    for _ in range(6):
        seed += 1
        make_image(media / f"new-{seed:05d}.png", seed)
    files = sorted(p for p in media.rglob("*.png"))
    for path in rng.sample(files, 2):
        make_image(path, seed + 10_000)
    rng.choice(files).unlink()
    return seed


def kill_at_failpoint(command: list[str], env: dict, name: str, timeout: float = 120) -> bool:
    """Run until the process holds at failpoint `name`, then kill -9 it; False if it ended first."""
    process = subprocess.Popen(command, env={**env, FAILPOINT_ENV: name}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        for line in process.stderr:
            if line.strip() == f"spyglass failpoint {name}":
                os.kill(process.pid, signal.SIGKILL)
                return True
            if time.monotonic() > deadline:
                break
        return False
    finally:
        process.kill()
        process.wait()
        process.stderr.close()


@pytest.mark.slow
def test_reindex_survives_kill_9_at_random_moments(settings, tmp_path):
    media = tmp_path / "library"
    (media / "sub").mkdir(parents=True)
    seed = 0
    for seed in range(240):
        make_image(media / ("sub" if seed % 3 else ".") / f"img-{seed:04d}.png", seed)
    env = {**spyglass_env(settings), "SPYGLASS_BATCH_SIZE": "4", "SPYGLASS_CHECKPOINT_ITEMS": "24",
           "SPYGLASS_DECODE_WORKERS": "1"}
    command = [sys.executable, "-m", "spyglass.cli", "reindex", "--no-progress", str(media)]
    rng = random.Random(20261201)
    killed, attempts = 0, 0
    log = tmp_path / "run.log"
    while killed < KILLS and attempts < KILLS * 4:
        attempts += 1
        seed = change_library(media, rng, seed)
        with open(log, "w") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
            time.sleep(rng.uniform(1.0, 6.0))
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                killed += 1
            process.wait()
        assert_consistent_once_published(settings, media)  # after every kill, not just at the end

    # Random moments mostly land in embedding; each phase also gets kills placed exactly in it.
    landed = {}
    for name in FAILPOINTS:
        seed = change_library(media, rng, seed)
        if kill_at_failpoint(command, env, name):
            landed[name] = landed.get(name, 0) + 1
        assert_consistent_once_published(settings, media)
    print(f"\nkill -9 points survived: {killed} at random moments in {attempts} runs, "
          f"and at each phase: {landed}")
    assert killed >= KILLS
    assert landed == {name: 1 for name in FAILPOINTS}, landed

    final = run_spyglass("reindex", "--no-progress", str(media), env=env, timeout=300)
    assert final.returncode == 0, final.stderr
    on_disk = {str(p) for p in media.rglob("*.png")}
    assert assert_consistent(settings, media) == len(on_disk)
    engine = SearchEngine(settings)
    with engine.catalog.sessions() as session:
        assert set(session.scalars(select(MediaItem.path))) == on_disk  # nothing missing, nothing extra
        assert session.scalars(select(StagedVector)).first() is None
        # Killed runs are reported as such, never left "running".
        assert set(session.scalars(select(IndexRun.status))) <= {"done", "interrupted"}
    again = run_spyglass("reindex", "--no-progress", str(media), env=env)
    assert "0 added, 0 updated, 0 moved" in again.stdout and "0 removed" in again.stdout
    assert run_spyglass("check", env=env).returncode == 0


@pytest.mark.slow
def test_live_swap_never_fails_a_query(sqlite_settings, tmp_path, other_model):
    settings = sqlite_settings.override(port=free_port())
    media = tmp_path / "library"
    media.mkdir()
    for seed in range(30):
        make_image(media / f"img-{seed:03d}.png", seed)
    env = spyglass_env(settings)
    assert run_spyglass("index", "--no-progress", str(media), env=env).returncode == 0

    answers: list[tuple[int, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def ask(url: str) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                with urllib.request.urlopen(f"{url}/api/v1/search?q=thing+{i % 7}&k=5", timeout=30) as r:
                    body = json.loads(r.read())
                answers.append((body["generation"], body["total_considered"]))
            except Exception as exc:  # noqa: BLE001 - every failure is what this test counts
                failures.append(repr(exc))

    with serving(settings, tmp_path / "server.log") as url:
        client = threading.Thread(target=ask, args=(url,))
        client.start()
        try:
            for round_no in range(4):
                for seed in range(100 + round_no * 5, 105 + round_no * 5):
                    make_image(media / f"img-{seed:03d}.png", seed)
                (media / f"img-{round_no:03d}.png").unlink()
                result = run_spyglass("reindex", "--no-progress", str(media), env=env)
                assert result.returncode == 0, result.stderr
                time.sleep(2.0)  # long enough for the server to answer from this generation under load
            swapped = {**env, "SPYGLASS_MODEL": str(other_model[0]), "SPYGLASS_PRETRAINED": str(other_model[1])}
            result = run_spyglass("reindex", "--no-progress", env=swapped)  # a model swap, no paths
            assert result.returncode == 0 and "building a new index" in result.stderr, result.stderr
            time.sleep(2.0)
        finally:
            stop.set()
            client.join()

    engine = SearchEngine(settings)
    with engine.catalog.sessions() as session:
        sizes = dict(session.execute(select(IndexGeneration.id, IndexGeneration.vector_count)).all())
    print(f"\nlive swap: {len(answers)} queries, {len(failures)} failed, "
          f"{len({g for g, _ in answers})} generations answered")
    assert failures == []
    assert all(total == sizes[generation] for generation, total in answers), "a mixed answer"
    assert len({g for g, _ in answers}) >= 3
    assert answers[-1][0] == max(sizes)  # the swapped-in model answers at the end
    assert engine.live().searcher.dim == 24


def assert_approximate_index_consistent(settings) -> None:
    """The live approximate index (if any) loads, verifies, and searched to the end gives exact results."""
    import numpy as np

    from spyglass.search.store.ann import AnnIndex, AnnParams

    engine = SearchEngine(settings)
    try:
        snapshot = engine.live()
        if not isinstance(snapshot.searcher, AnnIndex):
            return
        exhaustive = AnnIndex(snapshot.searcher.index, snapshot.stored, AnnParams({"nprobe": 64}, rerank=1000),
                              duplicates=True)
        queries = snapshot.stored.vectors(snapshot.stored.ids()[:5])
        _, found = exhaustive.search(queries, 10)
        _, exact = snapshot.stored.search(queries, 10)
        assert np.array_equal(found, exact), "the approximate index disagrees with the stored vectors"
    finally:
        engine.close()


@pytest.mark.slow
def test_kill_9_around_approximate_index_publishes(sqlite_settings, tmp_path):
    """Killed while a carried or a rebuilt approximate index is published: the catalog, the stored
    vectors and the approximate index stay consistent, and the next run completes."""
    from spyglass.search.failpoints import ANN_NAMES

    media = tmp_path / "library"
    media.mkdir()
    for seed in range(60):
        make_image(media / f"img-{seed:04d}.png", seed)
    base = {**spyglass_env(sqlite_settings), "SPYGLASS_INDEX_RECALL": "0.9"}
    first = run_spyglass("index", "--no-progress", str(media), env=base | {"SPYGLASS_INDEX_FACTORY": "IVF4,Flat"})
    assert first.returncode == 0 and "tuned to" in first.stderr, first.stderr
    rng, seed, landed = random.Random(7), 1000, {}
    # A changed factory forces a rebuild (ann-*); changed files make a carried publish (publish*).
    for name in ANN_NAMES + ("publish", "published"):
        live = _live_factory(sqlite_settings)
        other = "IVF8,Flat" if live == "IVF4,Flat" else "IVF4,Flat"
        env = base | {"SPYGLASS_INDEX_FACTORY": other if name in ANN_NAMES else live}
        seed = change_library(media, rng, seed)
        command = [sys.executable, "-m", "spyglass.cli", "index", "--no-progress", str(media)]
        if kill_at_failpoint(command, env, name):
            landed[name] = True
        assert_consistent(sqlite_settings, media)
        assert_approximate_index_consistent(sqlite_settings)
    assert landed == {name: True for name in ANN_NAMES + ("publish", "published")}, landed
    final = run_spyglass("index", "--no-progress", str(media), env=base | {"SPYGLASS_INDEX_FACTORY": "IVF4,Flat"})
    assert final.returncode == 0, final.stderr
    assert assert_consistent(sqlite_settings, media) == len(list(media.glob("*.png")))
    assert_approximate_index_consistent(sqlite_settings)
    assert json.loads(run_spyglass("status", "--json", env=base).stdout)["index"]["type"] == "IVF4,Flat"


def _live_factory(settings) -> str:
    engine = SearchEngine(settings)
    try:
        return engine.catalog.live_generation().ann_factory or "IVF4,Flat"
    finally:
        engine.close()
