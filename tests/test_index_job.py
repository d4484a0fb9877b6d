"""The index job end to end on SQLite and PostgreSQL: add, re-run, change, move, delete."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from conftest import GOOD_IMAGES, index_files, kept_index_files
from spyglass.indexer.job import run_index
from spyglass.search.engine import SearchEngine
from spyglass.search.errors import ModelMismatch, NoIndex
from spyglass.search.catalog.schema import IndexGeneration, MediaItem


def engine_for(settings, encoder=None) -> SearchEngine:
    """A query engine that reuses the session's tiny encoder when given one."""
    return SearchEngine(settings, encoder_loader=(lambda a, p: encoder) if encoder else None)


def assert_consistent(settings) -> SearchEngine:
    """FAISS ids of the live generation are exactly the catalog's item ids."""
    engine = engine_for(settings)
    live = engine.live()
    with engine.catalog.sessions() as session:
        rows = set(session.scalars(select(MediaItem.id)))
    ids = live.searcher.ids()
    assert len(ids) == len(set(ids)), "duplicate ids in the index"
    assert set(ids.tolist()) == rows
    assert live.generation.vector_count == len(rows)
    return engine


def test_index_then_search_finds_each_image_first(settings, media, encoder):
    summary = run_index(settings, [str(media)], encoder=encoder, progress=False)

    assert summary.added == len(GOOD_IMAGES)
    skipped = [(os.path.basename(s.path), "corrupt" in s.reason) for s in summary.skipped]
    assert skipped == [("corrupt.jpg", True)]
    engine = assert_consistent(settings)
    for name in GOOD_IMAGES:
        result = engine.search_image(media / name, k=3)
        assert result.hits[0].item.path == str(media / name)
        assert result.hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


