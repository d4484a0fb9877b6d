"""Hundreds of hostile embedding folders against one live library: a refused import publishes
nothing; an accepted one leaves every indexed item as it was, stores only what the rules allow,
and serves 0 5xx. SPYGLASS_HOSTILE_IMPORTS sets how many (`make fuzz` runs 2,000)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from conftest import MEDIA
from hostile_embeddings import DIM, Library, make_case
from spyglass.indexer.check import check_index
from spyglass.indexer.import_job import run_import
from spyglass.indexer.import_rows import MAX_CAPTION_CHARS
from spyglass.indexer.job import run_index
from spyglass.search.engine import SearchEngine
from spyglass.search.errors import SpyglassError
from spyglass.search.catalog.schema import MediaItem
from spyglass.web import create_app

CASES = int(os.environ.get("SPYGLASS_HOSTILE_IMPORTS", "120"))
FIRST_SEED = int(os.environ.get("SPYGLASS_HOSTILE_IMPORT_SEED", "0"))


def make_library(base, settings, encoder) -> Library:
    root = base / "library"
    shutil.copytree(MEDIA, root)
    run_index(settings, [str(root)], encoder=encoder, progress=False)
    indexed = [str(p) for p in root.rglob("*") if p.is_file() and p.name not in ("corrupt.jpg", "notes.txt")]
    fresh_folder = root / "fresh"
    fresh_folder.mkdir()
    fresh = []
    for i in range(12):
        path = fresh_folder / f"new {i}.png"
        Image.new("RGB", (10 + i, 12), (20 * i, 90, 200 - 10 * i)).save(path)
        fresh.append(str(path))
    outside = base / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    os.mkfifo(root / "trap.png")
    (root / "link-out.png").symlink_to(outside)
    (root / "folder.png").mkdir()
    (root / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    traps = [str(root / name) for name in ("trap.png", "link-out.png", "folder.png", "clip.mp4", "notes.txt",
                                           "corrupt.jpg", "gone.png")]
    secrets = [str(outside), "/etc/passwd", "/etc/shadow", str(settings.home / "spyglass.db"), "/dev/zero"]
    return Library(root, indexed, fresh, traps, secrets)


def snapshot(settings) -> tuple:
    """Everything a refused import must leave alone: the live generation and every item row."""
    engine = SearchEngine(settings)
    try:
        live = engine.catalog.live_generation()
        with engine.catalog.sessions() as session:
            rows = {row.path: (row.id, row.content_hash, row.caption, row.url, row.size, row.origin)
                    for row in session.scalars(select(MediaItem))}
        return (live.id if live else None), rows
    finally:
        engine.close()


def vectors_of(settings, ids: list[int]) -> np.ndarray:
    engine = SearchEngine(settings)
    try:
        return engine.live().searcher.vectors(ids)
    finally:
        engine.close()


def assert_serves(client, case, items: dict) -> None:
    probes = [("post", "/api/v1/search", {"json": {"embedding": np.random.default_rng(case.seed).normal(
                  size=DIM).tolist(), "k": 50}}),
              ("post", "/api/v1/search", {"json": {"text": "a red bicycle", "k": 20}}),
              ("post", "/knn-service", {"json": {"text": "cat", "num_images": 40, "indice_name": "default"}}),
              ("get", "/api/v1/status", {})]
    for method, path, options in probes:
        response = getattr(client, method)(path, **options)
        assert response.status_code < 500, (str(case), path, response.data[:300])
    for path, (item_id, *_rest) in list(items.items())[-12:]:  # the newest items, whole
        for tail in ("", "/thumbnail", "/file"):
            response = client.get(f"/api/v1/items/{item_id}{tail}")
            assert response.status_code < 500, (str(case), path, tail, response.data[:300])


def assert_rules(items: dict, library: Library, before: dict, case) -> None:
    for path, (item_id, content, caption, url, size, origin) in items.items():
        if path in before and before[path][5] == "index":
            assert items[path] == before[path], (str(case), "an indexed item changed", path)
        if origin == "import" and url == path:  # a remote item: only an http(s) URL
            assert path.lower().startswith(("http://", "https://")), (str(case), path)
        else:
            assert path.startswith(str(library.root) + os.sep), (str(case), "an item outside the library", path)
        assert url is None or url.lower().startswith(("http://", "https://")), (str(case), url)
        assert caption is None or (len(caption) <= MAX_CAPTION_CHARS and "\x00" not in caption), str(case)


@pytest.mark.slow
def test_hostile_imports_publish_nothing_when_refused_and_serve_without_5xx(tmp_path, sqlite_settings, encoder):
    settings = sqlite_settings.override(checkpoint_items=7)  # publishes inside an import too
    library = make_library(tmp_path, settings, encoder)
    indexed_ids = [row[0] for row in snapshot(settings)[1].values()]
    indexed_vectors = vectors_of(settings, indexed_ids)
    client = create_app(settings).test_client()
    accepted = refused = 0
    for seed in range(FIRST_SEED, FIRST_SEED + CASES):
        case = make_case(seed, tmp_path / "cases" / str(seed), library)
        before = snapshot(settings)
        try:
            run_import(settings, case.source, str(library.root) if seed % 3 else None, progress=False,
                       echo=lambda message: None)
        except SpyglassError as exc:
            if os.environ.get("SPYGLASS_HOSTILE_IMPORT_VERBOSE"):
                print(f"{case}\n    refused: {exc}")
            refused += 1
            assert snapshot(settings) == before, (str(case), "a refused import published something")
            continue
        except Exception as exc:  # noqa: BLE001 - the point: nothing else may escape
            raise AssertionError(f"{case}: {type(exc).__name__}: {exc}") from exc
        accepted += 1
        _, items = snapshot(settings)
        assert_rules(items, library, before[1], case)
        assert_serves(client, case, items)
        if seed % 50 == 49:
            assert check_index(settings).ok, str(case)
    np.testing.assert_array_equal(vectors_of(settings, indexed_ids), indexed_vectors)  # never replaced
    assert check_index(settings).ok
    assert accepted > CASES // 5 and refused > CASES // 10, (accepted, refused)  # both kinds were exercised
