"""Exact (Flat) against the auto-chosen approximate index, on one synthetic library, in one run.

    python benchmarks/ann.py [--items 1000000] [--queries 1000] [--rounds 3] [--memory 6G] [--no-http]

The library is clustered unit vectors (the same for every contender; clusters of uneven sizes,
as image embeddings have), each with a catalog row. Queries are vectors of the same clusters
that are not in the index and that tuning never saw. It prints, for Flat and for `auto`: build
time, index bytes in RAM, recall@10 against exact search, single-query and batched QPS, best
and median over the rounds (the two interleaved); then the time and bytes a publish of 1,000
new vectors writes; then, through `spyglass serve` and the real ViT-B-32 text encoder (random
weights, the same cost), HTTP text-query p50/p99 next to the bare text encode, and p99 while
a publish runs next to p99 without one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from query_latency import _free_port, _wait_until_up, client, write_checkpoint  # noqa: E402
from spyglass.indexer.ann_build import RECALL_K, build_to_target  # noqa: E402
from spyglass.indexer.ann_carry import CarriedAnn  # noqa: E402
from spyglass.indexer.publish import PendingChanges, publish, publish_index  # noqa: E402
from spyglass.search.catalog.queries import live_generation  # noqa: E402
from spyglass.search.catalog.db import create_db_engine, session_factory  # noqa: E402
from spyglass.search.catalog.migrate import upgrade  # noqa: E402
from spyglass.search.catalog.schema import EmbeddingModel, MediaRoot  # noqa: E402
from spyglass.search.settings import Settings, _byte_size  # noqa: E402
from spyglass.search.store.segmented import SegmentedStore  # noqa: E402
from synthetic_vectors import clustered_vectors  # noqa: E402

DIM = 512


def rows(start: int, count: int, root_id: int, vectors: np.ndarray) -> list[tuple[dict, np.ndarray]]:
    return [({"path": f"/synthetic/{i // 1000:04d}/img_{i:08d}.jpg", "root_id": root_id, "size": 1,
              "mtime_ns": i, "content_hash": f"{i:064x}", "kind": "image", "format": "JPEG",
              "width": 640, "height": 480}, vectors[i - start]) for i in range(start, start + count)]


def empty_library(settings, checkpoint: Path):
    """A fresh catalog holding a ViT-B-32 model row and the /synthetic root: (engine, sessions, model id, root id)."""
    engine = create_db_engine(settings.db_url, writer=True)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        model = EmbeddingModel(architecture="ViT-B-32", pretrained=str(checkpoint), dim=DIM)
        root = MediaRoot(path="/synthetic")
        session.add_all([model, root])
        session.flush()
        return engine, sessions, model.id, root.id


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / RECALL_K for f, t in zip(found, truth, strict=True)]))


def timed_queries(searcher, queries: np.ndarray) -> tuple[float, float]:
    """(single-query QPS, batched QPS)."""
    began = time.perf_counter()
    for row in queries[:200]:
        searcher.search(row[None, :], RECALL_K)
    single = min(200, len(queries)) / (time.perf_counter() - began)
    began = time.perf_counter()
    searcher.search(queries, RECALL_K)
    return single, len(queries) / (time.perf_counter() - began)


def written_bytes(directory: Path, before: set[str]) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.name not in before and p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory", default="6G", help="SPYGLASS_INDEX_MEMORY for auto")
    parser.add_argument("--recall", type=float, default=0.95, help="SPYGLASS_INDEX_RECALL")
    parser.add_argument("--requests", type=int, default=60, help="HTTP queries per measurement")
    parser.add_argument("--no-http", action="store_true", help="skip the spyglass serve part")
    args = parser.parse_args()
    memory = _byte_size(args.memory)

    with tempfile.TemporaryDirectory(prefix="spyglass-ann-") as tmp:
        work = Path(tmp)
        settings = Settings(home=work / "home", port=_free_port(), index_memory=memory, index_recall=args.recall)
        print(f"making {args.items:,} clustered {DIM}-d vectors and their catalog rows ...", flush=True)
        vectors = clustered_vectors(args.items + args.queries + 1000, DIM, clusters=max(100, args.items // 2000))
        queries = vectors[args.items:args.items + args.queries]
        extra = vectors[args.items + args.queries:]
        vectors = vectors[:args.items]
        checkpoint = work / "vit-b-32.safetensors"
        if not args.no_http:
            write_checkpoint(checkpoint)
        engine, sessions, model_id, root_id = empty_library(settings, checkpoint)
        store = SegmentedStore.empty(DIM)
        began = time.perf_counter()
        publish(sessions, store, settings.index_dir, model_id, "auto",
                PendingChanges(new=rows(0, args.items, root_id, vectors)))
        flat_build = time.perf_counter() - began
        del vectors

        truth = store.search(queries, RECALL_K)[1]
        began = time.perf_counter()
        built = build_to_target(store, "auto", memory, args.recall, print, progress=True)
        auto_build = time.perf_counter() - began
        if built is None:
            raise SystemExit("auto chose exact search for this size; try more --items")
        ann = CarriedAnn.of_build(built)
        with sessions() as session:
            live = live_generation(session)
        publish_index(sessions, live, store, ann, settings.index_dir, "auto")
        contenders = {"Flat": store, f"auto ({built.factory})": built.ann}
        figures: dict[str, dict[str, list[float]]] = {name: {"single": [], "batch": []} for name in contenders}
        recalls = {name: recall_at_10(searcher.search(queries, RECALL_K)[1], truth)
                   for name, searcher in contenders.items()}
        for _ in range(args.rounds):
            for name, searcher in contenders.items():
                single, batch = timed_queries(searcher, queries)
                figures[name]["single"].append(single)
                figures[name]["batch"].append(batch)
        ram = {"Flat": len(store) * DIM * 4, f"auto ({built.factory})": _serialized_bytes(built.ann.index)}
        builds = {"Flat": flat_build, f"auto ({built.factory})": auto_build}

        # Publishing 1,000 new vectors into the live generation, as a nightly run would.
        before = {p.name for p in settings.index_dir.iterdir()}
        began = time.perf_counter()
        publish(sessions, store, settings.index_dir, model_id, "auto",
                PendingChanges(new=rows(args.items, 1000, root_id, extra)), ann=ann)
        publish_seconds = time.perf_counter() - began
        publish_bytes = written_bytes(settings.index_dir, before)
        with sessions() as session:
            live = live_generation(session)
        index_bytes = live.size_bytes + (live.ann_size_bytes or 0)

        http = None if args.no_http else _http(settings, checkpoint, args, sessions, store, ann, model_id, root_id)

    print(f"\n{args.items:,} vectors x {DIM}, {args.queries:,} held-out queries, {args.rounds} rounds, "
          f"SPYGLASS_INDEX_MEMORY={args.memory}, recall target {args.recall}")
    print(f"{'index':<28} {'build s':>8} {'RAM MiB':>8} {'recall@10':>9} {'1-query QPS':>18} {'batched QPS':>18}")
    print(f"{'':<28} {'':>8} {'':>8} {'':>9} {'best / median':>18} {'best / median':>18}")
    for name in contenders:
        single, batch = figures[name]["single"], figures[name]["batch"]
        print(f"{name:<28} {builds[name]:>8.1f} {ram[name] / 2**20:>8.0f} {recalls[name]:>9.3f} "
              f"{f'{max(single):.0f} / {statistics.median(single):.0f}':>18} "
              f"{f'{max(batch):.0f} / {statistics.median(batch):.0f}':>18}")
    flat, auto = (figures[name] for name in contenders)
    print(f"auto / Flat QPS (median): single x{statistics.median(auto['single']) / statistics.median(flat['single']):.1f}, "
          f"batched x{statistics.median(auto['batch']) / statistics.median(flat['batch']):.1f}; tuned "
          f"{built.ann.params.describe()} (recall {built.recall:.3f} on its own held-out vectors)")
    print(f"publish of 1,000 new vectors: {publish_seconds:.1f} s, {publish_bytes / 2**20:.1f} MiB written "
          f"= {100 * publish_bytes / index_bytes:.2f} % of the index's {index_bytes / 2**20:.0f} MiB")
    if http:
        print(f"HTTP text query, 1 client: p50 {http['p50']:.1f} ms, p99 {http['p99']:.1f} ms; bare text encode "
              f"p50 {http['encode']:.1f} ms -> x{http['p50'] / http['encode']:.2f}")
        print(f"p99 while a 1,000-vector publish runs: {http['p99_publish']:.1f} ms vs {http['p99']:.1f} ms "
              f"without -> x{http['p99_publish'] / http['p99']:.2f}")


def _http(settings, checkpoint, args, sessions, store, ann, model_id, root_id) -> dict:
    """Latency through `spyglass serve`, with and without a publish running beside it."""
    import subprocess

    env = {**os.environ, "SPYGLASS_HOME": str(settings.home)}
    # The bare encode runs in a process of its own, as the server's does: in this one, FAISS's
    # OpenMP threads would still be spinning from the searches above.
    encoder = subprocess.Popen([sys.executable, "-c", ENCODE_SCRIPT, str(checkpoint)], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    encoder.stdout.readline()  # loaded
    log = open(settings.home / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-m", "spyglass.cli", "serve", "--port", str(settings.port)],
                              env=env, stdout=log, stderr=log, cwd=ROOT)
    try:
        _wait_until_up(settings.port, server)
        client(settings.port, 4, 0, [], [])  # warm-up: loads the index and the model
        quiet, busy, encodes = [], [], []
        next_id = args.items + 1000
        for round_no in range(args.rounds):
            encoder.stdin.write(f"{round_no}\n")  # 20 bare encodes, interleaved with the HTTP runs
            encoder.stdin.flush()
            encodes += [float(x) for x in encoder.stdout.readline().split()]
            latencies: list[float] = []
            client(settings.port, args.requests, 100_000 * (round_no + 1), latencies, [])
            quiet += latencies
            more = clustered_vectors(1000, DIM, seed=100 + round_no)
            publisher = threading.Thread(target=publish, args=(
                sessions, store, settings.index_dir, model_id, "auto",
                PendingChanges(new=rows(next_id, 1000, root_id, more))), kwargs={"ann": ann})
            next_id += 1000
            latencies = []
            publisher.start()
            while publisher.is_alive():
                client(settings.port, 5, 200_000 * (round_no + 1) + len(latencies), latencies, [])
            publisher.join()
            client(settings.port, 5, 300_000 * (round_no + 1), latencies, [])  # the switch to it
            busy += latencies
    finally:
        server.terminate()
        server.wait(timeout=30)
        encoder.kill()
        log.close()
    ms = np.array(quiet) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "encode": float(np.median(encodes)), "p99_publish": float(np.percentile(np.array(busy) * 1000, 99))}


ENCODE_SCRIPT = """
import sys, time
from spyglass.search.model.encoder import load_encoder
encoder = load_encoder("ViT-B-32", sys.argv[1], device="cpu")
encoder.encode_texts(["warm up"])
print("loaded", flush=True)
for line in sys.stdin:
    times = []
    for i in range(20):
        began = time.perf_counter()
        encoder.encode_texts([f"a photo of thing number {line.strip()}{i}"])
        times.append((time.perf_counter() - began) * 1000)
    print(" ".join(f"{t:.3f}" for t in times), flush=True)
"""


def _serialized_bytes(index) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


if __name__ == "__main__":
    main()
