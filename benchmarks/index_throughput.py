"""Indexing speed: model-only fp32 and reduced precision, `spyglass index`, and clip-retrieval, interleaved.

    python benchmarks/index_throughput.py [--images 300] [--rounds 3] [--precision auto] [--runtime auto]
                                          [--peer-venv /path/to/venv-with-clip-retrieval]

One run, on one folder of photo-like JPEGs of mixed sizes (640 px to 4000 px, tests/photo_corpus.py)
and one ViT-B-32 checkpoint with random weights written here (throughput does not depend on
the values of the weights; a stand-in for real ones, which cannot be downloaded here). Each
round times, in turn:

  model-only fp32     the encoder alone on already-decoded batches, in fp32;
  model-only <prec>   the same in the precision SPYGLASS_PRECISION=<prec> chooses;
  model-only onnx-*   the same in ONNX Runtime, fp32 and int8 (the runtimes SPYGLASS_RUNTIME=auto
                      times, whichever it chose), each with its cosine to PyTorch fp32;
  spyglass index      the CLI as a user runs it, into a fresh catalog: start-up, model load and
                      fidelity check, scan, read, hash, decode, embed, SQL, FAISS publish, the
                      photo facts and the words stage's file names; with OCR and index-time
                      thumbnails off (clip-retrieval does neither) unless --full-job;
  clip-retrieval      `clip-retrieval inference` on the same folder with the same checkpoint,
                      when --peer-venv names a venv where it is installed
                      (pip install clip-retrieval "setuptools<70").

Prints best and median of each, whole-job times and each tool's own steady rate (Spyglass's
"images/s" figure; clip-retrieval's stats/*.json sample_count / total_duration), the ratios,
the per-image cosine of the indexed vectors against open_clip's reference preprocess of the full
image + fp32 encode (the minimum over every image), text query encode time (best and p50 of 20
queries) per precision and runtime, and the disk bytes per stored vector. `--precision fp32` hides the bf16 path on a CPU that
has it (say so when quoting the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402

from spyglass.search.settings import PRECISIONS, RUNTIMES  # noqa: E402


def timed_rate(encode, batches) -> float:
    """Images/s of encode over pre-decoded batches."""
    started = time.perf_counter()
    count = 0
    for batch in batches:
        encode(batch)
        count += len(batch)
    return count / (time.perf_counter() - started)


SAME_WORK = {"SPYGLASS_OCR": "off", "SPYGLASS_INDEX_THUMBNAILS": "0"}  # what clip-retrieval does not do


def spyglass_env(home: Path, checkpoint: Path, precision: str, runtime: str, batch_size: int,
                 same_work: bool = True) -> dict:
    """The environment a user's `spyglass index` would run with; by default without the work
    clip-retrieval does not do (reading text with OCR, making thumbnails), so both jobs embed alike."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPYGLASS_")}
    env.update(SPYGLASS_HOME=str(home), SPYGLASS_MODEL="ViT-B-32", SPYGLASS_PRETRAINED=str(checkpoint),
               SPYGLASS_DEVICE="cpu", SPYGLASS_PRECISION=precision, SPYGLASS_RUNTIME=runtime,
               SPYGLASS_BATCH_SIZE=str(batch_size), **(SAME_WORK if same_work else {}))
    return env


def run_spyglass(folder: Path, home: Path, checkpoint: Path, precision: str, runtime: str, batch_size: int,
                 runtimes: Path, same_work: bool = True) -> tuple[float, float]:
    """(whole-job seconds, Spyglass's own images/s) of `spyglass index` into a fresh home.

    The exported graphs and the probe live in the user's home, so a new home would pay the export
    in every round: they are linked in from one folder, as a user's second run finds them."""
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    (home / "runtimes").symlink_to(runtimes)
    spyglass = Path(sys.executable).with_name("spyglass")
    started = time.perf_counter()
    done = subprocess.run([str(spyglass), "index", "--no-progress", str(folder)], capture_output=True, text=True,
                          env=spyglass_env(home, checkpoint, precision, runtime, batch_size, same_work), timeout=3600)
    elapsed = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"spyglass index failed:\n{done.stderr[-2000:]}")
    rate = re.search(r"([\d.]+) images/s", done.stdout + done.stderr)
    chosen = re.search(r"Encoder runtime: images (\S+?)[:( ]", done.stdout + done.stderr)
    RUNTIME_SEEN.add(chosen[1] if chosen else "?")
    return elapsed, float(rate[1]) if rate else float("nan")


