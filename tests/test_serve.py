"""`spyglass serve` as run in production: gunicorn workers, metrics that add up across them."""

from __future__ import annotations

import re
import threading
import urllib.request

from conftest import free_port, run_spyglass, serving, spyglass_env, worker_pids
from spyglass.indexer.job import run_index


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_across_gunicorn_workers(sqlite_settings, media, encoder, tmp_path, monkeypatch):
    settings = sqlite_settings.override(port=free_port())
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))  # so the test can see each worker's file
    started = []
    with serving(settings, tmp_path / "server.log", "--workers", "2", started=started) as url:
        workers = worker_pids(started[0].pid)
        assert len(workers) == 2

        def ask(first: int) -> None:
            for i in range(first, first + 4):
                urllib.request.urlopen(f"{url}/api/v1/search?q=thing+{i}&k=3").read()

        clients = [threading.Thread(target=ask, args=(n * 4,)) for n in range(8)]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        scrapes = [urllib.request.urlopen(f"{url}/metrics").read().decode() for _ in range(8)]
    answering = {p.name for p in metrics_dir.glob("counter_*.db")}
    assert len(answering) == 2, answering  # both workers answered searches
    counts = {metric(text, 'spyglass_queries_total{endpoint="search",outcome="ok"}') for text in scrapes}
    assert counts == {32.0}, counts  # every scrape, whichever worker answers it, sees all 32
    assert {metric(text, "spyglass_query_seconds_count") for text in scrapes} == {32.0}
    assert all(metric(text, "spyglass_index_vectors") > 0 for text in scrapes)
    # Each worker's own memory, by pid: the two workers, and never the master.
    residents = {line.split('pid="')[1].split('"')[0] for line in scrapes[-1].splitlines()
                 if line.startswith("spyglass_worker_resident_bytes{")}
    assert residents <= {str(pid) for pid in workers} and len(residents) >= 1


def test_a_busy_port_is_one_line_naming_it_and_the_fix(sqlite_settings):
    """Not "Serving on ...", ten gunicorn errors and an exit: one line, before anything starts."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_spyglass("serve", "--port", str(port), env=spyglass_env(sqlite_settings), isolated=True,
                              timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: port {port} on 127.0.0.1 is in use by another program (pick another with --port or SPYGLASS_PORT)"]


def test_the_model_loads_at_start_and_health_says_loading_until_then(sqlite_settings, media, encoder):
    import time

    from spyglass.web import create_app

    run_index(sqlite_settings, [str(media)], encoder=encoder, progress=False)
    app = create_app(sqlite_settings, background_reload=True)  # what `serve` builds in each worker
    client = app.test_client()
    web = app.extensions["spyglass"]
    first = client.get("/api/v1/healthz")
    if web.loading:  # on a fast machine the load may be done already: then it says ok at once
        assert first.status_code == 503 and first.json == {"status": "loading", "generation": None}
        assert first.headers["Retry-After"] == "2"
    deadline = time.monotonic() + 60
    while web.loading and time.monotonic() < deadline:
        time.sleep(0.05)
    ready = client.get("/api/v1/healthz")
    assert ready.status_code == 200 and ready.json["status"] == "ok" and ready.json["generation"] == 1
    engine = web.engine()
    assert engine._encoders, "the model was loaded before any search"
    assert client.get("/api/v1/search?q=red").status_code == 200
