"""The JSON API through Flask's test client: every endpoint, every error status."""

from __future__ import annotations

import base64
import io
import os
import shutil

import pytest
from PIL import Image

from conftest import GOOD_IMAGES, MEDIA
from spyglass.indexer.job import run_index
from spyglass.web import create_app
from spyglass.web.openapi import openapi_document


@pytest.fixture(scope="module")
def shared(tmp_path_factory, tiny_model, encoder):
    """One indexed copy of the committed images, for the tests that only read it (the module's)."""
    from spyglass.search.settings import Settings

    base = tmp_path_factory.mktemp("web-api")
    shutil.copytree(MEDIA, base / "media")
    settings = Settings(runtime="torch", vector_storage="float32", home=base / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                        device="cpu", precision="fp32", batch_size=3, decode_workers=2)
    run_index(settings, [str(base / "media")], encoder=encoder, progress=False)
    return settings, base / "media"


@pytest.fixture
def indexed(shared):
    """Settings whose catalog holds the committed images (shared: do not change them)."""
    return shared[0]


@pytest.fixture
def media(shared):
    return shared[1]


@pytest.fixture
def client(indexed):
    return create_app(indexed).test_client()


@pytest.fixture
def own(sqlite_settings, tmp_path, encoder):
    """A library of the test's own, to change: (settings, media, client)."""
    media = tmp_path / "own-media"
    shutil.copytree(MEDIA, media)
    run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    return sqlite_settings, media, create_app(sqlite_settings).test_client()


def item_id(client, name: str) -> int:
    """The id of an indexed file, found by searching with the file itself."""
    data = client.get("/api/v1/search", query_string={"q": "x", "k": 50}).json
    return next(r["id"] for r in data["results"] if r["name"] == name)


def b64(path) -> str:
    return base64.b64encode(open(path, "rb").read()).decode()


def test_get_search_returns_ranked_results_with_urls(client):
    response = client.get("/api/v1/search?q=a+red+bicycle&k=3")
    assert response.status_code == 200
    data = response.json
    assert [r["rank"] for r in data["results"]] == [1, 2, 3]
    scores = [r["score"] for r in data["results"]]
    assert scores == sorted(scores, reverse=True)
    assert data["total_considered"] == len(GOOD_IMAGES) and data["next_offset"] == 3
    assert isinstance(data["generation"], int)
    first = data["results"][0]
    assert not os.path.isabs(first["path"])  # relative to the media root
    assert first["thumbnail_url"].endswith(f"/api/v1/items/{first['id']}/thumbnail")


def test_pagination_walks_every_result_once(client):
    seen, offset = [], 0
    while offset is not None:
        data = client.get(f"/api/v1/search?q=cat&k=3&offset={offset}").json
        seen += [r["id"] for r in data["results"]]
        offset = data["next_offset"]
    assert len(seen) == len(set(seen)) == len(GOOD_IMAGES)
    ranks = client.get("/api/v1/search?q=cat&k=2&offset=4").json["results"]
    assert [r["rank"] for r in ranks] == [5, 6]