RUNTIME_SEEN: set[str] = set()  # the image runtimes `spyglass index` said it chose


def run_peer(venv: Path, folder: Path, out: Path, checkpoint: Path, batch_size: int, workers: int) -> tuple[float, float]:
    """(whole-job seconds, its own steady images/s) of `clip-retrieval inference`."""
    shutil.rmtree(out, ignore_errors=True)
    command = [str(venv / "bin" / "clip-retrieval"), "inference", "--input_dataset", str(folder),
               "--output_folder", str(out), "--clip_model", f"open_clip:ViT-B-32/{checkpoint}",
               "--enable_text", "False", "--batch_size", str(batch_size), "--num_prepro_workers", str(workers)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"clip-retrieval failed:\n{done.stderr[-2000:]}")
    stats = [json.loads(p.read_text()) for p in (out / "stats").glob("*.json")]
    count = sum(s["sample_count"] for s in stats)
    return elapsed, count / sum(s["total_duration"] for s in stats)


def indexed_fidelity(home: Path, checkpoint: Path, precision: str, folder: Path) -> tuple[float, float, int, float]:
    """(min, median, count) cosine of the indexed vectors against open_clip's own pipeline in fp32."""
    import open_clip
    import torch
    from PIL import Image

    from spyglass.search.engine import SearchEngine
    from spyglass.search.settings import Settings

    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(checkpoint))
    model.eval()
    settings = Settings(home=home, model="ViT-B-32", pretrained=str(checkpoint), device="cpu", precision=precision,
                        runtime="torch")
    engine = SearchEngine(settings)
    live = engine.live()
    cosines = []
    for path in sorted(folder.iterdir()):
        item = engine.catalog.item_by_path(str(path))
        with torch.inference_mode():
            reference = model.encode_image(preprocess(Image.open(path).convert("RGB"))[None], normalize=True)[0]
        cosines.append(float(live.searcher.vector(item.id) @ reference.numpy()))
    index_bytes = sum(p.stat().st_size for p in (home / "index").rglob("*") if p.is_file())
    return min(cosines), statistics.median(cosines), len(cosines), index_bytes / len(cosines)


def text_encode_ms(encoder, rounds: int = 20) -> tuple[float, float]:
    """(best, p50) time of one query's text encode over `rounds` queries, in milliseconds."""
    encoder.encode_texts(["warm up"])
    times = []
    for i in range(rounds):
        started = time.perf_counter()
        encoder.encode_texts([f"a red bicycle leaning on a wall, number {i}"])
        times.append((time.perf_counter() - started) * 1000)
    return min(times), statistics.median(times)


