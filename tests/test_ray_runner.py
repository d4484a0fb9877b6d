"""`spyglass index --runner ray` on a local Ray: the local runner's catalog and vectors, partitions
committed whole, actors and drivers killed, failures retried and then reported file by file."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray")

from conftest import MEDIA, run_spyglass, spyglass_env  # noqa: E402
from sqlalchemy import select  # noqa: E402

from spyglass.indexer.job import run_index  # noqa: E402
from spyglass.indexer.plan import PixelRule  # noqa: E402
from spyglass.indexer.runners.ray import partitions  # noqa: E402
from spyglass.indexer.scan import FoundFile  # noqa: E402
from spyglass.search.engine import SearchEngine  # noqa: E402
from spyglass.search.errors import ConfigError  # noqa: E402
from spyglass.search.catalog.schema import MediaItem, StagedVector  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster():
    """One local Ray for the module (two CPUs, no dashboard), as a small cluster of one node."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def library(tmp_path):
    """The committed test images (corrupt.jpg among them) and, with PyAV, a short video."""
    folder = tmp_path / "library"
    shutil.copytree(MEDIA, folder)
    try:
        from make_videos import write_video
    except ImportError:
        return folder
    write_video(folder / "film.mp4", [(2, "solid", (200, 0, 0)), (2, "texture", (0, 0, 200))])
    return folder


def on(settings, runner: str, home, **fields):
    """These settings on their own home (SQLite there unless the database is given) and runner."""
    database = fields.pop("database_url", None)
    fields.setdefault("ray_partition_files", 4)
    return replace(settings, home=home, database_url=database, runner=runner, **fields)


def catalog(settings) -> dict[str, tuple]:
    """path -> (content hash, kind, format, width, height, duration, frames, vector) of the live index."""
    engine = SearchEngine(settings)
    live = engine.live()
    with engine.catalog.sessions() as session:
        items = list(session.scalars(select(MediaItem)))
    frames = engine.catalog.frames_of([item.id for item in items])
    return {item.path: (item.content_hash, item.kind, item.format, item.width, item.height, item.duration_s,
                        len(frames[item.id][0]) if item.id in frames else 0, live.searcher.vector(item.id))
            for item in items}


def assert_same_catalogs(local: dict, ray: dict) -> None:
    assert set(ray) == set(local)
    for path, facts in local.items():
        assert ray[path][:7] == facts[:7], path
        a, b = facts[7], ray[path][7]
        cosine = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
        assert cosine >= 0.9999, (path, cosine)


def test_partitions_are_cut_the_same_from_the_same_files():
    files = [FoundFile(f"/m/{name}.jpg", "/m", 10 + i, i) for i, name in enumerate("qwertyuiop")]
    cut = partitions(files, 4)
    again = partitions(list(reversed(files)), 4)
    assert [(p.key, [f.path for f in p.files]) for p in cut] == [(p.key, [f.path for f in p.files]) for p in again]
    assert [len(p.files) for p in cut] == [4, 4, 2]
    first = cut[0].files[0]
    touched = [replace(f, mtime_ns=99) if f == first else f for f in files]
    assert [p.key for p in partitions(touched, 4)][1:] == [p.key for p in cut][1:]
    assert partitions(touched, 4)[0].key != cut[0].key


def test_wants_follows_the_catalog_and_leaves_moves_to_the_driver():
    wants = PixelRule(known={"/m/a.jpg": "aa"}, vanished=frozenset({"gone"}))
    assert not wants(FoundFile("/m/a.jpg", "/m", 1, 1), "aa")  # touched, same content
    assert wants(FoundFile("/m/a.jpg", "/m", 1, 1), "bb")  # changed
    assert not wants(FoundFile("/m/b.jpg", "/m", 1, 1), "gone")  # a moved file: its row is claimed on the driver
    assert wants(FoundFile("/m/b.jpg", "/m", 1, 1), "new")
    assert PixelRule({"/m/a.jpg": "aa"}, frozenset(), every=True)(FoundFile("/m/a.jpg", "/m", 1, 1), "aa")


