"""End-to-end HTTP text-query latency and throughput of `spyglass serve` on a 100k-item index.

    python benchmarks/query_latency.py [--items 100000] [--rounds 3] [--requests 48]

The index holds random unit vectors (synthetic: only their count matters for speed) with a
catalog row each; queries go through the real ViT-B-32 text encoder (random weights, same cost)
and gunicorn. For 1, 4 and 16 concurrent keep-alive clients it prints p50/p95/p99 latency and
queries/s, best and median over the rounds (the levels interleaved within each round).
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from spyglass.indexer.publish import PendingChanges, publish  # noqa: E402
from spyglass.search.catalog.db import create_db_engine, session_factory  # noqa: E402
from spyglass.search.catalog.migrate import upgrade  # noqa: E402
from spyglass.search.catalog.schema import EmbeddingModel, MediaRoot  # noqa: E402
from spyglass.search.settings import Settings  # noqa: E402
from spyglass.search.store.segmented import SegmentedStore  # noqa: E402


def build_index(settings: Settings, items: int, checkpoint: Path) -> None:
    """A catalog of `items` rows and a Flat index of random unit vectors under their ids."""
    engine = create_db_engine(settings.db_url)
    upgrade(engine)
    sessions = session_factory(engine)
    with sessions.begin() as session:
        model = EmbeddingModel(architecture="ViT-B-32", pretrained=str(checkpoint), dim=512)
        root = MediaRoot(path="/synthetic")
        session.add_all([model, root])
        session.flush()
        model_id, root_id = model.id, root.id
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(items, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    changes = PendingChanges()
    for i in range(items):
        changes.new.append(({"path": f"/synthetic/{i // 1000:03d}/img_{i:07d}.jpg", "root_id": root_id,
                             "size": 100_000 + i, "mtime_ns": 1_700_000_000_000_000_000 + i,
                             "content_hash": f"{i:064x}", "kind": "image", "format": "JPEG",
                             "width": 640, "height": 480}, vectors[i]))
    publish(sessions, SegmentedStore.empty(512), settings.index_dir, model_id, "Flat", changes)
    engine.dispose()


def write_checkpoint(path: Path) -> None:
    """Random ViT-B-32 weights, as a real open_clip checkpoint file."""
    import torch
    from safetensors.torch import save_file

    from spyglass.search.model.encoder import load_encoder

    torch.manual_seed(0)
    save_file(load_encoder("ViT-B-32", None, device="cpu").model.state_dict(), str(path))


def client(port: int, count: int, start: int, latencies: list[float], failures: list[str]) -> None:
    """One keep-alive client sending `count` different text queries one after another."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for i in range(start, start + count):
        began = time.perf_counter()
        connection.request("GET", f"/api/v1/search?k=20&q=a+photo+of+thing+number+{i}")
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - began)
        if response.status != 200:
            failures.append(str(response.status))
    connection.close()


def level(port: int, concurrency: int, requests: int, offset: int) -> dict:
    """Run `requests` queries split over `concurrency` clients."""
    latencies: list[float] = []
    failures: list[str] = []
    per_client = max(1, requests // concurrency)
    threads = [threading.Thread(target=client, args=(port, per_client, offset + c * per_client,
                                                     latencies, failures)) for c in range(concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p95": float(np.percentile(ms, 95)),
            "p99": float(np.percentile(ms, 99)), "qps": len(latencies) / elapsed,
            "failures": len(failures)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=48, help="queries per level per round")
    parser.add_argument("--threads", type=int, default=16, help="gunicorn threads")
    args = parser.parse_args()
    levels = (1, 4, 16)

    with tempfile.TemporaryDirectory(prefix="spyglass-latency-") as tmp:
        work = Path(tmp)
        settings = Settings(home=work / "home", port=_free_port())
        print(f"building a {args.items:,}-item index and a ViT-B-32 checkpoint ...", flush=True)
        write_checkpoint(work / "vit-b-32.safetensors")
        build_index(settings, args.items, work / "vit-b-32.safetensors")
        env = {**os.environ, "SPYGLASS_HOME": str(settings.home)}
        log = open(work / "server.log", "w")
        server = subprocess.Popen([sys.executable, "-m", "spyglass.cli", "serve", "--port", str(settings.port),
                                   "--threads", str(args.threads)], env=env, stdout=log, stderr=log, cwd=ROOT)
        try:
            _wait_until_up(settings.port, server)
            level(settings.port, 1, 4, 0)  # warm-up: loads the index and the model
            results: dict[int, list[dict]] = {c: [] for c in levels}
            for round_no in range(args.rounds):
                for concurrency in levels:
                    results[concurrency].append(level(settings.port, concurrency, args.requests,
                                                      offset=10_000 * (round_no + 1)))
                print(f"round {round_no + 1}: " + ", ".join(
                    f"c={c} {results[c][-1]['qps']:.1f} q/s p50 {results[c][-1]['p50']:.0f} ms"
                    for c in levels), flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()

    print(f"\n{args.items:,} items (Flat, 512-d), ViT-B-32 text encoder, gunicorn 1 worker x "
          f"{args.threads} threads, {args.requests} queries per level per round, {args.rounds} rounds")
    print(f"{'clients':>8} {'p50 ms':>14} {'p95 ms':>14} {'p99 ms':>14} {'queries/s':>16} {'failed':>7}")
    print(f"{'':>8} {'best / median':>14} {'best / median':>14} {'best / median':>14} {'best / median':>16}")
    for c in levels:
        runs = results[c]

        def pair(key, best=min, runs=runs):
            values = [r[key] for r in runs]
            return f"{best(values):.0f} / {statistics.median(values):.0f}"

        qps = [r["qps"] for r in runs]
        print(f"{c:>8} {pair('p50'):>14} {pair('p95'):>14} {pair('p99'):>14} "
              f"{f'{max(qps):.1f} / {statistics.median(qps):.1f}':>16} {sum(r['failures'] for r in runs):>7}")
    one = statistics.median(r["qps"] for r in results[1])
    print("throughput vs 1 client (median): " + ", ".join(
        f"c={c} x{statistics.median(r['qps'] for r in results[c]) / one:.2f}" for c in levels[1:]))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("spyglass serve exited; see its log")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/healthz", timeout=2).read()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("spyglass serve did not come up")


if __name__ == "__main__":
    main()
