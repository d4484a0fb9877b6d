"""Text-query latency of one person while another floods the server with image uploads.

    python benchmarks/fair_use.py [--items 20000] [--rounds 3] [--queries 60] [--flooders 8]

Two `spyglass serve` processes with SPYGLASS_AUTH=accounts over the same synthetic catalog (random
unit vectors; the real ViT-B-32 towers with random weights, the same cost as trained ones): one
with the default fair-use limit (SPYGLASS_EXPENSIVE_PER_MINUTE=60), one without any (0).
Each round, interleaved: the reader's sequential text queries (each text new, so each is
encoded) alone, then while `--flooders` threads of another person post 224x224 uploads as fast
as they can, on each server. Prints p50/p99 per phase, best and median over the rounds.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from PIL import Image  # noqa: E402

from query_latency import _free_port, _wait_until_up, build_index, write_checkpoint  # noqa: E402
from spyglass.search.accounts.directory import Accounts  # noqa: E402
from spyglass.search.catalog.db import create_db_engine, session_factory  # noqa: E402
from spyglass.search.settings import Settings  # noqa: E402


def call(url: str, token: str, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Authorization": f"Bearer {token}",
                                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


def reader(port: int, token: str, queries: int, tag: str) -> list[float]:
    latencies = []
    for i in range(queries):
        started = time.perf_counter()
        status = call(f"http://127.0.0.1:{port}/api/v1/search?q=a+photo+of+thing+{tag}+{i}&k=20", token)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"a text query was answered {status}")
    return latencies


def flood(port: int, token: str, upload: bytes, stop: threading.Event, counts: dict) -> None:
    while not stop.is_set():
        try:
            status = call(f"http://127.0.0.1:{port}/api/v1/search", token, upload)
        except OSError as error:  # the server may close a refused upload's connection before reading it
            status = type(error).__name__
        counts[status] = counts.get(status, 0) + 1


def flooding_process(port: int, token: str, upload: bytes, threads: int, stop, answers) -> None:
    """The flood, from its own process: in the reader's process its threads would hold the GIL
    and slow the measuring client rather than the server."""
    done, counts = threading.Event(), {}
    workers = [threading.Thread(target=flood, args=(port, token, upload, done, counts), daemon=True)
               for _ in range(threads)]
    for worker in workers:
        worker.start()
    stop.wait()
    done.set()
    for worker in workers:
        worker.join()
    answers.put(counts)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument("--flooders", type=int, default=8)
    args = parser.parse_args()
    picture = io.BytesIO()
    Image.effect_noise((224, 224), 64).convert("RGB").save(picture, "JPEG")
    upload = json.dumps({"image_base64": base64.b64encode(picture.getvalue()).decode(), "k": 20}).encode()
    with tempfile.TemporaryDirectory(prefix="spyglass-fair-") as tmp:
        work = Path(tmp)
        checkpoint = work / "vit-b-32.safetensors"
        write_checkpoint(checkpoint)
        settings = Settings(home=work / "home", model="ViT-B-32", pretrained=str(checkpoint), device="cpu",
                            precision="fp32")
        print(f"building a {args.items:,}-item catalog ...", flush=True)
        build_index(settings, args.items, checkpoint)
        engine = create_db_engine(settings.db_url, writer=True)
        accounts = Accounts(session_factory(engine))
        accounts.add_user("reader", "benchmark password", admin=True)
        accounts.add_user("flooder", "benchmark password", admin=True)
        tokens = {name: accounts.create_token(name)[1] for name in ("reader", "flooder")}
        servers, ports = [], {}
        for name, limit in (("limited", "60"), ("unlimited", "0")):
            port = _free_port()
            env = {**os.environ, "SPYGLASS_HOME": str(settings.home), "SPYGLASS_AUTH": "accounts",
                   "SPYGLASS_EXPENSIVE_PER_MINUTE": limit, "SPYGLASS_PRECISION": "fp32"}
            log = open(work / f"{name}.log", "w")
            server = subprocess.Popen([sys.executable, "-m", "spyglass.cli", "serve", "--port", str(port)],
                                      env=env, stdout=log, stderr=log)
            servers.append(server)
            _wait_until_up(port, server)
            reader(port, tokens["reader"], 3, "warm")  # load the model before measuring
            call(f"http://127.0.0.1:{port}/api/v1/search", tokens["flooder"], upload)
            ports[name] = port
        results: dict[str, list[tuple[float, float]]] = {}
        refused: dict[str, dict] = {}
        try:
            for round_ in range(args.rounds):
                for phase, port_name, flooding in (("alone", "limited", False), ("flood, limit 60/min", "limited", True),
                                                   ("flood, no limit", "unlimited", True)):
                    stop, answers = multiprocessing.Event(), multiprocessing.Queue()
                    flooder = multiprocessing.Process(target=flooding_process, args=(
                        ports[port_name], tokens["flooder"], upload, args.flooders, stop, answers))
                    if flooding:
                        flooder.start()
                        time.sleep(1.0)
                    try:
                        latencies = reader(ports[port_name], tokens["reader"], args.queries,
                                           f"{port_name}{int(flooding)}r{round_}")
                    finally:
                        stop.set()
                    counts = answers.get(timeout=120) if flooding else {}
                    if flooding:
                        flooder.join()
                    results.setdefault(phase, []).append((statistics.median(latencies), percentile(latencies, 99)))
                    refused[phase] = counts
                    print(f"round {round_ + 1} {phase}: p50 {results[phase][-1][0] * 1000:.1f} ms, "
                          f"p99 {results[phase][-1][1] * 1000:.1f} ms, flood answers {counts}", flush=True)
        except Exception:
            for name in ports:
                print(f"--- {name} server log (tail) ---\n" + "".join(open(work / f"{name}.log").readlines()[-30:]))
            raise
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
            engine.dispose()
        print(f"\n{args.items:,} items, {args.queries} text queries a phase, {args.flooders} flooding threads, "
              f"{args.rounds} rounds (interleaved), {os.cpu_count()} cores")
        print("phase                  p50 best/median (ms)   p99 best/median (ms)")
        for phase, runs in results.items():
            p50s, p99s = [r[0] * 1000 for r in runs], [r[1] * 1000 for r in runs]
            print(f"{phase:22} {min(p50s):8.1f} / {statistics.median(p50s):8.1f}   "
                  f"{min(p99s):8.1f} / {statistics.median(p99s):8.1f}")


if __name__ == "__main__":
    main()