def test_catalog_keeps_file_facts(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    engine = engine_for(settings)

    rotated = engine.catalog.item_by_path(str(media / "rotated-exif.jpg"))
    gif = engine.catalog.item_by_path(str(media / "nested/deeper/green-anim.gif"))
    assert (rotated.width, rotated.height, rotated.format) == (20, 40, "JPEG")  # EXIF applied
    assert (gif.format, gif.kind) == ("GIF", "image")
    assert rotated.size == (media / "rotated-exif.jpg").stat().st_size
    assert len(rotated.content_hash) == 64


def test_text_search_ranks_every_item(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    result = engine_for(settings, encoder).search_text("a red bicycle leaning on a wall", k=50)

    assert len(result.hits) == len(GOOD_IMAGES) == result.total
    assert [h.rank for h in result.hits] == list(range(1, len(GOOD_IMAGES) + 1))
    assert [h.score for h in result.hits] == sorted((h.score for h in result.hits), reverse=True)


def test_rerun_on_unchanged_folder_changes_nothing(settings, media, encoder):
    first = run_index(settings, [str(media)], encoder=encoder, progress=False)
    again = run_index(settings, [str(media)], encoder=encoder, progress=False)

    assert (again.added, again.updated, again.removed, again.moved, again.embedded) == (0, 0, 0, 0, 0)
    assert again.unchanged == len(GOOD_IMAGES)
    assert len(again.skipped) == 1  # the corrupt file is still reported, but not read again
    engine = engine_for(settings)
    with engine.catalog.sessions() as session:
        assert session.scalar(select(func.count(IndexGeneration.id))) == 1
    assert engine.live().generation.id == first.generation_id


def test_changed_file_is_reembedded_under_the_same_id(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    engine = engine_for(settings)
    before = engine.catalog.item_by_path(str(media / "red.jpg"))
    old_vector = engine.live().searcher.vector(before.id).copy()

    Image.new("RGB", (50, 50), (0, 0, 0)).save(media / "red.jpg")
    summary = run_index(settings, [str(media)], encoder=encoder, progress=False)

    assert (summary.added, summary.updated, summary.removed) == (0, 1, 0)
    after = engine.catalog.item_by_path(str(media / "red.jpg"))
    assert after.id == before.id and after.content_hash != before.content_hash
    assert (after.width, after.height) == (50, 50)
    engine = assert_consistent(settings)
    assert not np.allclose(engine.live().searcher.vector(after.id), old_vector)


def test_touched_file_keeps_its_vector(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    os.utime(media / "red.jpg", ns=(10**18, 10**18))
    summary = run_index(settings, [str(media)], encoder=encoder, progress=False)

    assert (summary.added, summary.updated, summary.embedded) == (0, 0, 0)
    assert engine_for(settings).catalog.item_by_path(str(media / "red.jpg")).mtime_ns == 10**18


def test_deleted_file_leaves_index_and_catalog(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    (media / "photo.TIFF").unlink()
    shutil.rmtree(media / "nested")
    summary = run_index(settings, [str(media)], encoder=encoder, progress=False)

    assert summary.removed == 3
    engine = assert_consistent(settings)
    assert engine.catalog.item_by_path(str(media / "photo.TIFF")) is None
    assert len(engine.live().searcher) == len(GOOD_IMAGES) - 3


def test_moved_file_keeps_id_and_vector(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    engine = engine_for(settings)
    item = engine.catalog.item_by_path(str(media / "red.jpg"))
    (media / "albums").mkdir()
    os.rename(media / "red.jpg", media / "albums" / "red renamed.jpg")

    summary = run_index(settings, [str(media)], encoder=encoder, progress=False)

    assert (summary.moved, summary.added, summary.removed, summary.embedded) == (1, 0, 0, 0)
    moved = engine.catalog.item_by_path(str(media / "albums" / "red renamed.jpg"))
    assert moved.id == item.id
    assert engine.search_image(media / "albums" / "red renamed.jpg", k=1).hits[0].item.id == item.id
    assert_consistent(settings)


def test_new_files_in_second_run_are_added(settings, media, encoder, tmp_path):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    Image.new("RGB", (30, 70), (10, 200, 90)).save(media / "new.png")
    summary = run_index(settings, [str(media)], encoder=encoder, progress=False)

    assert (summary.added, summary.unchanged) == (1, len(GOOD_IMAGES))
    assert_consistent(settings)


def test_checkpoints_publish_generations_and_clean_old_files(settings, media, encoder):
    settings = settings.override(checkpoint_items=2, batch_size=2)
    run_index(settings, [str(media)], encoder=encoder, progress=False)

    engine = assert_consistent(settings)
    with engine.catalog.sessions() as session:
        generations = session.scalar(select(func.count(IndexGeneration.id)))
    assert generations >= 4
    # The live generation and the one before it are kept; older files are deleted.
    assert index_files(settings) == kept_index_files(settings)
    assert not list(settings.index_dir.glob(".*tmp"))


def test_model_change_is_refused_then_rebuilt(settings, media, encoder, other_model):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    other = settings.override(model=str(other_model[0]), pretrained=str(other_model[1]))

    with pytest.raises(ModelMismatch) as refused:
        run_index(other, [str(media)], progress=False)
    assert "--rebuild" in str(refused.value)
    assert engine_for(settings).live().searcher.dim == 32  # the old index still answers

    summary = run_index(other, [str(media)], rebuild=True, progress=False)
    assert summary.updated == len(GOOD_IMAGES)
    engine = assert_consistent(other)
    assert engine.live().searcher.dim == 24
    assert engine.live().generation.model.architecture == str(other_model[0])
    assert engine.search_image(media / "red.jpg", k=1).hits[0].item.path == str(media / "red.jpg")


def test_empty_folder_indexes_nothing(settings, tmp_path, encoder):
    (tmp_path / "empty").mkdir()
    summary = run_index(settings, [str(tmp_path / "empty")], encoder=encoder, progress=False)

    assert summary.added == 0
    with pytest.raises(NoIndex):
        engine_for(settings).search_text("anything")


def test_two_roots_are_indexed_and_diffed_separately(settings, media, tmp_path, encoder):
    other_root = tmp_path / "more"
    other_root.mkdir()
    Image.new("RGB", (40, 40), (90, 90, 200)).save(other_root / "extra.jpg")
    run_index(settings, [str(media), str(other_root)], encoder=encoder, progress=False)

    # Indexing one root again must not remove what the other root holds.
    summary = run_index(settings, [str(other_root)], encoder=encoder, progress=False)
    assert (summary.removed, summary.unchanged) == (0, 1)
    assert len(assert_consistent(settings).live().searcher) == len(GOOD_IMAGES) + 1


def test_a_full_disk_is_one_clear_line_and_keeps_what_was_published(sqlite_settings, media, monkeypatch):
    import errno

    from click.testing import CliRunner

    from conftest import spyglass_env
    from spyglass import cli as cli_module
    from spyglass.search.store import segmented as segments

    env = spyglass_env(sqlite_settings)
    runner = CliRunner()
    first = runner.invoke(cli_module.cli, ["index", "--no-progress", str(media)], env=env)
    assert first.exit_code == 0, first.output
    Image.new("RGB", (30, 30), (5, 5, 5)).save(media / "one-more.png")

    def full(_index, directory, filename):
        raise OSError(errno.ENOSPC, "No space left on device", str(directory / filename))

    monkeypatch.setattr(segments, "write_index_file", full)
    result = runner.invoke(cli_module.cli, ["index", "--no-progress", str(media)], env=env)
    assert result.exit_code == 1
    assert "the disk is full writing" in result.output and "everything published before this is kept" in result.output
    assert "Traceback" not in result.output
    engine = assert_consistent(sqlite_settings)  # the first run's generation, whole
    assert engine.catalog.item_by_path(str(media / "one-more.png")) is None


def test_ids_of_deleted_items_are_never_handed_out_again(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    Image.new("RGB", (30, 30), (9, 9, 9)).save(media / "newest.png")
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    engine = SearchEngine(settings)
    newest = engine.catalog.item_by_path(str(media / "newest.png")).id
    (media / "newest.png").unlink()
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    Image.new("RGB", (30, 30), (200, 9, 9)).save(media / "after.png")
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    after = engine.catalog.item_by_path(str(media / "after.png")).id
    assert after > newest  # a client holding the deleted item's id never gets another item
    assert_consistent(settings)
    engine.close()


def test_a_rebuild_reads_its_vectors_back_from_staging_instead_of_holding_them(settings, media, encoder,
                                                                               monkeypatch):
    from spyglass.indexer import target as jobs  # where a run publishes from

    run_index(settings, [str(media)], encoder=encoder, progress=False)
    before = SearchEngine(settings)
    vectors = {item_id: before.live().stored.vector(item_id) for item_id in before.live().stored.ids().tolist()}
    before.close()
    held = []
    real_publish = jobs.publish

    def watching(sessions, index, index_dir, model_id, factory, changes, **options):
        held.extend(v for _, _, v in changes.reembedded)
        return real_publish(sessions, index, index_dir, model_id, factory, changes, **options)

    monkeypatch.setattr(jobs, "publish", watching)
    summary = run_index(settings, [str(media)], rebuild=True, encoder=encoder, progress=False)
    assert summary.updated == len(GOOD_IMAGES) and held and all(v is None for v in held)
    engine = assert_consistent(settings)
    # The same model on the same files: the vectors read back from staging are the embeddings.
    for item_id, vector in vectors.items():
        assert np.allclose(engine.live().stored.vector(item_id), vector, atol=1e-5)


def test_a_decode_that_runs_out_of_memory_is_retried_next_run(sqlite_settings, media, encoder, monkeypatch):
    """A MemoryError says nothing about the file: it is skipped now, not remembered, and retried."""
    from PIL import ImageFile

    real_load = ImageFile.ImageFile.load

    def starved(image):
        if image.size == (33, 21):
            raise MemoryError
        return real_load(image)

    Image.new("RGB", (33, 21), (9, 80, 9)).save(media / "big.png")
    monkeypatch.setattr(ImageFile.ImageFile, "load", starved)
    first = run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    assert [s.reason for s in first.skipped if s.path.endswith("big.png")] == [
        "the memory ran out while decoding the image"]
    monkeypatch.setattr(ImageFile.ImageFile, "load", real_load)
    second = run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    assert second.added == 1 and not [s for s in second.skipped if s.path.endswith("big.png")]
    assert [s.path for s in second.skipped] == [str(media / "corrupt.jpg")]  # what is about the file stays
