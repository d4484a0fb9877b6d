"""Accounts, tokens and per-folder access, tried as an attacker would (SPYGLASS_AUTH=accounts).

A library of three folders (alice's, bob's, a shared one) served by the real app on SQLite and
PostgreSQL; alice may see hers and the shared one, bob his, root everything.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import re
import shutil
import statistics
import time
from datetime import datetime, timedelta, timezone

import pytest
from PIL import Image
from sqlalchemy import update

from conftest import MEDIA
from spyglass.indexer.job import run_index
from spyglass.search.accounts.directory import NAME_FAILURES, Accounts
from spyglass.search.accounts.secrets import parse_token
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.catalog.people import ApiToken
from spyglass.search.settings import Settings
from spyglass.web import create_app
from spyglass.web.auth import PUBLIC

PASSWORD = "correct horse battery"
LAYOUT = {"alice/red.jpg": "red.jpg", "alice/blue.png": "Blue Square.PNG", "bob/photo.tiff": "photo.TIFF",
          "bob/rotated.jpg": "rotated-exif.jpg", "shared/transparent.png": "transparent.png",
          "alice-not/red.jpg": "red.jpg"}  # beside alice/, never inside it


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def team(request, tmp_path_factory, tiny_model, encoder):
    """An indexed library with three people and their tokens, and the app serving it."""
    from conftest import _postgres_database

    base = tmp_path_factory.mktemp("team")
    media = base / "media"
    for target, source in LAYOUT.items():
        (media / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(MEDIA / source, media / target)
    with (contextlib.contextmanager(_postgres_database)() if request.param == "postgresql" else _nothing()) as url:
        settings = Settings(runtime="torch", vector_storage="float32", home=base / "home", database_url=url, model=str(tiny_model[0]),
                            pretrained=str(tiny_model[1]), device="cpu", precision="fp32", batch_size=3,
                            ocr="off", auth="accounts")
        run_index(settings, [str(media)], encoder=encoder, progress=False)
        engine = create_db_engine(settings.db_url, writer=True)
        accounts = Accounts(session_factory(engine))
        accounts.add_user("root", PASSWORD, admin=True)
        accounts.add_user("alice", PASSWORD, folders=["alice", "shared"])
        accounts.add_user("bob", PASSWORD, folders=[str(media / "bob")])
        tokens = {name: accounts.create_token(name)[1] for name in ("root", "alice", "bob")}
        tokens["root-admin"] = accounts.create_token("root", "admin")[1]
        revoked_id, tokens["revoked"] = accounts.create_token("alice")
        accounts.revoke_token(revoked_id)
        expired_id, tokens["expired"] = accounts.create_token("alice", lifetime=timedelta(days=1))
        with accounts.sessions.begin() as session:
            session.execute(update(ApiToken).where(ApiToken.id == expired_id)
                            .values(expires_at=datetime.now(timezone.utc) - timedelta(seconds=1)))
        app = create_app(settings)
        yield {"settings": settings, "media": media, "tokens": tokens, "app": app, "accounts": accounts,
               "client": app.test_client()}
        engine.dispose()


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *_):
        return False


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def basic(name: str, token: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()}


def search(team, who: str, **params) -> dict:
    answer = team["client"].get("/api/v1/search", query_string={"k": 100, **params},
                                headers=bearer(team["tokens"][who]))
    assert answer.status_code == 200, answer.json
    return answer.json


def folder_of(hit: dict) -> str:
    return hit["path"].split("/")[0]


def test_each_person_sees_only_their_folders_in_every_mode(team):
    for mode in ("visual", "hybrid", "words"):
        query = {"q": "red" if mode == "words" else "a photo", "mode": mode}
        assert {folder_of(h) for h in search(team, "alice", **query)["results"]} <= {"alice", "shared"}
        assert {folder_of(h) for h in search(team, "bob", **query)["results"]} <= {"bob"}
    everything = search(team, "root", q="a photo", mode="visual")
    assert {folder_of(h) for h in everything["results"]} == {"alice", "bob", "shared", "alice-not"}
    # The total is what they may see, never the library's size.
    assert search(team, "alice", q="a photo")["total_considered"] == 3
    assert search(team, "bob", q="a photo")["total_considered"] == 2


def test_a_person_gets_their_exact_top_k_not_what_is_left_of_everyones(team):
    """Recall is kept: alice's top 2 are the best 2 of her items in root's full ranking."""
    for mode, q in (("visual", "a red square"), ("words", "red")):
        full = [h["id"] for h in search(team, "root", q=q, mode=mode)["results"] if folder_of(h) in ("alice", "shared")]
        mine = [h["id"] for h in search(team, "alice", q=q, mode=mode, k=2)["results"]]
        assert mine == full[:2]
    paged = search(team, "alice", q="a photo", mode="visual", k=1, offset=1)
    assert [h["id"] for h in paged["results"]] == [h["id"] for h in search(team, "alice", q="a photo",
                                                                             mode="visual")["results"]][1:2]


def ids_by_folder(team) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for hit in search(team, "root", q="a photo", mode="visual")["results"]:
        found.setdefault(folder_of(hit), []).append(hit["id"])
    return found


def test_another_persons_item_is_404_exactly_like_one_that_does_not_exist(team):
    client, alice = team["client"], bearer(team["tokens"]["alice"])
    folders = ids_by_folder(team)
    theirs = folders["bob"] + folders["alice-not"]
    missing = max(i for ids in folders.values() for i in ids) + 1000
    for item_id in [*theirs, missing]:
        for suffix in ("", "/thumbnail", "/file"):
            answer = client.get(f"/api/v1/items/{item_id}{suffix}", headers={**alice, "Range": "bytes=0-10"})
            assert answer.status_code == 404
            assert answer.json == {"error": "not_found", "message": f"item {item_id} does not exist"}
        like = client.get("/api/v1/search", query_string={"image_id": item_id}, headers=alice)
        assert like.status_code == 404 and like.json["message"] == f"item {item_id} does not exist"
    for item_id in folders["alice"]:
        assert client.get(f"/api/v1/items/{item_id}/file", headers=alice).status_code == 200
    listed = client.post("/metadata", json={"ids": [*theirs, *folders["alice"]]}, headers=alice).json
    assert [row["id"] for row in listed] == folders["alice"]


def test_a_logged_in_page_sees_its_own_folders_and_nothing_is_cached_for_others(team):
    client = team["app"].test_client()
    assert login(client, "bob", PASSWORD).status_code == 303
    folders = ids_by_folder(team)
    for item_id in folders["alice"] + folders["shared"]:
        assert client.get(f"/api/v1/items/{item_id}/thumbnail").status_code == 404
    thumbnail = client.get(f"/api/v1/items/{folders['bob'][0]}/thumbnail")
    assert thumbnail.status_code == 200
    assert "private" in thumbnail.headers["Cache-Control"] and "public" not in thumbnail.headers["Cache-Control"]
    assert {"Cookie", "Authorization"} <= set(thumbnail.vary)
    found = client.get("/api/v1/search", query_string={"q": "a photo", "k": 50})
    assert found.headers["Cache-Control"] == "private, no-cache"
    assert {folder_of(h) for h in found.json["results"]} == {"bob"}


def test_status_and_clip_retrieval_routes_reveal_nothing_of_other_folders(team):
    client, alice = team["client"], bearer(team["tokens"]["alice"])
    status = client.get("/api/v1/status", headers=alice).json
    assert status["items"] == 3 and "roots" not in status and "bob" not in json.dumps(status)
    knn = client.post("/knn-service", json={"text": "a photo", "num_images": 50}, headers=alice).json
    assert knn and all(row["caption"].split("/")[0] in ("alice", "shared") for row in knn)
    assert client.get("/metrics", headers=alice).status_code == 403
    assert client.get("/metrics", headers=bearer(team["tokens"]["root"])).status_code == 403  # a search token
    assert client.get("/metrics", headers=bearer(team["tokens"]["root-admin"])).status_code == 200
    assert client.get("/api/v1/status", headers=bearer(team["tokens"]["root"])).json["items"] == 6


def _routes(app) -> list[tuple[str, str]]:
    """Every route and method the app serves, an item id filled in (new routes are covered by themselves)."""
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        found += [(method, path) for method in sorted(rule.methods - {"OPTIONS", "HEAD"})]
    return found


@pytest.mark.parametrize("credential", ["none", "bad", "revoked", "expired", "malformed", "basic-wrong-name",
                                        "basic-password"])
def test_every_route_refuses_missing_and_bad_credentials(team, credential):
    tokens = team["tokens"]
    headers = {"none": {}, "bad": bearer("sg_1_" + "A" * 43), "revoked": bearer(tokens["revoked"]),
               "expired": bearer(tokens["expired"]), "malformed": {"Authorization": "Bearer \x7f; DROP"},
               "basic-wrong-name": basic("bob", tokens["alice"]), "basic-password": basic("alice", PASSWORD)}[credential]
    routes = _routes(team["app"])
    assert ("GET", "/api/v1/search") in routes and ("POST", "/knn-service") in routes
    for method, path in routes:
        answer = team["client"].open(path, method=method, headers=headers, json={"text": "x"})
        if path == "/":  # a browser is sent to the login form
            assert answer.status_code == 302 and answer.location.startswith("/login")
            continue
        assert answer.status_code == 401, (method, path, answer.status_code)
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="spyglass"'
        if path in ("/", "/logout"):  # the page's routes answer browsers with the HTML error page
            assert "401" in answer.text
        else:
            assert answer.json["error"] == "unauthorized", path


def test_path_and_method_tricks_do_not_get_past_the_check(team):
    client = team["client"]
    for path in ("/api/v1/../api/v1/status", "//api/v1/status", "/api/v1/status/", "/API/V1/STATUS",
                 "/api/v1/%73tatus", "/api/v1//items/1", "/api%2Fv1%2Fstatus", "/api/v1/items/1%2F..%2F2",
                 "/nothing-here", "/static/../api/v1/status"):
        for method in ("GET", "HEAD", "POST", "PUT", "DELETE"):
            answer = client.open(path, method=method, headers={"X-HTTP-Method-Override": "GET"})
            # 400: the test client reads //api/... as a URL with the host "api", which is refused
            assert answer.status_code in (400, 401, 404, 405, 302), (method, path, answer.status_code)
            assert b'"results"' not in answer.data and b'"items"' not in answer.data
    options = client.options("/api/v1/items/1")
    assert options.status_code == 200 and options.data == b""  # the methods it takes, nothing more
    assert client.get("/api/v1/healthz").status_code == 200  # liveness stays open for health checks


def test_clip_retrieval_style_basic_auth_with_the_token_as_password(team):
    answer = team["client"].post("/knn-service", json={"text": "a photo", "num_images": 3},
                                 headers=basic("alice", team["tokens"]["alice"]))
    assert answer.status_code == 200 and len(answer.json) == 3


def login(client, name: str, password: str, next_path: str = "/"):
    form = client.get("/login", query_string={"next": next_path})
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)[1]
    return client.post("/login", data={"name": name, "password": password, "csrf_token": token, "next": next_path})


def test_page_login_session_csrf_and_logout(team):
    client = team["app"].test_client()
    assert client.get("/").status_code == 302
    assert login(client, "alice", "wrong password").status_code == 401
    answer = login(client, "alice", PASSWORD, "/?q=red")
    assert answer.status_code == 303 and answer.location == "/?q=red"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Max-Age=43200" in cookie  # 12 hours
    page = client.get("/")
    assert "alice" in page.text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)[1]
    assert client.get("/api/v1/search", query_string={"q": "red"}).status_code == 200
    assert client.post("/api/v1/search", json={"text": "red"}).status_code == 403  # no CSRF token
    assert client.post("/api/v1/search", json={"text": "red"}, headers={"X-CSRF-Token": "x" * 43}).status_code == 403
    assert client.post("/api/v1/search", json={"text": "red"}, headers={"X-CSRF-Token": csrf}).status_code == 200
    session_cookie = client.get_cookie("spyglass_session").value
    assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
    replay = team["app"].test_client()
    replay.set_cookie("spyglass_session", session_cookie)
    assert replay.get("/api/v1/search", query_string={"q": "red"}).status_code == 401  # ended everywhere
    # Over TLS (a proxy saying so) the cookie is Secure; a login form without its cookie is refused.
    secure = team["app"].test_client()
    form = secure.get("/login", headers={"X-Forwarded-Proto": "https"})
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)[1]
    answer = secure.post("/login", data={"name": "alice", "password": PASSWORD, "csrf_token": token},
                         headers={"X-Forwarded-Proto": "https"})
    assert answer.status_code == 303 and "; Secure" in answer.headers["Set-Cookie"]
    assert team["app"].test_client().post("/login", data={"name": "alice", "password": PASSWORD,
                                                          "csrf_token": "forged"}).status_code == 403
    assert login(team["app"].test_client(), "alice", PASSWORD, "//evil.example/").location == "/"


def test_guessing_is_throttled_per_name_and_the_right_password_waits_too(team):
    accounts, client = team["accounts"], team["app"].test_client()
    accounts.add_user("carol", PASSWORD, folders=["shared"])
    for _ in range(NAME_FAILURES):
        assert login(client, "carol", "guess").status_code == 401
    throttled = login(client, "carol", PASSWORD)
    assert throttled.status_code == 429 and int(throttled.headers["Retry-After"]) > 0
    assert login(client, "alice", PASSWORD).status_code == 303  # another name from the same address
    # Per address too: many names from one address (the limit lowered to 3 for the test).
    from spyglass.search.accounts import directory
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(directory, "ADDRESS_FAILURES", 3)
        for name in ("x1", "x2", "x3"):
            with pytest.raises(directory.AccountError):
                accounts.log_in(name, "guess", "10.7.7.7")
        with pytest.raises(directory.Throttled):
            accounts.log_in("alice", PASSWORD, "10.7.7.7")
    # Ended windows are dropped at the next failure, so guessing names cannot grow the table.
    from spyglass.search.catalog.people import LoginFailure
    with accounts.writes.begin() as session:
        session.execute(update(LoginFailure).values(window_start=datetime.now(timezone.utc) - timedelta(hours=1)))
    login(client, "nobody", "guess")
    with accounts.sessions() as session:
        from sqlalchemy import select
        assert sorted(session.scalars(select(LoginFailure.key))) == ["addr:127.0.0.1", "name:nobody"]


def test_a_wrong_name_costs_as_long_as_a_wrong_password(team):
    accounts = team["accounts"]
    wrong_name, wrong_password = [], []
    for round_ in range(6):  # interleaved, on distinct addresses so the throttle stays out of it
        for name, into in (("nobody-here", wrong_name), ("bob", wrong_password)):
            started = time.perf_counter()
            with pytest.raises(Exception, match="wrong name or password"):
                accounts.log_in(name, "not it at all", f"10.9.{round_}.{len(into)}")
            into.append(time.perf_counter() - started)
    ratio = statistics.median(wrong_name) / statistics.median(wrong_password)
    assert 0.5 < ratio < 2.0, (wrong_name, wrong_password)


def test_revocation_is_effective_on_the_next_request_in_every_worker(team):
    workers = [create_app(team["settings"]).test_client() for _ in range(2)]
    token_id, token = team["accounts"].create_token("bob")
    for client in workers:
        assert client.get("/api/v1/status", headers=bearer(token)).status_code == 200
    team["accounts"].revoke_token(token_id)
    for client in workers:
        assert client.get("/api/v1/status", headers=bearer(token)).status_code == 401


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


def test_costly_requests_are_rationed_per_principal(team):
    settings = team["settings"].override(expensive_per_minute=12)  # a burst of 2, then one each 5 s
    client, tokens = create_app(settings).test_client(), team["tokens"]
    upload = {"image_base64": base64.b64encode(png_bytes()).decode()}
    for _ in range(2):
        assert client.post("/api/v1/search", json=upload, headers=bearer(tokens["alice"])).status_code == 200
    refused = client.post("/api/v1/search", json=upload, headers=bearer(tokens["alice"]))
    assert refused.status_code == 429 and 0 < int(refused.headers["Retry-After"]) <= 5
    assert refused.json["error"] == "too_many_requests"
    # A body over 4 KiB is costly by its size: refused before it is read (this one would be a 400).
    unread = client.post("/api/v1/search", data=b"x" * 5000, content_type="application/json",
                         headers=bearer(tokens["alice"]))
    assert unread.status_code == 429
    deep = client.get("/api/v1/search", query_string={"q": "red", "k": 500}, headers=bearer(tokens["alice"]))
    assert deep.status_code == 429
    knn = client.post("/knn-service", json={"image": upload["image_base64"]}, headers=bearer(tokens["alice"]))
    assert knn.status_code == 429
    assert client.get("/api/v1/search", query_string={"q": "red"}, headers=bearer(tokens["alice"])).status_code == 200
    assert client.post("/api/v1/search", json=upload, headers=bearer(tokens["bob"])).status_code == 200


def test_without_accounts_nothing_is_rationed(team):
    settings = team["settings"].override(auth="none", expensive_per_minute=1)
    client = create_app(settings).test_client()
    upload = {"image_base64": base64.b64encode(png_bytes()).decode()}
    assert {client.post("/api/v1/search", json=upload).status_code for _ in range(4)} == {200}


def test_the_bucket_refills_with_time_and_one_costly_request_runs_at_a_time():
    from werkzeug.exceptions import TooManyRequests

    from spyglass.web.limits import FairUse

    now = [0.0]
    limits = FairUse(per_minute=60, workers=2, clock=lambda: now[0])  # 30 a minute in this worker
    assert limits.capacity == 5
    for _ in range(5):
        with limits.costly("a"):
            pass
    with pytest.raises(TooManyRequests) as refused, limits.costly("a"):
        pass
    assert dict(refused.value.get_headers())["Retry-After"] == "2"
    now[0] += 2.0  # one more after 2 s at 0.5 a second
    with limits.costly("a"):
        with pytest.raises(TooManyRequests), limits.costly("b"), limits.costly("b"):
            pass  # b's second one while its first runs
    with FairUse(per_minute=0).costly("a"), FairUse(per_minute=0).costly("a"):
        pass  # 0: nothing is rationed


def test_audit_lines_name_events_and_token_ids_never_secrets(team, caplog):
    caplog.set_level(logging.INFO, logger="spyglass.audit")
    client = team["app"].test_client()
    login(client, "bob", "a wrong one")
    login(client, "bob", PASSWORD)
    token = team["tokens"]["alice"]
    team["client"].get("/api/v1/status", headers=bearer(token))
    team["accounts"].add_user("dave", PASSWORD, folders=[str(team["media"] / "bob")])
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "spyglass.audit"]
    events = [line["event"] for line in lines]
    assert {"login_failed", "login", "token_used", "user_added"} <= set(events)
    used = next(line for line in lines if line["event"] == "token_used")
    assert used["user"] == "alice" and isinstance(used["token_id"], int)
    text = caplog.text
    # the secret may itself hold "_", so take it the way the server does
    assert parse_token(token).secret not in text and PASSWORD not in text and "a wrong one" not in text
    assert str(team["media"]) not in text  # a granted folder is counted, not named
    assert next(line for line in lines if line["event"] == "user_added")["folders"] == 1
