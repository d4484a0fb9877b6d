"""What an import may and may not do to a live library: text, magnitudes, duplicates, paths, sizes."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import MEDIA, run_spyglass, spyglass_env
from spyglass.indexer.check import check_index
from spyglass.indexer.import_job import run_import
from spyglass.indexer.job import run_index
from spyglass.indexer.import_rows import MAX_CAPTION_CHARS
from spyglass.search.engine import SearchEngine
from spyglass.search.errors import BadInput
from spyglass.web import create_app

DIM = 32  # the tiny test model's


def unit(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def imported(settings, source, media_root=None) -> tuple[object, list[str]]:
    """Run an import in this process; returns its summary and what it said."""
    said: list[str] = []
    summary = run_import(settings, source, str(media_root) if media_root else None, progress=False, echo=said.append)
    return summary, said


def items(settings) -> dict[str, dict]:
    """Every catalog item by path: the fields an import could change."""
    engine = SearchEngine(settings)
    try:
        from sqlalchemy import select

        from spyglass.search.catalog.schema import MediaItem

        with engine.catalog.sessions() as session:
            return {row.path: {"id": row.id, "hash": row.content_hash, "caption": row.caption, "url": row.url,
                               "size": row.size, "origin": row.origin}
                    for row in session.scalars(select(MediaItem))}
    finally:
        engine.close()


def best(client, vector, k: int = 1) -> list[dict]:
    response = client.post("/api/v1/search", json={"embedding": np.asarray(vector, float).tolist(), "k": k})
    assert response.status_code == 200, response.data[:300]
    return response.json["results"]


def publish_directly(settings, rows: list[tuple[dict, np.ndarray]], factory: str = "auto") -> None:
    """Publish catalog rows and their vectors straight through publish(), as an older version of the
    importer could have (no checks): what the repairs and the link rules must cope with."""
    from spyglass.indexer.publish import PendingChanges, publish
    from spyglass.search.catalog.db import create_db_engine, session_factory
    from spyglass.search.catalog.queries import live_generation
    from spyglass.search.store.segmented import SegmentedStore

    sessions = session_factory(create_db_engine(settings.db_url, writer=True))
    with sessions() as session:
        live = live_generation(session)
        store = SegmentedStore.load(settings.index_dir, live.base_file(), live.manifest())
        model_id = live.model_id
    publish(sessions, store, settings.index_dir, model_id, factory, PendingChanges(new=rows))


def remote_row(url: str, **fields) -> dict:
    """The catalog fields of a remote item."""
    return {"path": url, "url": url, "root_id": None, "size": 0, "mtime_ns": 0, "content_hash": "0" * 64,
            "kind": "image", "format": "", "width": 0, "height": 0, "origin": "import", **fields}


@pytest.fixture
def library(tmp_path, sqlite_settings, encoder):
    """An indexed copy of the test images."""
    media = tmp_path / "media"
    shutil.copytree(MEDIA, media)
    run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    return media


def test_captions_are_decoded_by_the_stated_rule_and_bad_urls_refuse_their_row(tmp_path, sqlite_settings):
    source = tmp_path / "csv"
    source.mkdir()
    np.save(source / "v.npy", unit(5, seed=1))
    (source / "v.csv").write_bytes(
        b"url,caption\n"
        b"https://x.test/0.jpg,caf\xe9 au lait\n"            # Latin-1: read as Windows-1252
        b"https://x.test/\xff\xfe.jpg,not utf-8 url\n"        # a url that is not UTF-8: the row is refused
        b"https://x.test/2.jpg,na\xc3\xafve \xe2\x80\x94 ok\n"  # UTF-8 as it is
        b"javascript:alert(1),script\n"                     # not http(s): refused
        b"https://x.test/4.jpg,\x01ctl\n")                  # a control character becomes U+FFFD
    summary, said = imported(sqlite_settings, source / "v.npy")
    assert (summary.added, len(summary.skipped), summary.recoded) == (3, 2, 1)
    assert any("v.csv row 1: its url is not valid UTF-8" in line for line in said), said
    assert any("v.csv row 3: its url is not an absolute http:// or https:// URL" in line for line in said), said
    client = create_app(sqlite_settings).test_client()
    captions = {hit["source_url"]: hit["caption"] for hit in best(client, np.ones(DIM), k=10)}
    assert captions == {"https://x.test/0.jpg": "café au lait", "https://x.test/2.jpg": "naïve — ok",
                        "https://x.test/4.jpg": "\ufffdctl"}
    knn = client.post("/knn-service", json={"embedding_input": [1.0] * DIM, "num_images": 10})
    assert knn.status_code == 200 and len(knn.json) == 3


def test_a_caption_column_that_is_not_text_refuses_the_import(tmp_path, sqlite_settings):
    source = tmp_path / "dict"
    source.mkdir()
    np.save(source / "v.npy", unit(3, seed=2))
    pq.write_table(pa.table({"url": [f"https://x.test/{i}" for i in range(3)],
                             "caption": [{"en": "a"}, {"en": "b"}, {"en": "c"}]}), source / "v.parquet")
    with pytest.raises(BadInput, match=r"the caption column of .*v.parquet holds struct"):
        imported(sqlite_settings, source / "v.npy")
    assert items(sqlite_settings) == {}


def test_a_nul_in_a_caption_is_stored_on_both_databases(tmp_path, settings):
    source = tmp_path / "nul"
    source.mkdir()
    np.save(source / "v.npy", unit(2, seed=3))
    pq.write_table(pa.table({"url": ["https://x.test/a", "https://x.test/b"],
                             "caption": ["before\x00after", "fine"]}), source / "v.parquet")
    summary, _ = imported(settings, source / "v.npy")
    assert summary.added == 2
    assert items(settings)["https://x.test/a"]["caption"] == "before\ufffdafter"


@pytest.mark.parametrize("scale", [1e-30, 1e-37, 1e30, 1e300])
def test_vectors_of_any_finite_magnitude_keep_their_direction_under_an_ivf_index(tmp_path, sqlite_settings,
                                                                                   scale):
    source = tmp_path / "scaled"
    source.mkdir()
    directions = unit(300, seed=4)
    raw = directions.astype(np.float64) * scale  # 1e300 only as float64; at 1e-37 float32 squares underflow
    np.save(source / "v.npy", raw if scale > 1e38 else raw.astype(np.float32))
    (source / "v.csv").write_text("url\n" + "".join(f"https://x.test/{i}.jpg\n" for i in range(300)))
    settings = sqlite_settings.override(index_factory="IVF4,Flat")
    summary, _ = imported(settings, source / "v.npy")
    assert summary.added == 300
    client = create_app(settings).test_client()
    hit = best(client, directions[17])[0]
    assert hit["source_url"] == "https://x.test/17.jpg" and hit["score"] == pytest.approx(1.0, abs=1e-4)
    assert check_index(settings).ok


@pytest.mark.parametrize("bad", ["nan", "inf", "zeros"])
def test_a_vector_that_cannot_be_a_unit_vector_refuses_the_import(tmp_path, sqlite_settings, bad):
    source = tmp_path / "bad"
    source.mkdir()
    vectors = unit(6, seed=5).astype(np.float64)
    vectors[4] = {"nan": np.nan, "inf": np.inf, "zeros": 0.0}[bad]
    if bad != "zeros":
        vectors[4, 1:] = 1.0  # one bad number is enough
    np.save(source / "v.npy", vectors)
    (source / "v.csv").write_text("url\n" + "".join(f"https://x.test/{i}\n" for i in range(6)))
    with pytest.raises(BadInput, match="row 4: the vector is not finite or is all zeros"):
        imported(sqlite_settings, source / "v.npy")
    assert items(sqlite_settings) == {}


def test_check_finds_a_vector_that_is_not_finite(tmp_path, sqlite_settings, library):
    """An index written before imports were checked can hold one: check says so, --repair drops it."""
    publish_directly(sqlite_settings, [(remote_row("https://x.test/poison"), np.full(DIM, np.nan, np.float32))])
    report = check_index(sqlite_settings)
    assert not report.ok and report.bad_vectors and "vectors that are not finite unit vectors: 1" in report.lines()
    repaired = check_index(sqlite_settings, repair=True)
    assert repaired.ok and "https://x.test/poison" not in items(sqlite_settings)
    assert check_index(sqlite_settings).ok


def test_duplicate_rows_are_merged_across_checkpoints_and_the_first_is_kept(tmp_path, sqlite_settings, library):
    source = tmp_path / "dups"
    source.mkdir()
    vectors = unit(12, seed=6)
    np.save(source / "v.npy", vectors)
    names = ["a", "b", "a", "c", "b", "d", "e", "a", "f", "g", "c", "h"]  # LAION repeats urls
    pq.write_table(pa.table({"url": [f"https://x.test/{n}.jpg" for n in names],
                             "caption": [f"row {i}" for i in range(12)]}), source / "v.parquet")
    settings = sqlite_settings.override(checkpoint_items=2)  # duplicates on both sides of a publish
    summary, _ = imported(settings, source / "v.npy")
    assert (summary.added, summary.merged, len(summary.skipped)) == (8, 4, 0)
    assert "4 duplicate rows merged (the first of each kept)" in summary.line()
    rows = items(settings)
    assert rows["https://x.test/a.jpg"]["caption"] == "row 0" and rows["https://x.test/c.jpg"]["caption"] == "row 3"
    client = create_app(settings).test_client()
    assert best(client, vectors[0])[0]["source_url"] == "https://x.test/a.jpg"
    assert check_index(settings).ok
    again, _ = imported(settings, source / "v.npy")  # a second import replaces, once each
    assert (again.added, again.updated, again.merged) == (0, 8, 4)
    assert len(items(settings)) == len(rows)


def test_an_import_never_replaces_an_indexed_item_nor_reads_outside_the_media_folders(tmp_path, sqlite_settings,
                                                                                        library):
    before = items(sqlite_settings)
    red = str(library / "red.jpg")
    outside = tmp_path / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    os.mkfifo(library / "pipe.png")  # a FIFO inside the library: never opened for a blocking read
    (library / "link.png").symlink_to(outside)  # a link out of the library (SPYGLASS_FOLLOW_SYMLINKS=inside)
    Image.new("RGB", (9, 7), (1, 2, 3)).save(library / "new.png")  # not indexed yet: an import may add it
    source = tmp_path / "attack"
    source.mkdir()
    vectors = unit(9, seed=7)
    np.save(source / "v.npy", vectors)
    pq.write_table(pa.table({
        "image_path": [red, None, "/etc/passwd", str(outside), str(library / "pipe.png"),
                       str(library / "link.png"), str(library / "notes.txt"), str(library / "new.png"),
                       str(library / ".." / "outside.png")],
        "url": [None, red, None, None, None, None, None, None, None],
        "caption": ["mine now"] + [None] * 8,
    }), source / "v.parquet")
    summary, said = imported(sqlite_settings, source / "v.npy", media_root=library)
    assert summary.added == 1 and len(summary.skipped) == 8, said
    reasons = "\n".join(said)
    assert "already indexed from the library: an import never replaces its vector" in reasons
    assert "row 1: its url is not an absolute http:// or https:// URL" in reasons
    assert "/etc/passwd is not inside a media folder" in reasons
    assert "outside.png is not inside a media folder" in reasons
    assert "pipe.png: not a regular file" in reasons
    assert "link.png: the file is a symbolic link to a place outside the media folders" in reasons
    assert "notes.txt is not an image file Spyglass indexes" in reasons
    after = items(sqlite_settings)
    assert {path: after[path] for path in before} == before  # every indexed item exactly as it was
    assert after[str(library / "new.png")]["origin"] == "import"
    client = create_app(sqlite_settings).test_client()
    assert best(client, vectors[0])[0]["score"] < 0.999  # the refused row's vector is nowhere
    # A later index run keeps its own vector for red.jpg: nothing of the import's survives there.
    summary = run_index(sqlite_settings, [str(library)], progress=False)
    assert summary.updated == 0


def test_remote_items_never_show_a_local_path(tmp_path, sqlite_settings):
    source = tmp_path / "paths"
    source.mkdir()
    np.save(source / "v.npy", unit(3, seed=8))
    pq.write_table(pa.table({"url": ["/srv/secret/x.jpg", "file:///etc/passwd", "https://ok.test/x.jpg"]}),
                   source / "v.parquet")
    summary, _ = imported(sqlite_settings, source / "v.npy")
    assert (summary.added, len(summary.skipped)) == (1, 2)
    client = create_app(sqlite_settings).test_client()
    hit = best(client, np.ones(DIM))[0]
    assert hit["file_url"] == hit["thumbnail_url"] == "https://ok.test/x.jpg"


def test_long_captions_are_cut_and_long_urls_refused(tmp_path, sqlite_settings):
    source = tmp_path / "long"
    source.mkdir()
    np.save(source / "v.npy", unit(4, seed=9))
    huge = "é" * (5 * 1024 * 1024)  # 10 MB of UTF-8 in one caption
    pq.write_table(pa.table({"url": ["https://x.test/1", "https://x.test/2", "https://x.test/" + "p" * 5000,
                                     "https://x.test/4"],
                             "caption": [huge, "short", "x", huge]}), source / "v.parquet")
    summary, said = imported(sqlite_settings, source / "v.npy")
    assert (summary.added, summary.shortened, len(summary.skipped)) == (3, 2, 1), said
    assert any("row 2: its url is longer than the 4,096 characters allowed" in line for line in said), said
    client = create_app(sqlite_settings).test_client()
    response = client.post("/api/v1/search", json={"embedding": [1.0] * DIM, "k": 3})
    # \u00e9 is 6 bytes of JSON: three cut captions and their items' other fields, not 30 MB.
    assert response.status_code == 200 and len(response.data) < 3 * (6 * MAX_CAPTION_CHARS + 2000)
    assert {len(hit["caption"]) for hit in response.json["results"]} == {MAX_CAPTION_CHARS, 5}


def test_hostile_npy_files_are_refused_in_one_line(tmp_path, sqlite_settings):
    env = spyglass_env(sqlite_settings)
    source = tmp_path / "npy"
    source.mkdir()
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (-5, 32), }"
    header += " " * (63 - len(header) % 64) + "\n"
    (source / "negative.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little")
                                          + header.encode() + b"\0" * 64)
    (source / "negative.csv").write_text("url\nhttps://x.test/1\n")
    result = run_spyglass("import", str(source / "negative.npy"), "--no-progress", env=env)
    assert result.returncode == 1 and "negative.npy is not a readable .npy array" in result.stderr
    assert "Traceback" not in result.stderr
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "v.npy")
    (fifo / "v.csv").write_text("url\nhttps://x.test/1\n")
    # A FIFO used to hang the import, holding the lock: a subprocess, so a hang fails the test.
    result = run_spyglass("import", str(fifo), "--no-progress", env=env, timeout=60, isolated=True)
    assert result.returncode == 1 and "v.npy is not a regular file" in result.stderr
    (fifo / "v.npy").unlink()
    np.save(fifo / "v.npy", unit(1, seed=1))
    (fifo / "v.csv").unlink()
    os.mkfifo(fifo / "v.csv")  # metadata that is a FIFO: not taken for a metadata file
    result = run_spyglass("import", str(fifo / "v.npy"), "--no-progress", env=env, timeout=60, isolated=True)
    assert result.returncode == 1 and "has no metadata file beside it" in result.stderr, result.stderr
    assert json.loads(run_spyglass("status", "--json", env=env).stdout)["items"] == 0


def test_a_catalog_imported_into_before_the_rules_shows_no_local_path_as_a_link(tmp_path, sqlite_settings, library):
    """Rows an older import stored with a path or a javascript: url are served, never linked."""
    legacy = unit(2, seed=11)
    urls = ["/srv/secret/x.jpg", "javascript:alert(1)"]
    publish_directly(sqlite_settings, [(remote_row(url, content_hash=str(i) * 64, caption="old"), vector)
                                       for i, (url, vector) in enumerate(zip(urls, legacy, strict=True))])
    client = create_app(sqlite_settings).test_client()
    for vector in legacy:
        hit = best(client, vector)[0]
        assert hit["score"] > 0.999 and hit["source_url"] is None
        assert hit["file_url"].startswith("http://localhost/api/v1/items/"), hit
        assert client.get(hit["file_url"]).status_code == 404


def test_an_approximate_index_is_not_trained_on_a_poisoned_vector(tmp_path, sqlite_settings, library):
    """A NaN vector an older import stored stops an IVF build with one line naming the repair."""
    settings = sqlite_settings.override(index_factory="IVF4,Flat")
    source = tmp_path / "many"
    source.mkdir()
    np.save(source / "v.npy", unit(400, seed=12))
    (source / "v.csv").write_text("url\n" + "".join(f"https://x.test/{i}\n" for i in range(400)))
    imported(settings, source / "v.npy")
    # As an older import did: no approximate index carried.
    publish_directly(settings, [(remote_row("https://x.test/poison"), np.full(DIM, np.nan, np.float32))], "IVF4,Flat")
    env = spyglass_env(settings) | {"SPYGLASS_INDEX_FACTORY": "IVF4,Flat"}
    result = run_spyglass("index", "--no-progress", str(library), env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "the index holds vectors that are not finite numbers" in result.stderr
    assert "run `spyglass check --repair`" in result.stderr
    assert run_spyglass("check", "--repair", env=env).returncode == 0
    again = run_spyglass("index", "--no-progress", str(library), env=env)
    assert again.returncode == 0, again.stderr
    assert check_index(settings).ok


def test_an_imported_local_file_touched_or_moved_keeps_its_imported_vector(tmp_path, sqlite_settings, library,
                                                                           encoder):
    """The import hashes files as the indexer does, so the plan recognises them (#20)."""
    fresh = library / "fresh.png"
    Image.new("RGB", (13, 9), (7, 70, 170)).save(fresh)
    source = tmp_path / "local"
    source.mkdir()
    vector = unit(1, seed=13)
    np.save(source / "v.npy", vector)
    pq.write_table(pa.table({"image_path": [str(fresh)], "caption": ["mine"]}), source / "v.parquet")
    assert imported(sqlite_settings, source / "v.npy", media_root=library)[0].added == 1
    client = create_app(sqlite_settings).test_client()
    os.utime(fresh, (1_600_000_000, 1_600_000_000))  # touched: same bytes, another mtime
    touched = run_index(sqlite_settings, [str(library)], encoder=encoder, progress=False)
    assert (touched.updated, touched.added) == (0, 0)
    hit = best(client, vector[0])[0]
    assert hit["name"] == "fresh.png" and hit["score"] == pytest.approx(1.0, abs=1e-5)
    (library / "nested").mkdir(exist_ok=True)
    os.replace(fresh, library / "nested" / "moved.png")
    moved = run_index(sqlite_settings, [str(library)], encoder=encoder, progress=False)
    assert (moved.moved, moved.added, moved.updated) == (1, 0, 0)
    hit = best(client, vector[0])[0]
    assert hit["name"] == "moved.png" and hit["score"] == pytest.approx(1.0, abs=1e-5) and hit["caption"] == "mine"
