"""Who may talk to the server and what it says: hosts, origins, CORS, headers, logs, leaks, a database that is down."""

from __future__ import annotations

import logging
import shutil
import sqlite3

import pytest

from conftest import MEDIA, free_port, run_spyglass, serving, spyglass_env
from spyglass.indexer.job import run_index
from spyglass.search.settings import Settings
from spyglass.web import create_app


@pytest.fixture
def indexed(sqlite_settings, media, encoder):
    run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    return sqlite_settings


def test_only_loopback_host_names_by_default(indexed):
    client = create_app(indexed).test_client()
    for host in ("localhost", "127.0.0.1:8000", "[::1]:8000"):
        assert client.get("/api/v1/healthz", headers={"Host": host}).status_code == 200, host
    # A DNS-rebinding page reaches 127.0.0.1 under its own name: refused.
    rebound = client.get("/api/v1/search?q=x", headers={"Host": "attacker.example"})
    assert rebound.status_code == 400 and b"results" not in rebound.data

    anywhere = create_app(indexed.override(host="0.0.0.0")).test_client()
    assert anywhere.get("/api/v1/healthz", headers={"Host": "photos.lan"}).status_code == 200
    named = create_app(indexed.override(host="0.0.0.0", allowed_hosts="photos.example.com, .lan")).test_client()
    assert named.get("/api/v1/healthz", headers={"Host": "photos.example.com"}).status_code == 200
    assert named.get("/api/v1/healthz", headers={"Host": "nas.lan"}).status_code == 200
    assert named.get("/api/v1/healthz", headers={"Host": "other.example.com"}).status_code == 400
    assert named.get("/api/v1/healthz", headers={"Host": "127.0.0.1:8000"}).status_code == 200  # health checks


@pytest.mark.parametrize("headers, content_type, status", [
    ({}, None, 200),                                                    # ClipClient: no Origin
    ({"Origin": "http://localhost"}, "application/json", 200),          # the page itself
    ({"Origin": "https://evil.example"}, "text/plain", 403),            # a form or fetch elsewhere
    ({"Origin": "https://evil.example"}, "application/json", 403),
    ({"Origin": "null"}, "text/plain", 403),                            # a sandboxed frame
    ({"Sec-Fetch-Site": "cross-site"}, "text/plain", 403),              # a browser that hid the origin
    ({"Sec-Fetch-Site": "same-origin"}, "application/json", 200),
])
def test_cross_site_posts_are_refused(indexed, headers, content_type, status):
    client = create_app(indexed).test_client()
    response = client.post("/knn-service", data='{"text": "red", "num_images": 2}', headers=headers,
                           content_type=content_type)
    assert response.status_code == status, response.data
    if status == 403:
        assert "SPYGLASS_CORS_ORIGINS" in response.json["message"]


def test_cors_for_the_origins_named(indexed):
    client = create_app(indexed.override(cors_origins="https://front.example")).test_client()
    origin = {"Origin": "https://front.example"}
    # clip-retrieval's front end posts its JSON as text/plain: a "simple" request, no preflight.
    answer = client.post("/knn-service", data='{"text": "red", "num_images": 2}', headers=origin,
                         content_type="text/plain;charset=UTF-8")
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "https://front.example"
    preflight = client.options("/api/v1/search", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://front.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    other = client.get("/api/v1/search?q=x", headers={"Origin": "https://other.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    assert client.post("/api/v1/search", json={"text": "x"}, headers={"Origin": "https://other.example"}).status_code == 403
    anyone = create_app(indexed.override(cors_origins="*")).test_client()
    assert anyone.get("/indices-list", headers={"Origin": "https://x.example"}).headers["Access-Control-Allow-Origin"] == "*"


def test_hardening_headers_everywhere(indexed):
    client = create_app(indexed).test_client()
    first = client.get("/api/v1/search?q=x").json["results"][0]
    for url in ("/", "/api/v1/search?q=x", first["file_url"], first["thumbnail_url"], "/no-such-page"):
        response = client.get(url)
        assert response.headers["X-Content-Type-Options"] == "nosniff", url
        assert response.headers["X-Frame-Options"] == "DENY", url
        assert "default-src 'self'" in response.headers["Content-Security-Policy"], url
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"], url


def test_dev_server_refuses_other_hosts(sqlite_settings):
    result = run_spyglass("serve", "--dev", "--host", "0.0.0.0", "--port", str(free_port()),
                          env=spyglass_env(sqlite_settings), timeout=60)
    assert result.returncode == 1 and "--dev listens only on loopback" in result.stderr


def test_a_database_that_is_down_is_503_with_retry_after_and_logged(tmp_path, caplog):
    settings = Settings(home=tmp_path / "home", database_url="postgresql://spyglass:s3cret@127.0.0.1:9/nowhere")
    client = create_app(settings).test_client()
    with caplog.at_level(logging.ERROR, logger="spyglass"):
        for path in ("/api/v1/search?q=x", "/api/v1/status", "/api/v1/items/1", "/api/v1/healthz"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.data)
            assert response.json["error"] == "database_unavailable" and response.headers["Retry-After"]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("spyglass")]
    assert len(lines) == 4 and all("database unavailable" in line for line in lines)
    assert not any("s3cret" in line or "\n" in line for line in lines)


def test_paths_stay_out_of_http_answers_unless_the_operator_opts_in(indexed, media):
    client = create_app(indexed).test_client()
    status = client.get("/api/v1/status").json
    assert status["roots"] == [media.name] and status["model"]["pretrained"] == indexed.pretrained.rsplit("/", 1)[1]
    assert str(media) not in client.get("/api/v1/search?q=x").get_data(as_text=True)
    # A damaged index file: the answer says so, the log says where.
    for path in indexed.index_dir.glob("gen-*.faiss"):
        path.write_bytes(b"garbage")
    broken = create_app(indexed).test_client().get("/api/v1/search?q=x")
    assert broken.status_code == 503 and str(indexed.home) not in broken.json["message"]

    exposed = create_app(indexed.override(expose_paths=True)).test_client()
    assert exposed.get("/api/v1/status").json["roots"] == [str(media)]
    assert str(indexed.home) in exposed.get("/api/v1/search?q=x").json["message"]


def test_unexpected_errors_are_logged_on_one_line_by_spyglass_serve(sqlite_settings, media, encoder, tmp_path):
    settings = sqlite_settings.override(port=free_port())
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    # A catalog out of step with the code (a column gone): every search fails unexpectedly.
    with sqlite3.connect(settings.home / "spyglass.db") as connection:
        connection.execute("ALTER TABLE media_items DROP COLUMN width")
    import urllib.error
    import urllib.request

    log = tmp_path / "server.log"
    with serving(settings, log) as url:
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{url}/api/v1/search?q=x", timeout=30)
        assert error.value.code == 500 and b"internal_error" in error.value.read()
    lines = [line for line in log.read_text().splitlines() if "unexpected error" in line]
    assert len(lines) == 1 and "GET /api/v1/search" in lines[0] and "OperationalError" in lines[0]


def test_file_names_are_escaped_in_the_indexer_output(sqlite_settings, media):
    shutil.copy(MEDIA / "corrupt.jpg", media / "evil\n\x1b[31mname.jpg")
    result = run_spyglass("index", "--no-progress", str(media), env=spyglass_env(sqlite_settings))
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if "evil" in line)
    assert "evil\\n\\x1b[31mname.jpg" in line and "\x1b" not in result.stderr
