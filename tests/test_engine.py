"""The query engine on SQLite and PostgreSQL: combined parts, paging, filters, the text cache."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import GOOD_IMAGES
from spyglass.indexer.job import run_index
from spyglass.search.engine import SearchEngine
from spyglass.search.errors import BadQuery, UnknownItem
from spyglass.search.query import Filters, QueryPart


@pytest.fixture
def engine(settings, media, encoder):
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    engine = SearchEngine(settings, encoder_loader=lambda a, p: encoder)
    yield engine
    engine.close()


def test_pages_concatenate_to_the_full_ranking(engine):
    full = [h.item.id for h in engine.search([QueryPart(text="dog")], k=50).hits]
    pages = [h.item.id for offset in range(0, len(full), 3)
             for h in engine.search([QueryPart(text="dog")], k=3, offset=offset).hits]
    assert pages == full and len(full) == len(GOOD_IMAGES)


def test_filters_on_folder_kind_and_mtime(engine, media):
    nested = engine.search([QueryPart(text="x")], k=50, filters=Filters(folder="nested"))
    assert {h.relative_path for h in nested.hits} == {"nested/yellow.bmp", "nested/deeper/green-anim.gif"}
    assert engine.search([QueryPart(text="x")], filters=Filters(kind="video")).hits == []
    red = engine.catalog.item_by_path(str(media / "red.jpg"))
    only_red = engine.search([QueryPart(text="x")], k=50,
                             filters=Filters(mtime_from_ns=red.mtime_ns, mtime_to_ns=red.mtime_ns))
    assert red.id in [h.item.id for h in only_red.hits]
    assert all(h.item.mtime_ns == red.mtime_ns for h in only_red.hits)


def test_negative_weight_pushes_a_result_down(engine, media):
    red = engine.catalog.item_by_path(str(media / "red.jpg")).id
    toward = engine.search([QueryPart(text="fruit"), QueryPart(item_id=red, weight=0.8)], k=50)
    away = engine.search([QueryPart(text="fruit"), QueryPart(item_id=red, weight=-0.8)], k=50)
    rank = {name: [h.item.id for h in result.hits].index(red) for name, result in
            (("toward", toward), ("away", away))}
    assert rank["toward"] < rank["away"]


def test_bad_parts_are_refused(engine):
    with pytest.raises(BadQuery):
        QueryPart(text="a", item_id=1)
    with pytest.raises(BadQuery):
        engine.search([QueryPart(embedding=[0.0] * 32)])
    with pytest.raises(UnknownItem):
        engine.search([QueryPart(item_id=123456)])


def test_repeated_text_is_encoded_once(engine, encoder, monkeypatch):
    calls = []
    original = encoder.encode_texts
    monkeypatch.setattr(encoder, "encode_texts", lambda texts: calls.append(texts) or original(texts))
    first = engine.search([QueryPart(text="a lighthouse at dusk")], k=3)
    second = engine.search([QueryPart(text="a lighthouse at dusk")], k=3, offset=3)
    assert len(calls) == 1
    assert first.hits[0].item.id not in [h.item.id for h in second.hits]
    assert np.allclose(engine.embed([QueryPart(text="a lighthouse at dusk")], engine.live()),
                       original(["a lighthouse at dusk"])[0], atol=1e-6)


def test_under_a_server_no_request_waits_for_a_new_generation_to_load(sqlite_settings, media, encoder, monkeypatch):
    import threading

    from spyglass.indexer.job import run_index
    from spyglass.search.live import LiveIndex

    first = run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False).generation_id
    engine = SearchEngine(sqlite_settings, encoder_loader=lambda a, p: encoder, background_reload=True)
    assert engine.live().generation.id == first
    Image.new("RGB", (20, 20), (3, 4, 5)).save(media / "later.png")
    second = run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False).generation_id

    release = threading.Event()
    real_read = LiveIndex._read

    def slow_read(self, generation):
        assert release.wait(30), "the test never let the load finish"
        return real_read(self, generation)

    monkeypatch.setattr(LiveIndex, "_read", slow_read)
    # The load is held; requests go on with the loaded generation instead of waiting for it.
    assert engine.live().generation.id == first
    assert engine.search_text("x").generation_id == first
    release.set()
    engine.wait_for_reload()
    assert engine.live().generation.id == second
    engine.close()
