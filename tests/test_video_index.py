"""Videos end to end: frames in the catalog and index, moments in search, the API, CLI and check."""

from __future__ import annotations

import io
import re
import shutil
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("av")

from conftest import MEDIA, run_spyglass, spyglass_env  # noqa: E402
from make_videos import NTSC, write_video  # noqa: E402
from sqlalchemy import delete, select  # noqa: E402

from spyglass.indexer.check import check_index  # noqa: E402
from spyglass.indexer.job import run_index  # noqa: E402
from spyglass.search.media.video_frames import sample_frames  # noqa: E402
from spyglass.search.engine import SearchEngine  # noqa: E402
from spyglass.search.moments import format_range, moments  # noqa: E402
from spyglass.search.store.ids import frame_vector_id  # noqa: E402
from spyglass.search.query import Filters  # noqa: E402
from spyglass.search.catalog.schema import MediaItem, VideoFrame  # noqa: E402
from spyglass.web import create_app  # noqa: E402

# Four shots, cuts at 3, 7 and 12 s: shot 3 (7 to 12 s) is the one searched for.
SHOTS = [(3, "solid", (200, 0, 0)), (4, "texture", (0, 0, 200)), (5, "texture", (0, 200, 0)),
         (4, "solid", (240, 240, 0))]
ONE_FRAME = float(1 / NTSC)