def test_ray_runner_gives_the_local_runners_catalog_and_vectors(ray_cluster, settings, library, tmp_path):
    local = on(settings, "local", tmp_path / "local")
    ray = on(settings, "ray", tmp_path / "ray", database_url=settings.database_url)  # SQLite and PostgreSQL
    echoed = []

    local_summary = run_index(local, [str(library)], progress=False, echo=lambda m: None)
    ray_summary = run_index(ray, [str(library)], progress=False, echo=echoed.append)

    assert_same_catalogs(catalog(local), catalog(ray))
    assert (ray_summary.added, ray_summary.embedded) == (local_summary.added, local_summary.embedded)
    assert [(s.path, s.reason) for s in ray_summary.skipped] == [(s.path, s.reason) for s in local_summary.skipped]
    assert any(os.path.basename(s.path) == "corrupt.jpg" for s in ray_summary.skipped)
    partitions_cut = -(-(local_summary.added + len(local_summary.skipped)) // 4)
    assert f"Ray (1 node, 2 CPUs, 0 GPUs): {partitions_cut} partitions (0 finished" in ray_summary.line()
    assert "median per partition read " in ray_summary.ray_line and " files/s per encoder" in ray_summary.ray_line
    with SearchEngine(ray).catalog.sessions() as session:
        assert session.scalar(select(StagedVector.id)) is None  # a finished run leaves nothing staged

    # A second run is the local runner's second run: nothing to read, so no Ray at all.
    again = run_index(ray, [str(library)], progress=False, echo=echoed.append)
    assert (again.added, again.embedded, again.ray_line) == (0, 0, "")


def test_moves_and_changes_are_the_local_runners(ray_cluster, sqlite_settings, library, tmp_path):
    ray = on(sqlite_settings, "ray", tmp_path / "ray")
    run_index(ray, [str(library)], progress=False, echo=lambda m: None)
    before = catalog(ray)
    (library / "albums").mkdir()
    os.rename(library / "red.jpg", library / "albums" / "red moved.jpg")
    Image.new("RGB", (30, 20), (10, 200, 90)).save(library / "rotated-exif.jpg")  # changed content, same path

    summary = run_index(ray, [str(library)], progress=False, echo=lambda m: None)

    assert (summary.moved, summary.updated, summary.added, summary.embedded) == (1, 1, 0, 1)
    after = catalog(ray)
    assert np.array_equal(after[str(library / "albums" / "red moved.jpg")][7], before[str(library / "red.jpg")][7])


def test_an_actor_killed_once_is_retried_and_the_run_is_complete(ray_cluster, sqlite_settings, library, tmp_path,
                                                                 monkeypatch):
    local = on(sqlite_settings, "local", tmp_path / "local")
    ray = on(sqlite_settings, "ray", tmp_path / "ray")
    marker = tmp_path / "killed-actor"
    monkeypatch.setenv("SPYGLASS_CRASHPOINT", f"ray-actor:{marker}")
    run_index(local, [str(library)], progress=False, echo=lambda m: None)

    summary = run_index(ray, [str(library)], progress=False, echo=lambda m: None)

    assert marker.exists(), "no actor was killed"
    dead = int(marker.read_text())
    assert_same_catalogs(catalog(local), catalog(ray))
    assert not [s for s in summary.skipped if "Ray" in s.reason]
    with pytest.raises(ProcessLookupError):
        os.kill(dead, 0)  # it really died; Ray restarted the actor and retried its partitions


def test_a_failing_partition_is_retried_then_its_files_are_skipped(ray_cluster, sqlite_settings, library, tmp_path,
                                                                   monkeypatch):
    once = on(sqlite_settings, "ray", tmp_path / "once")
    monkeypatch.setenv("SPYGLASS_CRASHPOINT", f"ray-partition:{tmp_path / 'failed-once'}")
    echoed = []
    summary = run_index(once, [str(library)], progress=False, echo=echoed.append)
    assert any("failed (RuntimeError: crashpoint ray-partition); trying again (1 of 3 tries)" in m for m in echoed)
    assert "1 retried" in summary.ray_line
    assert not [s for s in summary.skipped if "Ray" in s.reason]

    always = on(sqlite_settings, "ray", tmp_path / "always", ray_retries=1)
    monkeypatch.setenv("SPYGLASS_CRASHPOINT", "ray-partition")
    summary = run_index(always, [str(library)], progress=False, echo=lambda m: None)
    reasons = {s.reason for s in summary.skipped}
    assert reasons == {"its Ray partition failed 2 times: RuntimeError: crashpoint ray-partition"}
    assert len(summary.skipped) >= 9 and summary.added == 0


def test_a_killed_driver_resumes_only_the_unfinished_partitions(sqlite_settings, library, tmp_path):
    ray = on(sqlite_settings, "ray", tmp_path / "ray", ray_partition_files=3)
    env = spyglass_env(ray) | {"SPYGLASS_RAY_PARTITION_FILES": "3", "SPYGLASS_FAILPOINT": "partition"}
    log = open(tmp_path / "driver.log", "w+")
    # Its own session: the kill takes the driver and the Ray it started, as a crash of the machine would.
    driver = subprocess.Popen([sys.executable, "-m", "spyglass.cli", "index", "--runner", "ray", "--no-progress",
                               str(library)],
                              env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "spyglass failpoint partition" not in (tmp_path / "driver.log").read_text():
            assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "driver.log").read_text()
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    with SearchEngine(ray).catalog.sessions() as session:
        staged = list(session.scalars(select(StagedVector)))
    assert 0 < len(staged) <= 3  # one partition, committed whole: its vectors and any skip

    summary = run_index(ray, [str(library)], progress=False, echo=lambda m: None)

    files = summary.added + len(summary.skipped)
    assert f"{-(-files // 3)} partitions (1 finished by an earlier run" in summary.ray_line
    # The finished partition came from staging; only the others were read and embedded again.
    assert summary.resumed == sum(1 for row in staged if row.vector)
    assert summary.embedded == summary.added - summary.resumed
    assert [os.path.basename(s.path) for s in summary.skipped] == ["corrupt.jpg"]  # the same reason as local
    local = run_index(on(sqlite_settings, "local", tmp_path / "local"), [str(library)], progress=False,
                      echo=lambda m: None)
    assert [s.reason for s in summary.skipped] == [s.reason for s in local.skipped]
    assert_same_catalogs(catalog(on(sqlite_settings, "local", tmp_path / "local")), catalog(ray))


def test_an_unreachable_cluster_is_one_clear_line(sqlite_settings, library, tmp_path):
    done = run_spyglass("index", "--runner", "ray", "--address", "ray://127.0.0.1:1", "--no-progress", str(library),
                        env=spyglass_env(on(sqlite_settings, "ray", tmp_path / "ray")), timeout=180, isolated=True)
    assert done.returncode == 1
    assert "could not reach the Ray cluster at ray://127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_ray_installed_the_error_names_the_extra(monkeypatch):
    from spyglass.indexer.runners.ray_cluster import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"needs Ray Data") as raised:
        require_ray()
    assert "pip install 'spyglass[ray]'" in raised.value.hint


