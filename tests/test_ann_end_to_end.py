"""A trained index type built, tuned, published, reloaded and searched through the CLI and the API."""

import json

import pytest
from PIL import Image, ImageDraw

from conftest import run_spyglass, spyglass_env
from spyglass.search.engine import SearchEngine
from spyglass.web import create_app


def draw_images(folder, count: int, start: int = 0) -> list:
    """Small pictures that differ in colour and stripes, so their vectors differ."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(start, start + count):
        image = Image.new("RGB", (32, 32), ((n * 53) % 256, (n * 101) % 256, (n * 17) % 256))
        draw = ImageDraw.Draw(image)
        for stripe in range(n % 7 + 1):
            draw.line([(stripe * 5, 0), (stripe * 5 + 16, 31)], fill=(255 - (n * 53) % 256, 40, 200), width=2)
        path = folder / f"picture-{n:03d}.png"
        image.save(path)
        paths.append(path)
    return paths


def status(env) -> dict:
    result = run_spyglass("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_an_ivf_index_through_cli_and_api(tmp_path, sqlite_settings):
    settings = sqlite_settings.override(index_factory="IVF4,Flat", index_recall=0.9)
    env = spyglass_env(settings) | {"SPYGLASS_INDEX_FACTORY": "IVF4,Flat", "SPYGLASS_INDEX_RECALL": "0.9"}
    media = tmp_path / "media"
    paths = draw_images(media, 80)

    first = run_spyglass("index", str(media), "--no-progress", env=env)
    assert first.returncode == 0, first.stderr
    assert "IVF4,Flat tuned to nprobe=" in first.stderr
    facts = status(env)["index"]
    assert facts["type"] == "IVF4,Flat" and facts["setting"] == "IVF4,Flat" and facts["vectors"] == 80
    assert facts["recall_at_10"] >= 0.9 and "nprobe=" in facts["search_params"]

    client = create_app(settings).test_client()
    api_status = client.get("/api/v1/status").json["index"]
    assert api_status["type"] == "IVF4,Flat" and api_status["recall_at_10"] == facts["recall_at_10"]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f"spyglass_index_recall_at_10 {facts['recall_at_10']}" in metrics
    one = client.get("/api/v1/search?q=a+red+picture&k=5").json["results"][0]
    found = client.post("/api/v1/search", json={"image_id": one["id"], "k": 10}).json["results"]
    assert found[0]["id"] == one["id"] and found[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert len(found) == 10

    # A nightly run carries the index forward: new vectors added, removed ones gone, no retraining.
    engine = SearchEngine(settings)
    gone_ids = {engine.catalog.item_by_path(str(p)).id for p in paths[:3]}
    engine.close()
    new = draw_images(media, 5, start=80)
    for gone in paths[:3]:
        gone.unlink()
    second = run_spyglass("index", str(media), "--no-progress", env=env)
    assert second.returncode == 0, second.stderr
    assert "training" not in second.stderr
    carried = status(env)["index"]
    assert carried["type"] == "IVF4,Flat" and carried["vectors"] == 82 and carried["generation"] > facts["generation"]
    client = create_app(settings).test_client()
    for query in ({"embedding": [1.0] * 32}, {"embedding": [-1.0] * 32}, {"text": "a red picture"}, {"text": "stripes"}):
        answer = client.post("/api/v1/search", json=query | {"k": 200})
        assert answer.status_code == 200, answer.json
        found = answer.json["results"]
        assert found and not {r["id"] for r in found} & gone_ids
    engine = SearchEngine(settings)
    for path in new:  # each new picture is found by its own vector
        new_id = engine.catalog.item_by_path(str(path)).id
        assert client.post("/api/v1/search", json={"image_id": new_id, "k": 1}).json["results"][0]["id"] == new_id
    engine.close()

    # A damaged approximate index is found by check, dropped by a repair, rebuilt by the next run.
    ann_file = settings.index_dir / next(p.name for p in settings.index_dir.glob("*.ann.faiss")
                                         if p.stat().st_mtime == max(q.stat().st_mtime for q in settings.index_dir.glob("*.ann.faiss")))
    ann_file.write_bytes(b"not faiss" + ann_file.read_bytes()[9:])
    checked = run_spyglass("check", env=env)
    assert checked.returncode != 0 and "approximate index:" in checked.stdout + checked.stderr
    repaired = run_spyglass("check", "--repair", env=env)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert status(env)["index"]["type"] == "Flat"
    rebuilt = run_spyglass("index", str(media), "--no-progress", env=env)
    assert rebuilt.returncode == 0 and "tuned to" in rebuilt.stderr
    assert status(env)["index"]["type"] == "IVF4,Flat"


def test_an_unbuildable_factory_is_refused_before_anything_is_embedded(tmp_path, sqlite_settings):
    env = spyglass_env(sqlite_settings) | {"SPYGLASS_INDEX_FACTORY": "IVF4,NoSuchCodes"}
    draw_images(tmp_path / "media", 3)
    result = run_spyglass("index", str(tmp_path / "media"), "--no-progress", env=env)
    assert result.returncode != 0
    assert "SPYGLASS_INDEX_FACTORY='IVF4,NoSuchCodes' is not a FAISS index factory string" in result.stderr
    assert "Indexing" not in result.stderr


def test_a_fallback_is_remembered_and_a_setting_back_to_flat_drops_the_index(tmp_path, sqlite_settings, encoder):
    from spyglass.indexer.job import run_index
    from spyglass.search.catalog.queries import Catalog
    from spyglass.search.catalog.db import create_db_engine, session_factory

    media = tmp_path / "media"
    draw_images(media, 60)
    messages: list[str] = []
    unreachable = sqlite_settings.override(index_factory="IVF64,Flat", index_recall=0.9)
    run_index(unreachable, [str(media)], encoder=encoder, progress=False, echo=messages.append)
    assert any("too few to train IVF64,Flat" in m for m in messages), messages
    messages.clear()
    run_index(unreachable, [str(media)], encoder=encoder, progress=False, echo=messages.append)
    assert not any("training" in m or "tuned" in m for m in messages), messages  # not tried again

    ivf = sqlite_settings.override(index_factory="IVF4,Flat", index_recall=0.9)
    run_index(ivf, [str(media)], encoder=encoder, progress=False, echo=messages.append)
    db = create_db_engine(sqlite_settings.db_url)
    assert Catalog(session_factory(db)).live_generation().ann_factory == "IVF4,Flat"
    run_index(sqlite_settings.override(index_factory="Flat"), [str(media)], encoder=encoder, progress=False,
              echo=messages.append)
    live = Catalog(session_factory(db)).live_generation()
    assert live.ann_factory is None and live.ann_filename is None
    assert not list(sqlite_settings.index_dir.glob(".*.tmp"))
    db.dispose()