def test_post_image_by_upload_base64_and_item_id_find_the_same_image(client, media):
    red = media / "red.jpg"
    upload = client.post("/api/v1/search", data={"image": (open(red, "rb"), "q.jpg"), "k": "1"})
    by_b64 = client.post("/api/v1/search", json={"image_base64": b64(red), "k": 1})
    data_url = client.post("/api/v1/search", json={"image_base64": "data:image/jpeg;base64," + b64(red)})
    red_id = upload.json["results"][0]["id"]
    by_id = client.post("/api/v1/search", json={"image_id": red_id, "k": 1})
    assert upload.json["results"][0]["name"] == "red.jpg"
    assert by_b64.json["results"][0]["id"] == by_id.json["results"][0]["id"] == red_id
    assert data_url.json["results"][0]["id"] == red_id
    assert by_id.json["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert client.get(f"/api/v1/search?image_id={red_id}&k=1").json["results"][0]["id"] == red_id


def test_raw_embedding_and_weighted_combination(client, encoder, media):
    vector = encoder.encode_texts(["beach"])[0]
    by_text = client.post("/api/v1/search", json={"text": "beach", "k": 8}).json["results"]
    by_vector = client.post("/api/v1/search", json={"embedding": vector.tolist(), "k": 8}).json["results"]
    assert [r["id"] for r in by_text] == [r["id"] for r in by_vector]

    red = item_id(client, "red.jpg")
    mixed = client.post("/api/v1/search", json={"k": 8, "query": [
        {"text": "beach", "weight": 1}, {"image_id": red, "weight": 0.5},
        {"text": "people", "weight": -0.7}]}).json["results"]
    import numpy as np
    from spyglass.search.engine import SearchEngine

    engine = SearchEngine(client.application.extensions["spyglass"].settings,
                          encoder_loader=lambda a, p: encoder)
    expected = (encoder.encode_texts(["beach"])[0] + 0.5 * engine.live().stored.vector(red)
                - 0.7 * encoder.encode_texts(["people"])[0])
    expected /= np.linalg.norm(expected)
    direct = engine.search_vector(expected, k=8)
    assert [r["id"] for r in mixed] == [h.item.id for h in direct.hits]
    assert mixed[0]["score"] == pytest.approx(direct.hits[0].score, abs=1e-4)


def test_min_score_and_filters(own):
    _, media, client = own  # it touches a file
    # Scores are cosines in visual mode (hybrid's are fusion scores, and min_score bounds its visual half).
    everything = client.get("/api/v1/search?q=x&k=50&mode=visual").json["results"]
    bar = everything[2]["score"]
    assert len(client.get(f"/api/v1/search?q=x&k=50&min_score={bar}&mode=visual").json["results"]) == 3

    nested = client.get("/api/v1/search?q=x&k=50&folder=nested").json["results"]
    assert sorted(r["path"] for r in nested) == ["nested/deeper/green-anim.gif", "nested/yellow.bmp"]
    deeper = client.post("/api/v1/search", json={"text": "x", "filters": {"folder": "nested/deeper"}})
    assert [r["name"] for r in deeper.json["results"]] == ["green-anim.gif"]
    absolute = client.get("/api/v1/search", query_string={"q": "x", "folder": str(media / "nested")})
    assert len(absolute.json["results"]) == 2
    assert client.get("/api/v1/search?q=x&kind=video").json["results"] == []

    os.utime(media / "red.jpg", (0, 0))  # 1970: the catalog still has the indexed mtime
    mtimes = sorted(r["mtime"] for r in everything)
    recent = client.get("/api/v1/search", query_string={"q": "x", "mtime_from": mtimes[0]}).json
    assert len(recent["results"]) == len(everything)
    none = client.get("/api/v1/search", query_string={"q": "x", "mtime_to": "2000-01-01"}).json
    assert none["results"] == []


def test_filtered_pagination_fills_pages(client):
    first = client.get("/api/v1/search?q=x&k=1&folder=nested").json
    second = client.get(f"/api/v1/search?q=x&k=1&folder=nested&offset={first['next_offset']}").json
    assert second["next_offset"] is None
    assert {first["results"][0]["id"], second["results"][0]["id"]} == {
        r["id"] for r in client.get("/api/v1/search?q=x&folder=nested").json["results"]}


def test_items_thumbnail_and_file(client, media, indexed):
    red = item_id(client, "red.jpg")
    meta = client.get(f"/api/v1/items/{red}").json
    assert (meta["name"], meta["format"], meta["width"], meta["height"]) == ("red.jpg", "JPEG", 64, 48)

    thumb = client.get(meta["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(thumb.data)).size[0] <= 320
    assert list((indexed.home / "thumbnails").rglob("*.jpg"))  # cached under SPYGLASS_HOME

    original = client.get(meta["file_url"])
    assert original.status_code == 200 and original.data == (media / "red.jpg").read_bytes()
    assert original.mimetype == "image/jpeg"


def test_status_healthz_and_metrics(client):
    client.get("/api/v1/search?q=x")
    client.get("/api/v1/search?k=0&q=x")
    status = client.get("/api/v1/status").json
    assert status["items"] == len(GOOD_IMAGES) and "database" not in status
    assert status["index"]["precision"] == "fp32" and "precision_min_cosine" not in status["index"]
    encoder = status["query_encoder"]
    assert {k: encoder[k] for k in ("precision", "wanted", "min_cosine")} == {
        "precision": "fp32", "wanted": "fp32", "min_cosine": None}
    assert encoder["runtime"]["image"] == encoder["runtime"]["text"] == "torch-fp32"
    assert "asked for" in encoder["runtime"]["text_why"]
    health = client.get("/api/v1/healthz").json
    assert health["status"] == "ok" and health["generation"] == status["index"]["generation"]
    text = client.get("/metrics").data.decode()
    assert 'spyglass_queries_total{endpoint="search",outcome="ok"} 1.0' in text
    assert 'spyglass_queries_total{endpoint="search",outcome="error"} 1.0' in text
    assert 'spyglass_query_seconds_bucket{le="+Inf"} 2.0' in text
    assert f"spyglass_index_vectors {float(len(GOOD_IMAGES))}" in text
    # The answering worker's memory, and the index's share: a flat index is all mapped, none loaded.
    import os

    worker = status["worker"]
    assert worker["pid"] == os.getpid() and worker["resident_bytes"] >= worker["anonymous_bytes"] > 0
    assert worker["index_loaded_bytes"] == 0 and worker["index_mapped_bytes"] == status["index"]["bytes"]
    resident = metric_value(text, "spyglass_worker_resident_bytes")
    assert resident > 100 * 2**20  # torch and the model are in this process
    assert metric_value(text, "spyglass_index_mapped_bytes") == status["index"]["bytes"]
    assert metric_value(text, "spyglass_index_loaded_bytes") == 0


def metric_value(text: str, name: str) -> float:
    """The value of a metric's first line, labels or not."""
    line = next(line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))
    return float(line.rsplit(" ", 1)[1])


@pytest.mark.parametrize("request_args, status, error", [
    ({"path": "/api/v1/search"}, 400, "bad_query"),
    ({"path": "/api/v1/search?q=x&k=abc"}, 400, "bad_query"),
    ({"path": "/api/v1/search?q=x&k=5000"}, 400, "bad_query"),
    ({"path": "/api/v1/search?q=x&offset=-1"}, 400, "bad_query"),
    ({"path": "/api/v1/search?q=x&min_score=nan"}, 400, "bad_query"),
    ({"path": "/api/v1/search?q=%20%20"}, 400, "bad_query"),
    ({"path": "/api/v1/search?q=x&mtime_from=yesterday"}, 400, "bad_query"),
    ({"path": "/api/v1/search", "method": "POST", "json": {"image_base64": "***"}}, 400, "bad_query"),
    ({"path": "/api/v1/search", "method": "POST", "json": {"embedding": [1, 2]}}, 400, "bad_query"),
    ({"path": "/api/v1/search", "method": "POST", "json": {"query": [{"text": "a", "weight": 1},
                                                                    {"text": "a", "weight": -1}]}},
     400, "bad_query"),
    ({"path": "/api/v1/search", "method": "POST", "json": [1, 2]}, 400, "bad_query"),
    ({"path": "/api/v1/search", "method": "POST", "data": "q=x", "content_type": "text/plain"}, 400, "bad_query"),
    ({"path": "/api/v1/search?image_id=99999"}, 404, "not_found"),
    ({"path": "/api/v1/items/99999"}, 404, "not_found"),
    ({"path": "/api/v1/items/99999/thumbnail"}, 404, "not_found"),
    ({"path": "/api/v1/items/99999/file"}, 404, "not_found"),
    ({"path": "/api/v1/no-such-endpoint"}, 404, "not_found"),
    ({"path": "/api/v1/search", "method": "POST",
      "json": {"image_base64": base64.b64encode(b"plain text, no image").decode()}}, 415, "not_an_image"),
    ({"path": "/api/v1/search", "method": "DELETE"}, 405, "method_not_allowed"),
])
def test_errors_are_json_with_the_right_status(client, request_args, status, error):
    args = dict(request_args)
    response = client.open(args.pop("path"), method=args.pop("method", "GET"), **args)
    assert response.status_code == status, response.data
    assert response.json["error"] == error and response.json["message"]
    assert "Traceback" not in response.get_data(as_text=True)


def test_undecodable_image_is_422_and_bomb_is_422(client, media, indexed):
    data = (media / "red.jpg").read_bytes()
    truncated = client.post("/api/v1/search", data={"image": (io.BytesIO(data[:300]), "t.jpg")})
    assert truncated.status_code == 422 and truncated.json["error"] == "undecodable_image"

    # Uploads meet their own, lower limit; the library's stays as it is.
    small_limit = create_app(indexed.override(max_upload_pixels=100)).test_client()
    bomb = small_limit.post("/api/v1/search", json={"image_base64": b64(media / "red.jpg")})
    assert bomb.status_code == 422 and "SPYGLASS_MAX_UPLOAD_PIXELS" in bomb.json["message"]
    assert small_limit.get(f"/api/v1/items/{item_id(client, 'red.jpg')}/thumbnail").status_code == 200


def test_upload_over_the_limit_is_413(indexed):
    client = create_app(indexed.override(max_upload_bytes=10_000)).test_client()
    response = client.post("/api/v1/search", data={"image": (io.BytesIO(b"x" * 20_000), "big.jpg")})
    assert response.status_code == 413 and "SPYGLASS_MAX_UPLOAD_BYTES" in response.json["message"]


def test_file_outside_the_media_roots_is_not_served(own):
    from sqlalchemy import update

    from spyglass.search.engine import SearchEngine
    from spyglass.search.catalog.schema import MediaItem

    indexed, _, client = own
    engine = SearchEngine(indexed)
    red = item_id(client, "red.jpg")
    with engine.catalog.sessions.begin() as session:
        session.execute(update(MediaItem).where(MediaItem.id == red).values(path="/etc/passwd"))
    response = client.get(f"/api/v1/items/{red}/file")
    assert response.status_code == 404 and b"root:" not in response.data


def test_deleted_original_gives_404_not_500(own):
    _, media, client = own
    red = item_id(client, "red.jpg")
    (media / "red.jpg").unlink()
    assert client.get(f"/api/v1/items/{red}/file").status_code == 404
    assert client.get(f"/api/v1/items/{red}/thumbnail").status_code == 404


def test_no_index_is_503_everywhere(sqlite_settings):
    client = create_app(sqlite_settings).test_client()
    for path in ("/api/v1/search?q=x", "/api/v1/items/1"):
        response = client.get(path)
        assert response.status_code == 503 and response.json["error"] == "no_index"
    assert client.get("/api/v1/status").json["items"] == 0
    assert client.get("/api/v1/healthz").json == {"status": "ok", "generation": None}
    assert client.post("/knn-service", json={"text": "x", "num_images": 3}).status_code == 503


def test_new_generation_is_picked_up_without_restart(own, encoder):
    indexed, media, client = own
    before = client.get("/api/v1/search?q=x&k=50").json
    Image.new("RGB", (30, 30), (5, 250, 5)).save(media / "fresh.png")
    run_index(indexed, [str(media)], encoder=encoder, progress=False)
    after = client.get("/api/v1/search?q=x&k=50").json
    assert after["generation"] > before["generation"]
    assert after["total_considered"] == before["total_considered"] + 1
    assert "fresh.png" in [r["name"] for r in after["results"]]


def test_html_errors_for_browsers(client):
    response = client.get("/no-such-page", headers={"Accept": "text/html"})
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert b"Back to search" in response.data


def test_page_is_served_without_any_cdn(client):
    page = client.get("/")
    assert page.status_code == 200 and b'id="search-form"' in page.data
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    for asset in ("/static/app.js", "/static/style.css"):
        body = client.get(asset).get_data(as_text=True)
        assert "http://" not in body and "https://" not in body


def _route_paths(app) -> set[tuple[str, str]]:
    import re

    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return routes


def test_openapi_document_covers_every_route(client):
    served = client.get("/api/v1/openapi.json").json
    assert served == openapi_document()
    documented = {(path, method) for path, ops in served["paths"].items() for method in ops}
    assert _route_paths(client.application) == documented


def test_a_browser_opening_an_api_url_gets_the_error_as_a_page(client):
    navigation = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8"
    page = client.get("/api/v1/items/99999", headers={"Accept": navigation})
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "99999" in page.get_data(as_text=True) and "Back to search" in page.get_data(as_text=True)
    bad = client.get("/api/v1/search?k=0&q=x", headers={"Accept": navigation})
    assert bad.status_code == 400 and bad.mimetype == "text/html"
    # fetch() and API clients send */* or ask for JSON: they get JSON, as before.
    for accept in ("*/*", "application/json", "application/json, text/html;q=0.5"):
        answer = client.get("/api/v1/items/99999", headers={"Accept": accept})
        assert answer.status_code == 404 and answer.json["error"] == "not_found", accept