def make_library(folder):
    """Two images, a 29.97 fps film with cuts, a variable-frame-rate mkv, a static minute, two broken videos."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("red.jpg", "Blue Square.PNG"):
        shutil.copy(MEDIA / name, folder / name)
    write_video(folder / "film.mp4", SHOTS)
    times, t = [], 0.0
    while t < 6:
        times.append(round(t, 3))
        t += 1 / 30 if t < 2 else 1 / 12
    write_video(folder / "phone.mkv", [(2.5, "texture", (180, 120, 40)), (4, "solid", (40, 90, 200))], times=times)
    write_video(folder / "static.mp4", [(60, "solid", (90, 90, 90))], fps=Fraction(30), size=(64, 36))
    (folder / "corrupt.mov").write_bytes(b"\x00\x00\x00\x18ftypqt  " + bytes(range(256)) * 40)
    whole = (folder / "film.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    return folder


@pytest.fixture
def library(tmp_path):
    return make_library(tmp_path / "library")


def frames_by_path(settings) -> dict[str, list[tuple[float, float]]]:
    engine = SearchEngine(settings)
    try:
        with engine.catalog.sessions() as session:
            rows = session.execute(select(MediaItem.path, VideoFrame.start_s, VideoFrame.end_s)
                                   .join(VideoFrame, VideoFrame.item_id == MediaItem.id)
                                   .order_by(MediaItem.path, VideoFrame.start_s))
            found: dict[str, list] = {}
            for path, start, end in rows:
                found.setdefault(path.rsplit("/", 1)[-1], []).append((start, end))
            return found
    finally:
        engine.close()


def frame_of_shot_3(path) -> bytes:
    frame = next(f for f in sample_frames(path, cover=64) if 7 < f.time_s < 12)
    out = io.BytesIO()
    frame.image.save(out, "PNG")
    return out.getvalue()


def test_videos_are_indexed_frame_by_frame_and_found_at_the_moment(settings, library):
    summary = run_index(settings, [str(library)], progress=False)
    skipped = {s.path.rsplit("/", 1)[-1]: s.reason for s in summary.skipped}
    assert set(skipped) == {"corrupt.mov", "truncated.mp4"}, skipped
    assert all("video" in reason for reason in skipped.values()), skipped
    assert summary.added == 5 and summary.videos == 3

    frames = frames_by_path(settings)
    film = [start for start, _ in frames["film.mp4"]]
    # A frame at every cut, within one frame of the truth (the first frame of the new shot).
    for cut in (3.0, 7.0, 12.0):
        assert any(cut <= start < cut + ONE_FRAME + 1e-6 for start in film), (cut, film)
    assert frames["film.mp4"][-1][1] == pytest.approx(16, abs=2 * ONE_FRAME)  # the last frame runs to the end
    assert all(a[1] == b[0] for a, b in zip(frames["film.mp4"], frames["film.mp4"][1:]))
    assert any(abs(start - 2.5) < 1 / 12 + 1e-3 for start, _ in frames["phone.mkv"]), frames["phone.mkv"]
    # A static minute: 15 frames sampled (one every 4 s), near-duplicates dropped by embedding.
    assert len(frames["static.mp4"]) <= 3, frames["static.mp4"]

    engine = SearchEngine(settings)
    try:
        snapshot = engine.live()
        kept = sum(len(v) for v in frames.values())
        assert len(snapshot.searcher) == 5 + kept  # two images, three pooled video vectors, the frames
        result = engine.search_image(frame_of_shot_3(library / "film.mp4"), k=5)
        top = result.hits[0]
        assert top.item.path.endswith("film.mp4") and top.item.kind == "video"
        best = top.moments[0]
        assert abs(best.start_s - 7) <= 0.5 and abs(best.end_s - 12) <= 0.5, top.moments
        assert 7 <= best.best_s < 12 and best.score == pytest.approx(top.score, abs=1e-5)
        assert len(top.moments) <= 3
        # Images and videos rank together, each item once; kind= picks one.
        paths = [h.item.path for h in result.hits]
        assert len(paths) == len(set(paths)) == 5
        images = engine.search_image(frame_of_shot_3(library / "film.mp4"), k=5, filters=Filters(kind="image"))
        assert {h.item.kind for h in images.hits} == {"image"} and len(images.hits) == 2
        videos = engine.search_text("a green texture", k=5, filters=Filters(kind="video"))
        assert {h.item.kind for h in videos.hits} == {"video"} and len(videos.hits) == 3
        assert all(h.moments for h in videos.hits)
    finally:
        engine.close()


def test_the_api_gives_moments_posters_and_seekable_files(sqlite_settings, library):
    run_index(sqlite_settings, [str(library)], progress=False)
    client = create_app(sqlite_settings).test_client()
    image = frame_of_shot_3(library / "film.mp4")
    import base64

    body = client.post("/api/v1/search", json={"image_base64": base64.b64encode(image).decode(), "k": 3}).get_json()
    hit = body["results"][0]
    assert hit["name"] == "film.mp4" and hit["kind"] == "video"
    assert abs(hit["start_s"] - 7) <= 0.5 and abs(hit["end_s"] - 12) <= 0.5 and hit["start_s"] <= hit["best_s"]
    assert hit["file_url"].endswith(f"/file#t={hit['start_s']:.3f},{hit['end_s']:.3f}")
    assert hit["thumbnail_url"].endswith(f"/thumbnail?t={hit['best_s']:.3f}")
    assert 1 <= len(hit["segments"]) <= 3 and hit["duration_s"] == pytest.approx(16, abs=0.1)

    poster = client.get(hit["thumbnail_url"].split("localhost", 1)[1])
    assert poster.status_code == 200 and poster.mimetype == "image/jpeg"
    still = np.asarray(Image.open(io.BytesIO(poster.data)).convert("RGB"), dtype=float)
    assert still[..., 1].mean() > 2 * still[..., 0].mean()  # shot 3 is green
    first = np.asarray(Image.open(io.BytesIO(client.get(f"/api/v1/items/{hit['id']}/thumbnail?t=1").data)), float)
    assert first[..., 0].mean() > 2 * first[..., 1].mean()  # shot 1 is red
    for bad in ("-1", "nan", "inf", "1e9", "soon"):
        answer = client.get(f"/api/v1/items/{hit['id']}/thumbnail?t={bad}")
        assert answer.status_code == 400, (bad, answer.status_code)

    part = client.get(f"/api/v1/items/{hit['id']}/file", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.mimetype == "video/mp4" and len(part.data) == 100
    assert part.data[4:8] == b"ftyp"

    knn = client.post("/knn-service", json={"image": base64.b64encode(image).decode(), "num_images": 2}).get_json()
    assert re.search(r"/file#t=\d+\.\d{3},\d+\.\d{3}$", knn[0]["url"]), knn[0]
    status = client.get("/api/v1/status").get_json()
    assert status["videos"]["videos"] == 3 and status["videos"]["frames"] >= 6


@pytest.mark.slow
def test_cli_prints_video_moments_and_status_counts_them(sqlite_settings, library):
    env = spyglass_env(sqlite_settings)
    assert run_spyglass("index", "--no-progress", str(library), env=env).returncode == 0
    found = run_spyglass("search", "--kind", "video", "a yellow wall", env=env)
    assert found.returncode == 0, found.stderr
    lines = found.stdout.strip().splitlines()
    assert lines and all(re.fullmatch(r"-?\d\.\d{4}  \S+\.(mp4|mkv)  \d\d:\d\d–\d\d:\d\d", line) for line in lines), lines
    status = run_spyglass("status", env=env)
    assert re.search(r"Videos:\s+videos 3, frames \d+, hours 0\.02", status.stdout), status.stdout


def test_incremental_runs_moves_and_deletions_cover_videos(settings, library):
    run_index(settings, [str(library)], progress=False)
    before = frames_by_path(settings)
    again = run_index(settings, [str(library)], progress=False)
    assert again.added == again.updated == again.videos == 0 and again.unchanged == 5

    (library / "sub").mkdir()
    (library / "phone.mkv").rename(library / "sub" / "moved.mkv")
    (library / "static.mp4").unlink()
    write_video(library / "film.mp4", SHOTS[:2])  # the same path, other content: 7 s, one cut
    summary = run_index(settings, [str(library)], progress=False)
    assert (summary.moved, summary.removed, summary.updated) == (1, 1, 1), summary.line()
    after = frames_by_path(settings)
    assert after["moved.mkv"] == before["phone.mkv"]  # a move keeps the frames, not re-embedded
    assert "static.mp4" not in after and len(after["film.mp4"]) < len(before["film.mp4"])

    engine = SearchEngine(settings)
    try:
        snapshot = engine.live()
        with engine.catalog.sessions() as session:
            frame_ids = list(session.scalars(select(VideoFrame.id)))
            items = list(session.scalars(select(MediaItem.id)))
        # The index holds exactly the items and the remaining frames: removed videos' frames went too.
        assert set(snapshot.stored.ids().tolist()) == set(items) | {frame_vector_id(i) for i in frame_ids}
    finally:
        engine.close()
    report = check_index(settings)
    assert report.ok and report.frames == len(frame_ids), report.lines()


def test_check_finds_and_repairs_a_frame_without_a_row(sqlite_settings, library):
    run_index(sqlite_settings, [str(library)], progress=False)
    engine = SearchEngine(sqlite_settings)
    with engine.catalog.sessions.begin() as session:
        lost = session.scalars(select(VideoFrame.id).limit(1)).one()
        session.execute(delete(VideoFrame).where(VideoFrame.id == lost))
    engine.close()
    report = check_index(sqlite_settings)
    assert not report.ok and report.orphan_vectors == [frame_vector_id(lost)]
    assert check_index(sqlite_settings, repair=True).repaired
    assert check_index(sqlite_settings).ok


@pytest.mark.slow
def test_a_run_killed_before_publishing_resumes_videos_from_staging(sqlite_settings, library):
    from test_crash_and_swap import kill_at_failpoint

    env = spyglass_env(sqlite_settings)
    import sys

    command = [sys.executable, "-m", "spyglass.cli", "index", "--no-progress", str(library)]
    assert kill_at_failpoint(command, env, "publish")
    resumed = run_spyglass("index", "--no-progress", str(library), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "5 taken from an interrupted run" in resumed.stdout, resumed.stdout
    frames = frames_by_path(sqlite_settings)
    assert len(frames["film.mp4"]) >= 4 and all(a[1] == b[0] for a, b in zip(frames["film.mp4"], frames["film.mp4"][1:]))
    assert check_index(sqlite_settings).ok


def test_a_model_swap_re_embeds_the_frames(sqlite_settings, library, other_model):
    run_index(sqlite_settings, [str(library)], progress=False)
    before = frames_by_path(sqlite_settings)
    other = sqlite_settings.override(model=str(other_model[0]), pretrained=str(other_model[1]))
    run_index(other, [str(library)], rebuild=True, progress=False)
    after = frames_by_path(other)
    assert set(after) == set(before)
    assert [s for s, _ in after["film.mp4"]][:1] == [0.0]
    engine = SearchEngine(other)
    try:
        snapshot = engine.live()
        assert snapshot.searcher.dim == 24
        with engine.catalog.sessions() as session:
            frame_ids = list(session.scalars(select(VideoFrame.id)))
        assert snapshot.stored.contains(np.asarray([frame_vector_id(i) for i in frame_ids])).all()
    finally:
        engine.close()
    assert check_index(other).ok


def test_labels_are_given_to_videos_not_to_their_frames(settings, library, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nyellow\n")
    summary = run_index(settings.override(labels=labels), [str(library)], progress=False)
    assert summary.labelled == 5  # two images, three videos


def test_without_pyav_videos_are_left_out_with_one_line(sqlite_settings, library, monkeypatch):
    import spyglass.indexer.job as jobs

    monkeypatch.setattr(jobs, "video_support", lambda: False)
    said = []
    summary = run_index(sqlite_settings, [str(library)], progress=False, echo=said.append)
    assert summary.added == 2 and not summary.skipped  # not remembered as skipped: PyAV takes them next run
    assert any("5 videos left out" in line and "spyglass[video]" in line for line in said), said


def test_segments_merge_neighbours_cut_relative_to_the_best_and_keep_three():
    starts = np.arange(10, dtype=float) * 2
    ends = starts + 2
    scores = np.array([0.1, 0.9, 0.95, 0.1, 0.8, 0.1, 0.1, 0.85, 0.1, 0.7])
    found = moments(starts, ends, scores, spread=0.25)
    assert [(s.start_s, s.end_s, s.best_s) for s in found] == [(2, 6, 4), (14, 16, 14), (8, 10, 8)]
    assert found[0].score == pytest.approx(0.95)
    # A frame at 0.7 is within half the range of 0.95 but not within a quarter: cut relative to the best.
    assert len(moments(starts, ends, scores, spread=0.5)) == 3 and all(
        s.score >= 0.525 for s in moments(starts, ends, scores, spread=0.5))
    same = moments(starts, ends, np.full(10, 0.3))
    assert [(s.start_s, s.end_s) for s in same] == [(0, 20)]  # a video that matches throughout is one moment
    assert format_range(72, 79.4) == "01:12–01:19" and format_range(3599.6, 3725) == "1:00:00–1:02:05"


def test_a_moment_stays_inside_its_shot(sqlite_settings, tmp_path):
    # Four six-second shots at 29.97 fps; searching by a frame of the third (12 to 18 s) once gave
    # 12-24 s, the fourth shot merged in by the score-range rule alone.
    library = tmp_path / "film"
    library.mkdir()
    write_video(library / "four.mp4", [(6, "texture", (200, 40, 40)), (6, "texture", (40, 40, 200)),
                                       (6, "texture", (40, 200, 40)), (6, "texture", (230, 230, 30))])
    run_index(sqlite_settings, [str(library)], progress=False)
    engine = SearchEngine(sqlite_settings)
    try:
        with engine.catalog.sessions() as session:
            shots = session.execute(select(VideoFrame.start_s, VideoFrame.shot).order_by(VideoFrame.start_s)).all()
        # Each shot keeps its first frame, however alike the last two look, and knows its shot.
        assert [shot for _, shot in shots][:1] == [0] and {shot for _, shot in shots} == {0, 1, 2, 3}, shots
        assert all(shot == (0 if start < 6 else 1 if start < 12 else 2 if start < 18 else 3)
                   for start, shot in shots), shots
        frame = next(f for f in sample_frames(library / "four.mp4", cover=64) if 13 < f.time_s < 17)
        query = io.BytesIO()
        frame.image.save(query, "PNG")
        best = engine.search_image(query.getvalue(), k=1).hits[0].moments[0]
        assert abs(best.start_s - 12) < 0.1 and abs(best.end_s - 18) < 0.1, best
    finally:
        engine.close()
