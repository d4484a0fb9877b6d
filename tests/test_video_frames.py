"""Video frame sampling on videos made with PyAV: presentation times, cuts, gaps, and bad files."""

from __future__ import annotations

from fractions import Fraction

import pytest

pytest.importorskip("av")

from make_videos import NTSC, write_video  # noqa: E402
from spyglass.search.media.video_frames import VideoRefused, is_video, probe, sample_frames  # noqa: E402

SHOTS = [(3, "solid", (200, 0, 0)), (4, "texture", (0, 0, 200)), (5, "solid", (0, 200, 0))]


def test_cuts_are_found_at_their_presentation_times_on_29_97_fps(tmp_path):
    path = tmp_path / "ntsc.mp4"
    times = write_video(path, SHOTS)
    frames = list(sample_frames(path, cover=64, max_gap_s=4.0))
    one_frame = float(1 / NTSC)
    assert [f.reason for f in frames] == ["first", "cut", "cut", "gap"]
    for frame, truth in zip(frames[1:3], (3.0, 7.0)):
        assert truth <= frame.time_s < truth + one_frame  # the first frame of the new shot
        assert frame.time_s in times  # a real frame's time, not index / rounded fps
    # 11 s into the third shot's 4 s gap: frame 330 at 30000/1001 fps is 11.011 s, where
    # index / 30 fps would say 11.000 (and 2 s later the two are a frame apart).
    assert frames[3].time_s == pytest.approx(330 * 1001 / 30000, abs=1e-6)
    assert all(min(f.image.size) == 64 and f.image.mode == "RGB" for f in frames)
    assert probe(path, 3600).duration_s == pytest.approx(12, abs=0.1)


def test_variable_frame_rate_times_are_the_frames_own(tmp_path):
    path = tmp_path / "phone.mkv"
    # Phone video: 30 fps, then 15 fps in the dark, then bursts, with a cut at 2.5 s.
    times, t = [], 0.0
    while t < 6:
        times.append(round(t, 3))
        t += 1 / 30 if t < 2 else (1 / 15 if t < 4 else (0.02 if int(t * 10) % 2 else 0.05))
    write_video(path, [(2.5, "texture", (180, 120, 40)), (4, "texture", (40, 90, 200))], times=times)
    frames = list(sample_frames(path, cover=32, max_gap_s=2.0))
    cut = next(f for f in frames if f.reason == "cut")
    expected = min(x for x in times if x >= 2.5)
    assert cut.time_s == pytest.approx(expected, abs=0.0015)  # the mkv stores milliseconds
    gaps = [f.time_s for f in frames if f.reason == "gap"]
    assert gaps and all(g in [pytest.approx(x, abs=0.0015) for x in times] for g in gaps)
    kept = [f.time_s for f in frames]
    assert all(b - a <= 2.0 + 0.07 for a, b in zip(kept, kept[1:]))  # never more than the gap (plus a frame)


def test_cuts_on_skipped_frames_are_found_at_their_own_first_frame(tmp_path):
    """Only reference frames are decoded at first; a cut whose first frame the decoder skipped (a
    B-frame, with x264's scene-cut key frames off, as a fixed-GOP encoder makes them) is found by
    decoding that stretch again, at the same frame as decoding every frame finds it."""
    path = tmp_path / "fixed-gop.mp4"
    shots = [(1.3, "texture", (200, 40, 40)), (1.1, "texture", (40, 200, 40)), (0.9, "solid", (40, 40, 200)),
             (1.7, "texture", (220, 220, 60)), (1.0, "solid", (20, 20, 20))]
    times = write_video(path, shots, fps=Fraction(30),
                        x264_params="scenecut=0:keyint=300:bframes=3:b-pyramid=none:b-adapt=0")
    every = list(sample_frames(path, cover=32, max_gap_s=4.0, every_frame=True))
    fast = list(sample_frames(path, cover=32, max_gap_s=4.0))
    import numpy as np

    shot_of = np.searchsorted(np.cumsum([0.0] + [d for d, _, _ in shots]), times, side="right")  # as written
    truth = [t for t, a, b in zip(times[1:], shot_of, shot_of[1:]) if a != b]
    assert len(truth) == 4
    assert [f.time_s for f in every if f.reason == "cut"] == pytest.approx(truth, abs=1e-6)
    assert [(f.time_s, f.reason) for f in fast] == [(f.time_s, f.reason) for f in every]
    # Two of three frames are non-reference B-frames here: most of them were never decoded.
    from spyglass.search.media.video_frames import SamplingStats

    stats = SamplingStats()
    list(sample_frames(path, cover=32, stats=stats))
    assert stats.decoded < len(times) / 2


def test_a_static_shot_costs_one_frame_per_gap(tmp_path):
    path = tmp_path / "static.mp4"
    write_video(path, [(60, "solid", (90, 90, 90))], fps=Fraction(30), size=(64, 36))
    frames = list(sample_frames(path, cover=32, max_gap_s=4.0))
    assert [f.reason for f in frames].count("cut") == 0
    assert len(frames) == 15  # 0, 4, 8, ... 56: not one per second, and not one per frame


def test_bad_videos_are_refused_with_a_reason(tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    with pytest.raises(VideoRefused, match="not a readable video"):
        list(sample_frames(corrupt, cover=32))

    whole = tmp_path / "whole.mp4"
    write_video(whole, SHOTS)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # mp4's index is at the end
    with pytest.raises(VideoRefused):
        list(sample_frames(truncated, cover=32))

    with pytest.raises(VideoRefused, match="over the 5 s limit"):
        probe(whole, max_seconds=5)

    import av
    import numpy as np

    audio_only = tmp_path / "sound.mp4"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in list(stream.encode(frame)) + list(stream.encode()):
            container.mux(packet)
    with pytest.raises(VideoRefused, match="no video stream"):
        probe(audio_only, 3600)


def test_video_files_are_known_by_extension_in_any_case():
    assert all(is_video(f"clip.{ext}") for ext in ("mp4", "MOV", "m4v", "MKV", "webm", "Avi"))
    assert not is_video("photo.jpg") and not is_video("mp4")
