"""`spyglass duplicates` and the folding of near-duplicates in results: the same bytes, a re-saved
photo, a re-encoded film; never two films that share only their black intro."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_spyglass, spyglass_env
from spyglass.indexer.job import run_index
from spyglass.search.arrange import Arrangement, arrange
from spyglass.search.engine import SearchEngine

# The tests' model has random weights: it finds any two flat-coloured pictures alike, so only a
# copy of one picture passes this.
STRICT = 0.999


def blocks(seed: int) -> Image.Image:
    """A picture of coloured blocks, different for every seed."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).resize((160, 120), Image.NEAREST)


@pytest.fixture
def library(tmp_path) -> Path:
    pytest.importorskip("av")
    from make_videos import write_video

    folder = tmp_path / "library"
    folder.mkdir()
    blocks(1).save(folder / "a.jpg", quality=92)
    shutil.copy(folder / "a.jpg", folder / "a copy.jpg")
    resaved = io.BytesIO()
    Image.open(folder / "a.jpg").save(resaved, "JPEG", quality=80)  # re-saved by an app: new bytes
    (folder / "a resaved.jpg").write_bytes(resaved.getvalue())
    for seed in (2, 3, 4):
        blocks(seed).save(folder / f"other {seed}.png")
    intro = (2, "solid", (0, 0, 0))
    write_video(folder / "film.mp4", [intro, (3, "texture", (200, 30, 30)), (3, "texture", (30, 200, 30))])
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(folder / "film.mp4"), "-c:v", "libx264",
                    "-crf", "30", str(folder / "film reencoded.mp4")], check=True)
    write_video(folder / "another film.mp4", [intro, (3, "texture", (30, 30, 200)), (3, "texture", (200, 200, 30))])
    return folder


def test_duplicates_lists_bytes_photos_and_films(settings, library):
    run_index(settings, [str(library)], progress=False)
    answer = run_spyglass("duplicates", "--min-cosine", str(STRICT), "--json", env=spyglass_env(settings))
    assert answer.returncode == 0, answer.stderr
    sets = [(found["reason"], {Path(item["path"]).name for item in found["items"]}) for found in json.loads(answer.stdout)]
    assert ("same bytes", {"a.jpg", "a copy.jpg"}) in sets
    alike = [names for reason, names in sets if reason == "look alike"]
    assert len(alike) == 1 and {"a.jpg", "a resaved.jpg"} <= alike[0] and not any("other" in n for n in alike[0])
    films = [names for reason, names in sets if reason.startswith("same film")]
    assert films == [{"film.mp4", "film reencoded.mp4"}]
    assert not any("another film.mp4" in names for _, names in sets)
    lines = run_spyglass("duplicates", "--min-cosine", str(STRICT), env=spyglass_env(settings))
    assert "# same bytes: 2 items" in lines.stdout and "items could go, keeping one of each" in lines.stderr


def test_a_shared_intro_never_pairs_two_films(settings, library):
    from spyglass.search.duplicates import _same_film

    run_index(settings, [str(library)], progress=False)
    engine = SearchEngine(settings)
    try:
        ids = {Path(row.path).name: row.id for row in engine.catalog.items_by_id(range(1, 100)).values()}
        lengths = {ids[name]: engine.item(ids[name]).duration_s for name in ids if name.endswith(".mp4")}
        snapshot = engine.live()
        # Even at a bar every frame of a flat black intro passes, the films differ after it.
        assert not _same_film(engine, snapshot, ids["film.mp4"], ids["another film.mp4"], lengths, 0.9)
        assert _same_film(engine, snapshot, ids["film.mp4"], ids["film reencoded.mp4"], lengths, STRICT)
    finally:
        engine.close()


def test_results_fold_copies_under_their_best_hit(settings, library):
    run_index(settings, [str(library)], progress=False)
    engine = SearchEngine(settings)
    try:
        plain = engine.search_image(str(library / "a.jpg"), k=20)
        names = [Path(hit.item.path).name for hit in plain.hits]
        assert {"a.jpg", "a copy.jpg", "a resaved.jpg"} <= set(names[:3])
        folded, _ = arrange(plain.hits, 20, 0, Arrangement(collapse=True, duplicate_cosine=STRICT), engine.vectors_of)
        first = folded[0]
        assert len(first.duplicates) == 2 and len(folded) == len(plain.hits) - 2
        # A film and its re-encode are different bytes: results fold videos only when their bytes are one.
        assert sum(Path(hit.item.path).suffix == ".mp4" for hit in folded) == 3
    finally:
        engine.close()


def test_cutoff_is_relative_to_the_best_and_date_order_sorts_what_passed():
    from datetime import datetime
    from types import SimpleNamespace

    from spyglass.search.engine import Hit

    def hit(rank, score, taken):
        item = SimpleNamespace(id=rank, kind="image", content_hash=str(rank), taken_at=taken)
        return Hit(rank, score, item)

    hits = [hit(1, 0.30, datetime(2020, 1, 1)), hit(2, 0.28, None), hit(3, 0.25, datetime(2023, 1, 1)),
            hit(4, 0.10, datetime(2024, 1, 1))]
    page, more = arrange(hits, 10, 0, Arrangement(cutoff=0.8))
    assert [h.rank for h in page] == [1, 2, 3] and more is None  # 0.10 < 0.8 x 0.30
    page, _ = arrange(hits, 10, 0, Arrangement(sort="date", cutoff=0.8))
    assert [h.rank for h in page] == [3, 1, 2]  # newest first; no date, last
    page, more = arrange(hits, 2, 0, Arrangement(cutoff=0.5))
    assert [h.rank for h in page] == [1, 2] and more == 2
    negative = [hit(1, -0.1, None), hit(2, -0.14, None), hit(3, -0.5, None)]
    assert [h.rank for h in arrange(negative, 10, 0, Arrangement(cutoff=0.5))[0]] == [1, 2]  # within 0.05 of -0.1
    assert replace(Arrangement(), sort="date").window(20, 0) == 500