def row(name: str, values: list[float], unit: str) -> str:
    return f"{name:24}{max(values):>10.1f}{statistics.median(values):>10.1f}  {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--runtime", default="auto", choices=RUNTIMES, help="SPYGLASS_RUNTIME of `spyglass index`")
    parser.add_argument("--full-job", action="store_true",
                        help="keep OCR and index-time thumbnails on, as a default `spyglass index` runs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--peer-venv", type=Path, help="a venv with clip-retrieval installed")
    parser.add_argument("--peer-workers", type=int, default=os.cpu_count() or 2,
                        help="clip-retrieval's --num_prepro_workers (default: the cores)")
    parser.add_argument("--work", type=Path, help="keep the corpus and checkpoint here (default: a temp dir)")
    args = parser.parse_args()

    import torch

    from photo_corpus import write_corpus
    from spyglass.indexer.decode import load_file
    from spyglass.indexer.scan import FoundFile, walk
    from spyglass.search.model.encoder import load_encoder
    from spyglass.search.media.files import MediaRoots
    from spyglass.search.settings import Settings

    with tempfile.TemporaryDirectory(prefix="spyglass-bench-") as tmp:
        work = args.work or Path(tmp)
        folder, checkpoint = work / "media", work / "vit-b-32.pt"
        if not folder.is_dir() or len(list(folder.iterdir())) != args.images:
            print(f"making {args.images} photo-like JPEGs of 640 to 4000 px ...", flush=True)
            write_corpus(folder, args.images, ("JPEG",))
        if not checkpoint.is_file():
            torch.manual_seed(0)
            torch.save(load_encoder("ViT-B-32", None, device="cpu").model.state_dict(), checkpoint)
        fp32 = load_encoder("ViT-B-32", str(checkpoint), device="cpu")
        reduced = load_encoder("ViT-B-32", str(checkpoint), device="cpu", precision=args.precision)
        chosen = reduced.precision
        print(f"precision {args.precision}: {reduced.precision_check.describe()}", flush=True)
        runtimes = work / "runtimes"
        shutil.rmtree(runtimes, ignore_errors=True)
        started = time.perf_counter()
        onnx = {"onnx": load_encoder("ViT-B-32", str(checkpoint), device="cpu", runtime="onnx", runtime_dir=runtimes)}
        first_load = time.perf_counter() - started  # export, quantise and probe
        onnx["onnx-int8"] = load_encoder("ViT-B-32", str(checkpoint), device="cpu", runtime="onnx-int8",
                                         runtime_dir=runtimes)
        for name, encoder in onnx.items():
            print(f"runtime {name}: {encoder.runtime.describe()}", flush=True)
        # The probe the index runs will read, made here so no round pays for it.
        probe = load_encoder("ViT-B-32", str(checkpoint), device="cpu", precision=args.precision,
                             runtime=args.runtime, runtime_dir=runtimes)
        print(f"runtime {args.runtime}: {probe.runtime.describe()}", flush=True)
        del probe
        loads = {"torch": [], args.runtime: []}
        for _ in range(3):  # model loads, interleaved: PyTorch alone, and with the probe cached
            for name in loads:
                started = time.perf_counter()
                load_encoder("ViT-B-32", str(checkpoint), device="cpu", precision=args.precision, runtime=name,
                             runtime_dir=runtimes)
                loads[name].append(time.perf_counter() - started)
        print(f"first load with runtime onnx (export both towers, quantise, probe): {first_load:.1f} s; "
              f"later loads, best of 3: torch {min(loads['torch']):.1f} s, {args.runtime} (probe cached) "
              f"{min(loads[args.runtime]):.1f} s", flush=True)
        settings = Settings(home=work / "unused")
        files = [f for f in walk(folder) if isinstance(f, FoundFile)]
        pixels = [load_file(f, fp32.preprocess, settings.max_image_pixels, fp32.image_size, lambda *_: True,
                            MediaRoots.of([str(folder)], settings)).pixels for f in files]
        batches = [torch.stack(pixels[i:i + args.batch_size]) for i in range(0, len(pixels), args.batch_size)]
        fp32.encode_pixels(batches[0][:2]), reduced.encode_pixels(batches[0][:2])  # warm-up
        onnx_names = {name: encoder.runtime.image.chosen for name, encoder in onnx.items()}
        for encoder in onnx.values():
            encoder.encode_pixels(batches[0][:2])

        rates = {"fp32": [], chosen: [], "spyglass": [], "peer": [], **{n: [] for n in onnx_names.values()}}
        whole = {"spyglass": [], "peer": []}
        for round_no in range(args.rounds):
            rates["fp32"].append(timed_rate(fp32.encode_pixels, batches))
            if chosen != "fp32":
                rates[chosen].append(timed_rate(reduced.encode_pixels, batches))
            for name, encoder in onnx.items():
                if onnx_names[name] not in ("fp32", chosen):
                    rates[onnx_names[name]].append(timed_rate(encoder.encode_pixels, batches))
            home = work / f"home-{round_no}"
            seconds, rate = run_spyglass(folder, home, checkpoint, args.precision, args.runtime, args.batch_size,
                                         runtimes, same_work=not args.full_job)
            whole["spyglass"].append(seconds)
            rates["spyglass"].append(rate)
            others = ", ".join(f"{n} {v[-1]:.1f}" for n, v in rates.items()
                               if n not in ("fp32", "spyglass", "peer") and v)
            line = (f"round {round_no + 1}: model-only fp32 {rates['fp32'][-1]:.1f} img/s, {others}; "
                    f"spyglass index {seconds:.1f} s ({rate:.1f} img/s)")
            if args.peer_venv:
                out = work / f"peer-{round_no}"
                seconds, rate = run_peer(args.peer_venv, folder, out, checkpoint, args.batch_size, args.peer_workers)
                whole["peer"].append(seconds)
                rates["peer"].append(rate)
                line += f"; clip-retrieval {seconds:.1f} s ({rate:.1f} img/s)"
            print(line, flush=True)
        worst, median_cos, count, per_vector = indexed_fidelity(work / "home-0", checkpoint, args.precision, folder)
        text_fp32, text_reduced = text_encode_ms(fp32), text_encode_ms(reduced)
        text_onnx = {encoder.runtime.text.chosen: text_encode_ms(encoder) for encoder in onnx.values()}

    n = args.images
    print(f"\nViT-B-32, {n} photo-like JPEGs 640-4000 px, batch {args.batch_size}, {os.cpu_count()} cores, "
          f"torch threads {torch.get_num_threads()}, precision {args.precision} -> {chosen}, runtime "
          f"{args.runtime} -> images {', '.join(sorted(RUNTIME_SEEN))}; spyglass "
          + ("with OCR and thumbnails" if args.full_job else "with " + " ".join(f"{k}={v}" for k, v in SAME_WORK.items())))
    print(f"{'':24}{'best':>10}{'median':>10}")
    print(row("model-only fp32", rates["fp32"], "img/s"))
    for name, values in rates.items():
        if name not in ("fp32", "spyglass", "peer") and values:
            print(row(f"model-only {name}", values, f"img/s ({max(values) / max(rates['fp32']):.2f}x fp32)"))
    print(row("spyglass index (rate)", rates["spyglass"], "img/s, its own figure"))
    print(row("spyglass index (job)", [n / s for s in whole["spyglass"]], f"img/s over the whole job "
              f"(best {min(whole['spyglass']):.1f} s)"))
    if whole["peer"]:
        print(row("clip-retrieval (rate)", rates["peer"], "img/s, its own figure"))
        print(row("clip-retrieval (job)", [n / s for s in whole["peer"]], f"img/s over the whole job "
                  f"(best {min(whole['peer']):.1f} s)"))
        print(f"whole job: spyglass {min(whole['peer']) / min(whole['spyglass']):.2f}x clip-retrieval (best), "
              f"{statistics.median(whole['peer']) / statistics.median(whole['spyglass']):.2f}x (median)")
        print(f"steady rate: spyglass {max(rates['spyglass']) / max(rates['peer']):.2f}x clip-retrieval (best), "
              f"{statistics.median(rates['spyglass']) / statistics.median(rates['peer']):.2f}x (median)")
    print(f"fidelity: cosine of the {count} indexed vectors against open_clip's preprocess + fp32: "
          f"min {worst:.5f}, median {median_cos:.6f}")
    print(f"text query encode over 20 queries, best / p50: torch fp32 {text_fp32[0]:.1f} / {text_fp32[1]:.1f} ms, "
          f"torch {chosen} {text_reduced[0]:.1f} / {text_reduced[1]:.1f} ms, "
          + ", ".join(f"{name} {ms[0]:.1f} / {ms[1]:.1f} ms" for name, ms in text_onnx.items()))
    print(f"disk: {per_vector:.0f} bytes per item in the index folder ({count} items)")
    assert np.isfinite(worst)


if __name__ == "__main__":
    main()
