"""Thumbnails under attack: a bounded cache, video stills by the frame decoded, frames under the pixel limit."""

from __future__ import annotations

import shutil
from fractions import Fraction

import numpy as np
import pytest

pytest.importorskip("av")

from conftest import MEDIA, fill_disk, run_spyglass, small_disk, spyglass_env  # noqa: E402
from make_videos import NTSC, write_video  # noqa: E402
from spyglass.indexer.job import run_index  # noqa: E402
from spyglass.search.media.thumbnail_cache import ThumbnailCache  # noqa: E402
from spyglass.web import create_app  # noqa: E402


def cached_files(settings) -> list:
    return [p for p in (settings.home / "thumbnails").rglob("*.jpg")]


def cache_bytes(settings) -> int:
    return sum(p.stat().st_size for p in cached_files(settings))


def test_the_cache_stays_under_its_limit_and_keeps_what_is_used(tmp_path):
    cache = ThumbnailCache(tmp_path / "cache", limit=20_000)
    blob = bytes(1000)
    cache.put("aa-keep.jpg", blob)
    for i in range(200):
        cache.put(f"{i:02x}-{i}.jpg", blob)
        assert cache.get("aa-keep.jpg") is not None  # used all along: never the least recently used
        assert cache.size() <= 20_000 + 20_000 // 10 + 1000
    assert cache.get(f"{0:02x}-0.jpg") is None  # the oldest unused went first
    assert cache.get(f"{199:02x}-199.jpg") is not None


@pytest.fixture
def film(tmp_path, sqlite_settings, encoder):
    """An indexed 12 s film at 29.97 fps with keyframes far apart, and a client."""
    library = tmp_path / "library"
    library.mkdir()
    shutil.copy(MEDIA / "red.jpg", library / "red.jpg")
    write_video(library / "film.mp4", [(6, "texture", (200, 40, 40)), (6, "texture", (40, 40, 200))])
    # Thumbnails made on first view: what the cache holds is what the requests made.
    settings = sqlite_settings.override(thumbnail_cache=64 * 1024, index_thumbnails=False)
    run_index(settings, [str(library)], encoder=encoder, progress=False)
    client = create_app(settings).test_client()
    video = next(h for h in client.post("/api/v1/search", json={"text": "a film", "k": 5}).json["results"]
                 if h["kind"] == "video")
    return settings, client, video["id"], library


def test_moments_that_land_on_one_frame_share_one_cached_file(film):
    settings, client, video, _ = film
    frame = 30 / NTSC  # the frame shown from 1.001 s
    asked = np.linspace(float(frame) - 0.03, float(frame), 25)  # all land on that frame
    bodies = {client.get(f"/api/v1/items/{video}/thumbnail?t={t:.4f}").data for t in asked}
    assert len(bodies) == 1
    assert [p.name.rsplit("-f", 1)[1] for p in cached_files(settings)] == ["1001.jpg"]


def test_a_flood_of_moments_cannot_fill_the_disk(film):
    settings, client, video, _ = film
    for t in np.arange(0.0, 12.0, 0.05):  # 240 distinct frames
        response = client.get(f"/api/v1/items/{video}/thumbnail?t={t:.3f}")
        assert response.status_code == 200
    assert cache_bytes(settings) <= 1.2 * settings.thumbnail_cache
    assert len(cached_files(settings)) < 240


def test_video_frames_obey_the_image_pixel_limit(tmp_path, sqlite_settings, encoder, film):
    settings, _, video, library = film
    # Thumbnails: a limit below the film's 160x96 frames refuses them, in a 422, before any decode.
    strict = create_app(settings.override(max_image_pixels=10_000)).test_client()
    refused = strict.get(f"/api/v1/items/{video}/thumbnail?t=3")
    assert refused.status_code == 422 and "video frame is 160x96" in refused.json["message"]
    # Indexing: a header over the limit, and a stream whose frames grow past it after three small ones.
    grown = tmp_path / "grown"
    grown.mkdir()
    write_video(grown / "big.mkv", [(2, "solid", (9, 9, 9))], size=(320, 192))
    growing_mjpeg(grown / "grows.mkv")
    summary = run_index(settings.override(max_image_pixels=20_000), [str(grown)], encoder=encoder, progress=False)
    reasons = {s.path.rsplit("/", 1)[1]: s.reason for s in summary.skipped}
    assert reasons["big.mkv"].startswith("video frames are 320x192 = ")
    assert reasons["grows.mkv"].startswith("video frames are 640x480 = ")


def test_a_stored_duration_never_passes_the_video_limit(tmp_path, sqlite_settings, encoder):
    folder = tmp_path / "jump"
    folder.mkdir()
    # Frames at 0-3 s, then one at 9 s: the frame step says it runs to 15 s, past the 10 s limit.
    write_video(folder / "jump.mkv", [(10, "texture", (10, 120, 10))], times=[0, 1, 2, 3, 9])
    summary = run_index(sqlite_settings.override(max_video_seconds=10), [str(folder)], encoder=encoder,
                        progress=False)
    assert [s.reason for s in summary.skipped] == [
        "video runs to 15 s, over the 10 s limit (SPYGLASS_MAX_VIDEO_SECONDS)"]


def test_a_full_disk_costs_the_cache_not_the_answer(tmp_path, tiny_model, encoder):
    from spyglass.search.settings import Settings

    library = tmp_path / "library"  # the library on a disk with room, the data folder on a full one
    library.mkdir()
    with small_disk(tmp_path / "disk", "8m") as disk:
        write_video(library / "film.mp4", [(4, "texture", (200, 40, 40))])
        shutil.copy(MEDIA / "red.jpg", library / "red.jpg")
        settings = Settings(runtime="torch", vector_storage="float32", home=disk / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                            device="cpu", precision="fp32", index_thumbnails=False)
        run_index(settings, [str(library)], encoder=encoder, progress=False)
        fill_disk(disk)
        client = create_app(settings).test_client()
        for hit in client.post("/api/v1/search", json={"text": "red", "k": 5}).json["results"]:
            for t in ("", "?t=1", "?t=2.5"):
                response = client.get(f"/api/v1/items/{hit['id']}/thumbnail{t if hit['kind'] == 'video' else ''}")
                assert response.status_code == 200 and response.data[:3] == b"\xff\xd8\xff"
        assert not cached_files(settings)
        # And the next index run stops with one line, keeping what was published.
        shutil.copy(MEDIA / "Blue Square.PNG", library / "blue.png")
        result = run_spyglass("index", "--no-progress", str(library), env=spyglass_env(settings))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert "the disk is full" in result.stderr and "everything published before this is kept" in result.stderr


def growing_mjpeg(path, small=(64, 48), big=(640, 480)) -> None:
    """An MJPEG Matroska file whose header says `small` and whose frames from the fourth on are `big`."""
    import av

    tick = Fraction(1, 10)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mjpeg", rate=10)
        stream.width, stream.height, stream.pix_fmt = small[0], small[1], "yuvj420p"
        other = av.CodecContext.create("mjpeg", "w")
        other.width, other.height, other.pix_fmt, other.time_base = big[0], big[1], "yuvj420p", tick
        for i in range(6):
            width, height = small if i < 3 else big
            frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 40 * i, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, tick
            for packet in (stream if i < 3 else other).encode(frame):
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, tick
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
