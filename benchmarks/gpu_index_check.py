"""GPU indexing check: ViT-B-32 img/s in fp16 on CUDA, model-only and `spyglass index`, and fidelity to CPU fp32.

    python benchmarks/gpu_index_check.py [--images 2000] [--batch-size 256]

Random ViT-B-32 weights saved to a checkpoint (a stand-in for real ones). Prints the model-only
rate in fp32 and in the precision `auto` picks on CUDA (fp16, behind the fidelity check), the
whole `spyglass index` run over photo-like JPEGs (640 to 1920 px, made in parallel), and the
cosine of the GPU's indexed vectors against CPU fp32 embeddings of the same files. Exits 1 when
no GPU is seen or a cosine is below 0.999.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

# The smaller photo sizes: making 4000 px images would take most of the time budget.
SIZES = ((640, 480), (800, 1200), (1600, 1200), (1920, 1080), (1024, 1024))


def make_one(args: tuple[Path, int]) -> None:
    from photo_corpus import encoded, photo

    folder, i = args
    width, height = SIZES[i % len(SIZES)]
    (folder / f"photo_{i:05d}.jpg").write_bytes(encoded(photo(width, height, i), "JPEG"))


def model_rate(encoder, batch, rounds: int = 5) -> float:
    """Best images/s of encode_pixels on one batch (synchronised: vectors come back to the CPU)."""
    encoder.encode_pixels(batch)
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        encoder.encode_pixels(batch)
        best = min(best, time.perf_counter() - started)
    return len(batch) / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()

    import numpy as np
    import torch

    from spyglass.search.model.encoder import load_encoder
    from spyglass.search.engine import SearchEngine
    from spyglass.search.settings import Settings

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="spyglass-gpu-") as tmp:
        work = Path(tmp)
        folder, checkpoint = work / "media", work / "vit-b-32.pt"
        folder.mkdir()
        started = time.perf_counter()
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(make_one, [(folder, i) for i in range(args.images)], chunksize=16))
        print(f"made {args.images} JPEGs in {time.perf_counter() - started:.1f} s")
        torch.manual_seed(0)
        torch.save(load_encoder("ViT-B-32", None, device="cpu").model.state_dict(), checkpoint)

        fp32 = load_encoder("ViT-B-32", str(checkpoint), device="cuda")
        fp16 = load_encoder("ViT-B-32", str(checkpoint), device="cuda", precision="auto")
        print(f"precision auto on CUDA: {fp16.precision_check.describe()}")
        batch = torch.randn(args.batch_size, 3, 224, 224)
        print(f"model-only, batch {args.batch_size}: fp32 {model_rate(fp32, batch):,.0f} img/s, "
              f"{fp16.precision} {model_rate(fp16, batch):,.0f} img/s")
        del fp32, fp16
        torch.cuda.empty_cache()
        # Each runtime on the GPU: ONNX Runtime's CUDA provider when the installed onnxruntime has it
        # (onnxruntime-gpu), else its CPU one, which the probe then loses to PyTorch.
        for runtime in ("onnx", "auto"):
            encoder = load_encoder("ViT-B-32", str(checkpoint), device="cuda", precision="auto", runtime=runtime,
                                   runtime_dir=work / "runtimes")
            print(f"runtime {runtime} on CUDA: {encoder.runtime.describe()}")
            print(f"model-only, batch {args.batch_size}, runtime {runtime}: {model_rate(encoder, batch):,.0f} img/s")
            del encoder
            torch.cuda.empty_cache()

        home = work / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPYGLASS_")}
        env.update(SPYGLASS_HOME=str(home), SPYGLASS_MODEL="ViT-B-32", SPYGLASS_PRETRAINED=str(checkpoint),
                   SPYGLASS_DEVICE="cuda", SPYGLASS_PRECISION="auto",
                   SPYGLASS_DECODE_WORKERS=str(max(2, (os.cpu_count() or 2) - 1)))
        started = time.perf_counter()
        done = subprocess.run([str(Path(sys.executable).with_name("spyglass")), "-v", "index", "--no-progress",
                               str(folder)], capture_output=True, text=True, env=env, timeout=600)
        elapsed = time.perf_counter() - started
        print("\n".join(line for line in (done.stdout + done.stderr).splitlines()
                        if "added" in line or "encoder busy" in line or "precision" in line.lower()))
        if done.returncode:
            print(done.stderr[-3000:])
            return 1
        print(f"spyglass index: {args.images} images in {elapsed:.1f} s = {args.images / elapsed:,.0f} img/s "
              "over the whole job (start-up included)")

        cpu = load_encoder("ViT-B-32", str(checkpoint), device="cpu")
        engine = SearchEngine(Settings(home=home, model="ViT-B-32", pretrained=str(checkpoint), device="cpu"))
        live = engine.live()
        sample = sorted(folder.iterdir())[:64]
        from spyglass.search.media.images import decode_image

        cosines = []
        for path in sample:
            decoded = decode_image(path.read_bytes(), 10**9, draft_size=cpu.image_size).image
            reference = cpu.encode_pixels(cpu.preprocess(decoded)[None])[0]
            cosines.append(float(live.searcher.vector(engine.catalog.item_by_path(str(path)).id) @ reference))
        print(f"fidelity, GPU-indexed vectors against CPU fp32 on {len(sample)} images: "
              f"min {min(cosines):.5f}, median {float(np.median(cosines)):.6f}")
        return 0 if min(cosines) >= 0.999 else 1


if __name__ == "__main__":
    sys.exit(main())