LISTENING_ON_THE_NETWORK = r'''
import sys
from spyglass.indexer.runners.ray import RayRunner
from spyglass.search.settings import Settings

def listening():
    """(address, port) of every TCP socket listening on this machine, from /proc."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if state == "0A":
                address, port = local.split(":")
                found.add((address, int(port, 16)))
    return found

def loopback(address):
    # 0100007F is 127.0.0.1; IPv6's ::1 and v4-mapped loopback end the same way.
    return address in ("0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F")

before = listening()
with RayRunner(Settings(runner="ray", ray_address=""), print) as runner:
    import ray
    opened = listening() - before
    print("gcs", ray.get_runtime_context().gcs_address)
    print("opened", len(opened))
    print("on the network", sorted(port for address, port in opened if not loopback(address)))
'''


def test_a_local_ray_listens_on_loopback_only(tmp_path):
    """Without --address, the Ray a run starts is reachable from this machine only."""
    result = subprocess.run([sys.executable, "-c", LISTENING_ON_THE_NETWORK], capture_output=True, text=True,
                            timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.split(" ", 1)[0] in
                 ("gcs", "opened", "on"))
    assert lines["gcs"].startswith("127.0.0.1:"), result.stdout
    assert int(lines["opened"]) > 0  # Ray's own servers are up, on loopback
    assert lines["on"] == "the network []", result.stdout
