"""Video indexing speed: minutes of 720p film indexed per minute, decoding every frame or only reference frames.

    python benchmarks/video_throughput.py [--films 2] [--seconds 60] [--rounds 3] [--runtime auto] [--ocr]

Films like a phone's (benchmarks/films.py): 720p H.264 at 29.97 fps, about 4.3 Mbit/s, a cut every
5 s between photos that drift, with fresh grain in every frame (x264 defaults: B-frames, scene-cut
key frames). The encoder (ViT-B-32, random weights) is loaded once, so start-up is taken out; each
round then runs the real index job on the folder into a fresh catalog, once with
SPYGLASS_VIDEO_EVERY_FRAME=1 and once without, in alternating order. OCR of video frames is off
unless --ocr (it decodes the film a second time). Cut recall: the cuts that sampling finds at the
exact first frame of each shot, in both modes, against the times the films were written with.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from films import write_film  # noqa: E402


def make_films(folder: Path, count: int, seconds: float) -> dict[str, list[float]]:
    """The films and their cut times, made once and kept in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    truth_file = folder.parent / "cuts.json"
    truth = json.loads(truth_file.read_text()) if truth_file.is_file() else {}
    for i in range(count):
        name = f"film-{i}.mp4"
        if name not in truth or not (folder / name).is_file():
            started = time.perf_counter()
            truth[name] = write_film(folder / name, seconds=seconds, seed=i)
            print(f"made {name} ({seconds:.0f} s) in {time.perf_counter() - started:.0f} s", flush=True)
    truth_file.write_text(json.dumps(truth))
    return {name: truth[name] for name in sorted(truth) if (folder / name).is_file()}


def cut_recall(folder: Path, truth: dict[str, list[float]], every_frame: bool) -> tuple[int, int, int]:
    """(cuts found at their exact first frame, cuts, frames decoded) over every film."""
    from spyglass.search.media.video_frames import SamplingStats, sample_frames

    found = total = decoded = 0
    for name, cuts in truth.items():
        stats = SamplingStats()
        times = [f.time_s for f in sample_frames(folder / name, 64, every_frame=every_frame, stats=stats)
                 if f.reason == "cut"]
        found += sum(any(abs(t - c) < 1e-6 for t in times) for c in cuts)
        total += len(cuts)
        decoded += stats.decoded
    return found, total, decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--films", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--precision", default="fp32", help="fp32 hides the bf16 path (the default here)")
    parser.add_argument("--ocr", action="store_true", help="read text in video frames too (a second decode)")
    parser.add_argument("--work", type=Path, help="keep the films and checkpoint here (default: a temp dir)")
    args = parser.parse_args()

    import torch

    from spyglass.indexer.job import IndexJob
    from spyglass.search.model.encoder import encoder_for, load_encoder
    from spyglass.search.settings import Settings

    with tempfile.TemporaryDirectory(prefix="spyglass-video-") as tmp:
        work = args.work or Path(tmp)
        folder, checkpoint = work / "films", work / "vit-b-32.pt"
        truth = make_films(folder, args.films, args.seconds)
        if not checkpoint.is_file():
            torch.manual_seed(0)
            torch.save(load_encoder("ViT-B-32", None, device="cpu").model.state_dict(), checkpoint)
        video_s = args.films * args.seconds
        base = Settings(home=work / "home", model="ViT-B-32", pretrained=str(checkpoint), device="cpu",
                        precision=args.precision, runtime=args.runtime, ocr="on" if args.ocr else "off",
                        index_thumbnails=False)
        (work / "home").mkdir(parents=True, exist_ok=True)
        encoder = encoder_for(base)
        print(f"encoder: {encoder.runtime.describe()}", flush=True)
        modes = {"every frame": True, "reference frames": False}
        seconds: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_no in range(args.rounds):
            order = list(modes) if round_no % 2 == 0 else list(reversed(modes))
            for mode in order:
                home = work / f"home-{round_no}-{modes[mode]}"
                shutil.rmtree(home, ignore_errors=True)
                settings = base.override(home=home, video_every_frame=modes[mode])
                started = time.perf_counter()
                IndexJob(settings, [str(folder)], encoder=encoder, progress=False, echo=lambda _: None).run()
                seconds[mode].append(time.perf_counter() - started)
            print(f"round {round_no + 1}: " + ", ".join(f"{m} {seconds[m][-1]:.1f} s" for m in modes), flush=True)
        recall = {mode: cut_recall(folder, truth, every) for mode, every in modes.items()}

    print(f"\n{args.films} films x {args.seconds:.0f} s of 720p H.264 29.97 fps, a cut every 5 s; "
          f"encoder {encoder.runtime.image.chosen}; OCR {'on' if args.ocr else 'off'}; start-up taken out")
    print(f"{'':20}{'best':>10}{'median':>10}  minutes of video per minute")
    for mode in modes:
        rates = [video_s / s for s in seconds[mode]]
        print(f"{mode:20}{max(rates):>10.1f}{statistics.median(rates):>10.1f}"
              f"  (job {min(seconds[mode]):.1f} s best, {statistics.median(seconds[mode]):.1f} s median)")
    every, fast = seconds["every frame"], seconds["reference frames"]
    print(f"reference frames / every frame: {min(every) / min(fast):.2f}x (best), "
          f"{statistics.median(every) / statistics.median(fast):.2f}x (median)")
    for mode, (found, total, decoded) in recall.items():
        print(f"cut recall, {mode}: {found}/{total} at the shot's exact first frame; {decoded} frames decoded")


if __name__ == "__main__":
    main()
