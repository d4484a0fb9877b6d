"""The nightly job: recorded roots, resuming, the lock, model swaps, damaged files, check/repair."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from PIL import Image
from sqlalchemy import func, select

from conftest import GOOD_IMAGES, run_spyglass, spyglass_env
from spyglass.indexer.check import check_index
from spyglass.indexer.job import run_index, run_reindex
from spyglass.search.catalog.lock import IndexerBusy, indexer_lock
from spyglass.search.catalog.db import create_db_engine
from spyglass.search.engine import SearchEngine
from spyglass.search.errors import ConfigError, IndexFileError
from spyglass.search.catalog.schema import IndexGeneration, IndexRun, MediaItem, StagedVector
from spyglass.search.settings import Settings


def consistent(settings) -> SearchEngine:
    """The live index loads and its ids are exactly the catalog's rows."""
    engine = SearchEngine(settings)
    snapshot = engine.live()
    with engine.catalog.sessions() as session:
        rows = set(session.scalars(select(MediaItem.id)))
    ids = snapshot.stored.ids().tolist()
    assert len(ids) == len(set(ids)) and set(ids) == rows
    return engine


def count(settings, model) -> int:
    engine = SearchEngine(settings)
    with engine.catalog.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def test_reindex_covers_recorded_roots_and_spyglass_media(settings, media, tmp_path, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.new("RGB", (40, 30), (9, 99, 199)).save(extra / "new.png")
    (media / "photo.TIFF").unlink()
    with_media = settings.override(media=f"{extra}:{tmp_path / 'also-missing'}")

    summary = run_reindex(with_media, encoder=encoder, progress=False)
    assert (summary.added, summary.removed) == (1, 1)
    again = run_reindex(with_media, encoder=encoder, progress=False)
    assert (again.added, again.updated, again.removed, again.embedded) == (0, 0, 0, 0)
    assert len(consistent(settings).live().searcher) == len(GOOD_IMAGES)


def test_reindex_without_any_folder_says_what_to_do(settings):
    with pytest.raises(ConfigError, match="SPYGLASS_MEDIA"):
        run_reindex(settings, progress=False)


def test_a_missing_recorded_folder_keeps_its_items(settings, media, tmp_path, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    os.rename(media, tmp_path / "unmounted")
    messages = []
    summary = run_reindex(settings, encoder=encoder, progress=False, echo=messages.append)
    assert summary.removed == 0
    assert any("missing" in m and "stay in the index" in m for m in messages)
    assert len(consistent(settings).live().searcher) == len(GOOD_IMAGES)


class Interrupted(Exception):
    """Raised by the test encoder to stop a run part way, as a kill would."""


def test_an_interrupted_run_resumes_from_its_staged_batches(settings, media, encoder, tmp_path):
    for i in range(12):
        Image.new("RGB", (32, 32), (i * 20, 255 - i * 20, 7)).save(media / f"extra-{i:02d}.png")
    batches = []

    class StopsAfterTwoBatches:
        def __getattr__(self, name):
            return getattr(encoder, name)

        def encode_pixels(self, pixels):
            if len(batches) == 2:
                raise Interrupted()
            batches.append(len(pixels))
            return encoder.encode_pixels(pixels)

    with pytest.raises(Interrupted):
        run_index(settings, [str(media)], encoder=StopsAfterTwoBatches(), progress=False)
    assert count(settings, StagedVector) == sum(batches) == 6  # batch size 3
    assert count(settings, MediaItem) == 0  # nothing was published

    summary = run_index(settings, [str(media)], encoder=encoder, progress=False)
    assert summary.resumed == 6 and summary.embedded == len(GOOD_IMAGES) + 12 - 6
    assert summary.added == len(GOOD_IMAGES) + 12
    assert count(settings, StagedVector) == 0
    assert len(consistent(settings).live().searcher) == len(GOOD_IMAGES) + 12


HOLD_LOCK = textwrap.dedent("""
    import sys, time
    from spyglass.search.catalog.lock import indexer_lock
    from spyglass.search.catalog.db import create_db_engine
    from spyglass.search.settings import Settings
    settings = Settings.from_env()
    with indexer_lock(create_db_engine(settings.db_url), settings.home):
        open(sys.argv[1], "w").close()
        time.sleep(600)
""")


@contextlib.contextmanager
def lock_held_by_another_process(env: dict, tmp_path):
    """A process holding the indexer lock for the block; it is kill -9ed at the end. Yields it."""
    ready = tmp_path / "holding"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(ready)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        yield holder
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


def test_second_indexer_exits_at_once_and_a_killed_holder_frees_the_lock(settings, media, tmp_path):
    env = spyglass_env(settings)
    run_spyglass("db", "upgrade", env=env)
    with lock_held_by_another_process(env, tmp_path) as holder:
        started = time.monotonic()
        refused = run_spyglass("reindex", str(media), env=env)
        assert refused.returncode == 1
        assert f"another indexer is running (pid {holder.pid}" in refused.stderr
        assert time.monotonic() - started < 30  # it did not wait for the holder
        with pytest.raises(IndexerBusy):
            with indexer_lock(create_db_engine(settings.db_url), settings.home):
                pass
    # The kernel (flock) or the server (advisory lock) dropped the dead holder's lock.
    accepted = run_spyglass("reindex", "--no-progress", str(media), env=env)
    assert accepted.returncode == 0, accepted.stderr


def test_model_swap_builds_beside_the_live_index_then_swaps(settings, media, encoder, other_model):
    first = run_index(settings, [str(media)], encoder=encoder, progress=False)
    other = settings.override(model=str(other_model[0]), pretrained=str(other_model[1]))
    from spyglass.search.model.encoder import load_encoder

    other_encoder = load_encoder(str(other_model[0]), str(other_model[1]), device="cpu")
    answered_during = []

    class Watching:
        """The new model, checking what search answers from while the new index is built."""

        def __getattr__(self, name):
            return getattr(other_encoder, name)

        def encode_pixels(self, pixels):
            live = SearchEngine(settings).live()
            answered_during.append((live.generation.id, live.searcher.dim))
            return other_encoder.encode_pixels(pixels)

    summary = run_reindex(other, [str(media)], encoder=Watching(), progress=False)
    assert summary.updated == len(GOOD_IMAGES)
    assert set(answered_during) == {(first.generation_id, 32)}  # the old index, all along
    engine = consistent(other)
    assert engine.live().searcher.dim == 24 and engine.live().generation.id == first.generation_id + 1
    assert count(settings, IndexGeneration) == 2  # one publish: never a half-built new index


def test_damaged_new_generation_is_refused_and_the_previous_keeps_serving(settings, media, encoder, monkeypatch):
    from spyglass.search.store import segmented as segments

    monkeypatch.setattr(segments, "DELTA_FRACTION", 1.0)  # keep the new vector in its own delta file
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    engine = SearchEngine(settings, encoder_loader=lambda a, p: encoder)
    good = engine.search_text("x").generation_id
    Image.new("RGB", (20, 20), (1, 1, 1)).save(media / "added.png")
    newer = run_index(settings, [str(media)], encoder=encoder, progress=False).generation_id
    with engine.catalog.sessions() as session:
        # The newer generation's own file: the delta segment that holds added.png's vector.
        filename = session.get(IndexGeneration, newer).manifest().deltas[-1].filename
    path = settings.index_dir / filename
    path.write_bytes(path.read_bytes()[:-40])  # truncated

    assert engine.search_text("x").generation_id == good  # kept serving
    fresh = SearchEngine(settings, encoder_loader=lambda a, p: encoder)
    assert fresh.search_text("x").generation_id == good  # a new worker falls back too

    report = check_index(settings)
    assert not report.ok and "truncated" in report.file_problem
    repaired = check_index(settings, repair=True)
    assert repaired.rows_without_vectors  # added.png had only the damaged generation's vector
    assert check_index(settings).ok
    run_reindex(settings, encoder=encoder, progress=False)
    assert consistent(settings).catalog.item_by_path(str(media / "added.png")) is not None


def test_check_finds_gone_files_and_repair_drops_them(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    assert check_index(settings).ok
    (media / "red.jpg").unlink()
    report = check_index(settings)
    assert report.missing_files == [str(media / "red.jpg")] and not report.ok
    check_index(settings, repair=True)
    assert check_index(settings).ok
    assert len(consistent(settings).live().searcher) == len(GOOD_IMAGES) - 1


def test_check_command_exit_codes(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    env = spyglass_env(settings)
    assert run_spyglass("check", env=env).returncode == 0
    (media / "red.jpg").unlink()
    failing = run_spyglass("check", env=env)
    assert failing.returncode == 1 and "items whose file is gone: 1" in failing.stdout
    repaired = run_spyglass("check", "--repair", env=env)
    assert repaired.returncode == 0 and "repaired:" in repaired.stdout


def test_writer_connections_take_the_sqlite_lock_up_front(tmp_path):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    url = f"sqlite:///{tmp_path / 'c.db'}"
    writer, other = create_db_engine(url, writer=True), create_db_engine(url, writer=True)
    with writer.begin() as connection:
        connection.execute(text("CREATE TABLE t (x INTEGER)"))
    with writer.connect() as held:
        held.execute(text("SELECT 1"))  # only a read, but BEGIN IMMEDIATE took the write lock
        with other.connect() as blocked:
            blocked.connection.dbapi_connection.execute("PRAGMA busy_timeout=100")
            with pytest.raises(OperationalError, match="locked"):
                blocked.execute(text("SELECT 1"))  # its own BEGIN IMMEDIATE waits, then gives up
        held.rollback()
    with create_db_engine(url).connect() as reader:  # plain readers are never blocked (WAL)
        assert reader.execute(text("SELECT count(*) FROM t")).scalar() == 0


def test_a_model_swap_while_a_folder_is_missing_is_refused_and_keeps_its_items(settings, media, tmp_path, encoder,
                                                                              other_model):
    extra = tmp_path / "usb-disk"
    extra.mkdir()
    for i in range(3):
        Image.new("RGB", (30, 30), (i * 80, 9, 9)).save(extra / f"on-usb-{i}.png")
    run_index(settings, [str(media), str(extra)], encoder=encoder, progress=False)
    before = consistent(settings).live().generation
    os.rename(extra, tmp_path / "unplugged")
    other = settings.override(model=str(other_model[0]), pretrained=str(other_model[1]))

    for attempt in (lambda: run_reindex(other, progress=False),
                    lambda: run_index(other, [str(media)], rebuild=True, progress=False)):
        with pytest.raises(ConfigError, match="usb-disk is missing .* holds 3 items") as refused:
            attempt()
        assert "--drop-missing" in str(refused.value)
    engine = consistent(settings)
    assert engine.live().generation.id == before.id and len(engine.live().searcher) == before.vector_count

    # Asked for, the swap drops the missing folder's items; they come back with the folder.
    summary = run_reindex(other, progress=False, drop_missing=True)
    assert summary.removed == 3
    assert len(consistent(other).live().searcher) == len(GOOD_IMAGES) and consistent(other).live().searcher.dim == 24
    os.rename(tmp_path / "unplugged", extra)
    assert run_reindex(other, progress=False).added == 3


def test_repair_takes_the_lock_before_it_reads(settings, media, encoder, monkeypatch):
    """A reindex that publishes just before the repair gets the lock must not be undone by it."""
    import spyglass.indexer.check as check_module

    run_index(settings, [str(media)], encoder=encoder, progress=False)
    (media / "red.jpg").unlink()  # something for the repair to do
    real_lock = check_module.indexer_lock

    @contextlib.contextmanager
    def lock_won_after_a_reindex(*args, **kwargs):
        Image.new("RGB", (20, 20), (3, 200, 3)).save(media / "arrived-meanwhile.png")
        run_index(settings, [str(media)], encoder=encoder, progress=False)
        with real_lock(*args, **kwargs):
            yield

    monkeypatch.setattr(check_module, "indexer_lock", lock_won_after_a_reindex)
    check_index(settings, repair=True)
    engine = consistent(settings)  # the reindex's work is all there: nothing stale republished
    assert engine.catalog.item_by_path(str(media / "arrived-meanwhile.png")) is not None


def test_repair_never_republishes_another_models_vectors(settings, media, encoder, other_model):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    other = settings.override(model=str(other_model[0]), pretrained=str(other_model[1]))
    swapped = run_reindex(other, progress=False).generation_id
    engine = SearchEngine(other)
    with engine.catalog.sessions() as session:
        path = other.index_dir / session.get(IndexGeneration, swapped).filename
    path.write_bytes(b"damaged")
    with pytest.raises(IndexFileError, match="of the live model"):
        check_index(other, repair=True)
    assert engine.catalog.live_generation().id == swapped  # nothing published under the new model


def test_a_killed_run_is_reported_interrupted_not_running(settings, media):
    env = spyglass_env(settings)
    process = subprocess.Popen([sys.executable, "-m", "spyglass.cli", "index", "--no-progress", str(media)],
                               env={**env, "SPYGLASS_FAILPOINT": "embed"}, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if "spyglass failpoint embed" in line:
                break
        assert json.loads(run_spyglass("status", "--json", env=env).stdout)["last_run"]["status"] == "running"
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    assert json.loads(run_spyglass("status", "--json", env=env).stdout)["last_run"]["status"] == "interrupted"
    after = run_spyglass("index", "--no-progress", str(media), env=env)
    assert "1 earlier run(s) had been killed" in after.stderr
    with SearchEngine(settings).catalog.sessions() as session:
        assert [r.status for r in session.scalars(select(IndexRun).order_by(IndexRun.id))] == ["interrupted", "done"]


def test_nothing_is_migrated_while_another_indexer_holds_the_lock(settings, media, tmp_path):
    env = spyglass_env(settings)
    with lock_held_by_another_process(env, tmp_path):
        for command in (["index", str(media)], ["db", "upgrade"]):
            refused = run_spyglass(*command, env=env)
            assert refused.returncode == 1 and "another indexer is running" in refused.stderr, command
        from sqlalchemy import inspect

        assert inspect(create_db_engine(settings.db_url)).get_table_names() == []  # still empty


def test_the_nightly_loop_goes_on_after_a_database_failure(tmp_path, tiny_model):
    env = spyglass_env(Settings(home=tmp_path / "home", database_url="postgresql://spyglass@127.0.0.1:9/gone",
                                model=str(tiny_model[0]), pretrained=str(tiny_model[1]), device="cpu"))
    process = subprocess.Popen([sys.executable, "-m", "spyglass.cli", "reindex", "--every", "1s", str(tmp_path)],
                               env=env, stderr=subprocess.PIPE, text=True)
    errors = []
    try:
        deadline = time.monotonic() + 60
        for line in process.stderr:
            if line.startswith("Error: "):
                errors.append(line)
            if len(errors) == 3 or time.monotonic() > deadline:
                break
        assert process.poll() is None  # still looping
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    assert len(errors) == 3 and all("the catalog database failed" in e for e in errors)
