"""An index file damaged under a live server: a 503 or the previous generation, a logged line, never a
dead worker; `spyglass check --repair` restores a generation to serve."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import free_port, run_spyglass, serving, spyglass_env, worker_pids
from spyglass.indexer.import_job import run_import
from spyglass.search.settings import Settings

DIM = 32


def embeddings(folder, rows: int, seed: int, host: str):
    folder.mkdir()
    np.save(folder / "v.npy", np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32))
    (folder / "v.csv").write_text("url\n" + "".join(f"https://{host}/{i}.jpg\n" for i in range(rows)))
    return folder / "v.npy"


def search(url: str, vector) -> tuple[int, dict]:
    body = json.dumps({"embedding": np.asarray(vector, float).tolist(), "k": 3}).encode()
    request = urllib.request.Request(url + "/api/v1/search", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_a_segment_truncated_under_the_server_costs_a_503_not_the_worker(tmp_path, tiny_model):
    settings = Settings(runtime="torch", vector_storage="float32", home=tmp_path / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                        device="cpu", precision="fp32", port=free_port(), index_factory="Flat")
    run_import(settings, embeddings(tmp_path / "first", 20_000, 1, "a.test"), progress=False)
    newest = embeddings(tmp_path / "second", 50, 2, "b.test")
    run_import(settings, newest, progress=False)  # a small delta: the newest file
    probe = np.load(newest)[7]
    started = []
    with serving(settings, tmp_path / "server.log", started=started) as url:
        status, body = search(url, probe)
        assert status == 200 and body["results"][0]["source_url"] == "https://b.test/7.jpg"
        workers = worker_pids(started[0].pid)
        delta = max((settings.home / "index").glob("gen-*.faiss"), key=lambda p: p.stat().st_mtime)
        os.truncate(delta, delta.stat().st_size // 2)
        for _ in range(5):
            status, body = search(url, probe)
            # The generation before the delta is intact: it answers, without b.test's vectors.
            assert status == 200 and body["results"][0]["source_url"].startswith("https://a.test/"), body
        assert worker_pids(started[0].pid) == workers  # the same worker: no SIGBUS, no restart
        env = spyglass_env(settings)
        checked = run_spyglass("check", env=env)
        assert checked.returncode == 1 and "index file" in checked.stdout
        repaired = run_spyglass("check", "--repair", env=env)
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert run_spyglass("check", env=env).returncode == 0
        run_import(settings, newest, progress=False)  # what the damaged file held, back again
        for _ in range(50):
            status, body = search(url, probe)
            if status == 200 and body["results"][0]["source_url"] == "https://b.test/7.jpg":
                break
        assert body["results"][0]["source_url"] == "https://b.test/7.jpg"
        assert worker_pids(started[0].pid) == workers
    log = (tmp_path / "server.log").read_text()
    assert "SIGBUS" not in log and "changed size on disk since it was loaded" in log


@pytest.mark.slow
def test_a_damaged_base_answers_503_until_repaired(tmp_path, tiny_model):
    settings = Settings(runtime="torch", vector_storage="float32", home=tmp_path / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                        device="cpu", precision="fp32", port=free_port(), index_factory="Flat")
    source = embeddings(tmp_path / "only", 20_000, 3, "c.test")
    run_import(settings, source, progress=False)
    started = []
    with serving(settings, tmp_path / "server.log", started=started) as url:
        assert search(url, np.load(source)[0])[0] == 200
        workers = worker_pids(started[0].pid)
        base = next((settings.home / "index").glob("gen-*.faiss"))
        os.truncate(base, base.stat().st_size // 2)
        for _ in range(3):
            status, body = search(url, np.load(source)[0])
            assert status == 503 and body["error"] == "index_unavailable", body
        assert worker_pids(started[0].pid) == workers
    assert "SIGBUS" not in (tmp_path / "server.log").read_text()
