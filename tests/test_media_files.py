"""Which files are read and served: links by SPYGLASS_FOLLOW_SYMLINKS, regular files only, bounded, unchanged."""

from __future__ import annotations

import os
import shutil
import threading
import urllib.request

import pytest
from hypothesis import given, strategies as st

from conftest import MEDIA
from spyglass.indexer.decode import load_file
from spyglass.indexer.job import run_index
from spyglass.indexer.scan import FoundFile
from spyglass.search.errors import MediaFileError
from spyglass.search.media.files import MediaRoots
from spyglass.search.media.paths import is_inside
from spyglass.web import create_app


def index(settings, media, encoder):
    summary = run_index(settings, [str(media)], encoder=encoder, progress=False)
    return summary, create_app(settings).test_client()


def item_ids(client) -> dict[str, int]:
    results = client.get("/api/v1/search", query_string={"q": "x", "k": 100}).json["results"]
    return {r["path"]: r["id"] for r in results}


def finishes(function, seconds: float = 10.0):
    """Run function in a thread; fail if it has not returned in time (a hang on a FIFO, say)."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(value=_call(function)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    return outcome["value"]


def _call(function):
    try:
        return function()
    except Exception as exc:  # noqa: BLE001 - handed back to the test to look at
        return exc


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "outside" / "id_ed25519"
    path.parent.mkdir()
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY----- not for the web\n")
    return path


@pytest.mark.parametrize("target", ["secret", "/etc/passwd", "catalog"])
def test_an_indexed_file_swapped_for_a_link_out_is_never_served(sqlite_settings, media, encoder, secret, target):
    _, client = index(sqlite_settings, media, encoder)
    red = item_ids(client)["red.jpg"]
    link_to = {"secret": str(secret), "/etc/passwd": "/etc/passwd",
               "catalog": str(sqlite_settings.home / "spyglass.db")}[target]
    (media / "red.jpg").unlink()
    os.symlink(link_to, media / "red.jpg")
    for url in (f"/api/v1/items/{red}/file", f"/api/v1/items/{red}/thumbnail"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json["error"] == "not_found" and "SPYGLASS_FOLLOW_SYMLINKS" in response.json["message"]
        assert b"PRIVATE KEY" not in response.data and b"root:" not in response.data


def test_a_cached_thumbnail_is_not_served_once_its_file_is_a_link_out(sqlite_settings, media, encoder, secret):
    _, client = index(sqlite_settings, media, encoder)
    red = item_ids(client)["red.jpg"]
    assert client.get(f"/api/v1/items/{red}/thumbnail").status_code == 200  # now cached
    (media / "red.jpg").unlink()
    os.symlink(secret, media / "red.jpg")
    assert client.get(f"/api/v1/items/{red}/thumbnail").status_code == 404


def test_links_inside_the_library_are_followed_and_links_out_are_not(sqlite_settings, media, encoder, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(MEDIA / "red.jpg", outside / "far.jpg")
    os.symlink(outside, media / "linked-out")  # a folder outside the library
    os.symlink(media / "photo.TIFF", media / "nested" / "photo-link.tiff")  # a file inside it
    summary, client = index(sqlite_settings, media, encoder)

    ids = item_ids(client)
    assert "nested/photo-link.tiff" in ids and not any(p.startswith("linked-out") for p in ids)
    refused = [s for s in summary.skipped if s.path.endswith("linked-out")]
    assert refused and "SPYGLASS_FOLLOW_SYMLINKS=inside" in refused[0].reason
    served = client.get(f"/api/v1/items/{ids['nested/photo-link.tiff']}/file")
    assert served.status_code == 200 and served.data == (media / "photo.TIFF").read_bytes()


def test_follow_symlinks_all_and_none(sqlite_settings, media, encoder, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(MEDIA / "red.jpg", outside / "far.jpg")
    os.symlink(outside, media / "linked-out")
    os.symlink(media / "photo.TIFF", media / "photo-link.tiff")

    every = sqlite_settings.override(follow_symlinks="all")
    _, client = index(every, media, encoder)
    ids = item_ids(client)
    assert {"linked-out/far.jpg", "photo-link.tiff"} <= set(ids)
    assert client.get(f"/api/v1/items/{ids['linked-out/far.jpg']}/file").status_code == 200
    # The same catalog served under a stricter rule: links are not followed at serve time either.
    strict = create_app(every.override(follow_symlinks="none")).test_client()
    assert strict.get(f"/api/v1/items/{ids['photo-link.tiff']}/file").status_code == 404
    assert strict.get(f"/api/v1/items/{ids['photo.TIFF']}/file").status_code == 200

    # Indexed under "none", no link at all is taken.
    summary, client = index(every.override(home=tmp_path / "none-home", follow_symlinks="none"), media, encoder)
    ids = item_ids(client)
    assert "photo-link.tiff" not in ids and not any(p.startswith("linked-out") for p in ids)
    assert sum("SPYGLASS_FOLLOW_SYMLINKS=none" in s.reason for s in summary.skipped) == 2


def test_a_file_is_served_only_while_it_is_the_file_that_was_indexed(sqlite_settings, media, encoder):
    _, client = index(sqlite_settings, media, encoder)
    red = item_ids(client)["red.jpg"]
    path = media / "red.jpg"
    original, stat = path.read_bytes(), path.stat()

    path.write_bytes(original + b"appended")
    changed = client.get(f"/api/v1/items/{red}/file")
    assert changed.status_code == 404 and "changed since it was indexed" in changed.json["message"]

    # Same size and mtime, but no longer a JPEG: the magic bytes tell.
    path.write_bytes(b"#!/bin/sh\n" + b"x" * (len(original) - 10))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    forged = client.get(f"/api/v1/items/{red}/file")
    assert forged.status_code == 404 and "no longer a JPEG image" in forged.json["message"]

    path.write_bytes(original)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert client.get(f"/api/v1/items/{red}/file").data == original


def test_a_fifo_in_place_of_a_file_neither_hangs_the_server_nor_the_indexer(sqlite_settings, media, encoder):
    _, client = index(sqlite_settings, media, encoder)
    red = item_ids(client)["red.jpg"]
    stat = (media / "red.jpg").stat()
    (media / "red.jpg").unlink()
    os.mkfifo(media / "red.jpg")  # nobody ever writes to it: a blocking open would wait forever

    response = finishes(lambda: client.get(f"/api/v1/items/{red}/file"))
    assert response.status_code == 404 and "not a regular file" in response.json["message"]
    # Swapped in after the scan saw a regular file: the indexer's read refuses it at once.
    found = FoundFile(str(media / "red.jpg"), str(media), stat.st_size, stat.st_mtime_ns)
    error = finishes(lambda: load_file(found, encoder.preprocess, 10**8, 32, lambda *_: True,
                                       MediaRoots((str(media),))))
    assert isinstance(error, MediaFileError) and "not a regular file" in str(error)
    summary = finishes(lambda: run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False), 60)
    assert summary.removed == 1  # a FIFO is not an image file: the item leaves the index


def test_a_huge_file_is_skipped_without_being_read(sqlite_settings, media, encoder, tmp_path):
    with open(media / "huge.jpg", "wb") as handle:
        handle.truncate(50 * 1024**3)  # 50 GiB, sparse: reading it would take the machine down
    summary = finishes(lambda: run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False), 60)
    reasons = {os.path.basename(s.path): s.reason for s in summary.skipped}
    assert "SPYGLASS_MAX_FILE_BYTES" in reasons["huge.jpg"]
    small_limit = sqlite_settings.override(max_file_bytes=1000, home=tmp_path / "small-limit")
    summary = run_index(small_limit, [str(media)], encoder=encoder, progress=False)
    assert "photo.TIFF" in {os.path.basename(s.path) for s in summary.skipped if "SPYGLASS_MAX_FILE_BYTES" in s.reason}


def test_range_requests_and_awkward_names(sqlite_settings, media, encoder):
    shutil.copy(MEDIA / "red.jpg", media / "new\nline \"quoted\" ü.jpg")
    _, client = index(sqlite_settings, media, encoder)
    ids = item_ids(client)
    red = ids["red.jpg"]
    data = (media / "red.jpg").read_bytes()
    part = client.get(f"/api/v1/items/{red}/file", headers={"Range": "bytes=2-11"})
    assert part.status_code == 206 and part.data == data[2:12]
    assert part.headers["Content-Range"] == f"bytes 2-11/{len(data)}"
    past = client.get(f"/api/v1/items/{red}/file", headers={"Range": "bytes=99999-"})
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(data)}"
    # RFC 9110: a Range that does not parse, of another unit, or of several ranges may be answered whole.
    for ignored in ("bytes=abc", "items=0-1", "bytes=0-1,5-9", "bytes=9-2", "bytes=", "bytes=--1", "bytes=1-2-3"):
        whole = client.get(f"/api/v1/items/{red}/file", headers={"Range": ignored})
        assert whole.status_code == 200 and whole.data == data, ignored
    # A suffix longer than the file is the whole file; a suffix of zero bytes is nothing to send.
    longer = client.get(f"/api/v1/items/{red}/file", headers={"Range": f"bytes=-{len(data) + 500}"})
    assert longer.status_code == 206 and longer.data == data
    assert longer.headers["Content-Range"] == f"bytes 0-{len(data) - 1}/{len(data)}"
    tail = client.get(f"/api/v1/items/{red}/file", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == data[-10:]
    assert client.get(f"/api/v1/items/{red}/file", headers={"Range": "bytes=-0"}).status_code == 416
    beyond = client.get(f"/api/v1/items/{red}/file", headers={"Range": f"bytes=5-{len(data) + 100}"})
    assert beyond.status_code == 206 and beyond.data == data[5:]

    odd = client.get(f"/api/v1/items/{ids['new' + chr(10) + 'line ' + chr(34) + 'quoted' + chr(34) + ' ü.jpg']}/file")
    assert odd.status_code == 200 and odd.data == data
    disposition = odd.headers["Content-Disposition"]
    assert "\n" not in disposition and "filename*=UTF-8''new%0Aline%20%22quoted%22%20%C3%BC.jpg" in disposition


def test_the_real_server_sends_whole_files_and_ranges(live_server):
    url = live_server["url"]
    red = json_get(f"{url}/api/v1/search?q=x&k=50")
    red_id = next(r["id"] for r in red["results"] if r["path"] == "red.jpg")
    data = (live_server["media"] / "red.jpg").read_bytes()
    with urllib.request.urlopen(f"{url}/api/v1/items/{red_id}/file") as response:
        assert response.read() == data  # gunicorn hands the file to sendfile
    request = urllib.request.Request(f"{url}/api/v1/items/{red_id}/file", headers={"Range": "bytes=10-19"})
    with urllib.request.urlopen(request) as response:
        assert response.status == 206 and response.read() == data[10:20]


def json_get(url: str):
    import json

    with urllib.request.urlopen(url) as response:
        return json.loads(response.read())


SEGMENT = st.text(st.sampled_from(list("aA.b-_ ü")), min_size=1, max_size=5).filter(lambda s: s not in (".", ".."))


@given(root=st.lists(SEGMENT, min_size=1, max_size=3), rest=st.lists(SEGMENT, min_size=0, max_size=3),
       suffix=SEGMENT)
def test_root_of_is_the_innermost_root_by_exact_text(root, rest, suffix):
    root_path = "/" + "/".join(root)
    inner = root_path + "/" + "/".join(rest) if rest else None
    roots = MediaRoots(tuple(r for r in (root_path, inner) if r))
    inside = (inner or root_path) + "/" + suffix
    assert roots.root_of(inside) == (inner or root_path)
    sibling = root_path + suffix  # /m/a and /m/ab: a prefix of the text, not a parent folder
    assert roots.root_of(sibling) in (None,) + tuple(r for r in roots.roots if is_inside(sibling, r))
    assert roots.root_of(root_path) is None  # a root is not inside itself


def test_a_file_swapped_for_a_folder_is_not_found(sqlite_settings, media, encoder):
    _, client = index(sqlite_settings, media, encoder)
    red = item_ids(client)["red.jpg"]
    (media / "red.jpg").unlink()
    (media / "red.jpg").mkdir()  # used to reach fdopen, which raised IsADirectoryError: a 500
    for tail in ("/file", "/thumbnail"):
        response = client.get(f"/api/v1/items/{red}{tail}")
        assert response.status_code == 404 and response.json["error"] == "not_found", tail
