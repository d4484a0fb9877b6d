"""A serving worker's memory under SPYGLASS_INDEX_MEMORY: does the index stay within its budget?

    python benchmarks/worker_memory.py [--items 300000] [--memory 256M] [--queries 50]

Two synthetic libraries of clustered 512-d unit vectors with catalog rows (as benchmarks/ann.py
makes them): a baseline of 1,000 (exact search) and one of --items, whose index `auto` builds
within --memory. Each is served by `spyglass serve --workers 1` with the real ViT-B-32 text tower
(random weights: the same memory), warmed up and asked --queries text queries; then the worker's
resident and anonymous memory and the index's shares come from /api/v1/status. Prints both, and
whether the big library's worker holds no more anonymous memory than the baseline's (the model,
the runtime) plus the budget. The stored vectors are memory-mapped: their pages are the kernel's
file cache, shared by every worker, and not anonymous memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ann import DIM, empty_library, rows  # noqa: E402
from query_latency import _free_port, _wait_until_up, write_checkpoint  # noqa: E402
from spyglass.indexer.ann_build import build_to_target  # noqa: E402
from spyglass.indexer.ann_carry import CarriedAnn  # noqa: E402
from spyglass.indexer.publish import PendingChanges, publish, publish_index  # noqa: E402
from spyglass.search.catalog.queries import live_generation  # noqa: E402
from spyglass.search.model.encoder import load_encoder  # noqa: E402
from spyglass.search.settings import Settings, _byte_size  # noqa: E402
from spyglass.search.store.segmented import SegmentedStore  # noqa: E402
from synthetic_vectors import clustered_vectors  # noqa: E402

MiB = 2**20


def library(home: Path, items: int, checkpoint: Path, memory: int) -> str:
    """A catalog and an index of `items` vectors in home; the index type auto chose."""
    settings = Settings(home=home, index_memory=memory)
    engine, sessions, model_id, root_id = empty_library(settings, checkpoint)
    vectors = clustered_vectors(items, DIM, clusters=max(10, items // 2000))
    store = SegmentedStore.empty(DIM, settings.vector_storage)  # as the indexer writes them (float16 by default)
    publish(sessions, store, settings.index_dir, model_id, "auto", PendingChanges(new=rows(0, items, root_id, vectors)))
    del vectors
    built = build_to_target(store, "auto", memory, settings.index_recall, print, progress=False)
    if built is not None:
        with sessions() as session:
            live = live_generation(session)
        publish_index(sessions, live, store, CarriedAnn.of_build(built), settings.index_dir, "auto")
    engine.dispose()
    return built.factory if built is not None else "Flat"


def served_memory(home: Path, checkpoint: Path, memory: str, queries: int, runtimes: Path) -> dict:
    """The worker's /api/v1/status memory after warm-up and `queries` text queries, and what its
    towers run on. The runtimes folder (graphs and probe) is shared, made before, as a restarted
    worker finds it."""
    if not (home / "runtimes").exists():
        (home / "runtimes").symlink_to(runtimes)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPYGLASS_")}
    env.update(SPYGLASS_HOME=str(home), SPYGLASS_MODEL="ViT-B-32", SPYGLASS_PRETRAINED=str(checkpoint),
               SPYGLASS_DEVICE="cpu", SPYGLASS_PRECISION="fp32", SPYGLASS_INDEX_MEMORY=memory)
    log = open(home / "serve.log", "w")
    server = subprocess.Popen([str(Path(sys.executable).with_name("spyglass")), "serve", "--port", str(port),
                               "--workers", "1"], env=env, stdout=log, stderr=log)
    try:
        _wait_until_up(port, server)
        base = f"http://127.0.0.1:{port}"
        for i in range(queries):
            urllib.request.urlopen(f"{base}/api/v1/search?q=a+photo+of+thing+{i}&k=20&mode=visual", timeout=60).read()
        time.sleep(0.5)
        status = json.load(urllib.request.urlopen(f"{base}/api/v1/status", timeout=30))
        runtime = (status.get("query_encoder") or {}).get("runtime") or {}
        return {**status["worker"], "text_runtime": runtime.get("text", "?")}
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=300_000)
    parser.add_argument("--memory", default="256M", help="SPYGLASS_INDEX_MEMORY")
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    budget = _byte_size(args.memory)
    with tempfile.TemporaryDirectory(prefix="spyglass-memory-") as tmp:
        work = Path(tmp)
        checkpoint = work / "vit-b-32.safetensors"
        write_checkpoint(checkpoint)
        runtimes = work / "runtimes"
        load_encoder("ViT-B-32", str(checkpoint), device="cpu", runtime="auto", runtime_dir=runtimes)  # export, probe
        found = {}
        for name, items in (("baseline", 1000), ("library", args.items)):
            began = time.perf_counter()
            kind = library(work / name, items, checkpoint, budget)
            print(f"{name}: {items:,} vectors, index {kind} ({time.perf_counter() - began:.0f} s to build)", flush=True)
            found[name] = {"items": items, "index": kind, **served_memory(work / name, checkpoint, args.memory,
                                                                          args.queries, runtimes)}
    print(f"\nspyglass serve --workers 1, ViT-B-32 (SPYGLASS_PRECISION=fp32, SPYGLASS_RUNTIME=auto: text tower on "
          f"{found['library']['text_runtime']}), SPYGLASS_INDEX_MEMORY={args.memory}, "
          f"{args.queries} text queries, {os.cpu_count()} cores")
    print(f"{'':<10} {'vectors':>9} {'index':<22} {'resident MiB':>12} {'anonymous MiB':>13} {'loaded MiB':>10} "
          f"{'mapped MiB':>10}")
    for name, row in found.items():
        print(f"{name:<10} {row['items']:>9,} {row['index']:<22} {row['resident_bytes'] / MiB:>12.0f} "
              f"{row['anonymous_bytes'] / MiB:>13.0f} {row['index_loaded_bytes'] / MiB:>10.0f} "
              f"{row['index_mapped_bytes'] / MiB:>10.0f}")
    grown = found["library"]["anonymous_bytes"] - found["baseline"]["anonymous_bytes"]
    print(f"anonymous memory beyond the baseline: {grown / MiB:.0f} MiB against a budget of {budget / MiB:.0f} MiB: "
          f"{'within' if grown <= budget else 'OVER'}")


if __name__ == "__main__":
    main()
