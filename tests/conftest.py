"""Shared fixtures: a tiny open_clip model with a real checkpoint, media copies, databases."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from spyglass.search.settings import Settings

DATA = Path(__file__).parent / "data"
MEDIA = DATA / "media"
POSTGRES_URL = os.environ.get("SPYGLASS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
# The committed images that decode; corrupt.jpg is the one that does not.
GOOD_IMAGES = sorted(p.relative_to(MEDIA).as_posix() for p in MEDIA.rglob("*")
                     if p.is_file() and p.name not in ("corrupt.jpg", "notes.txt"))

# A tiny CLIP, so the real open_clip code path runs in well under a second per call.
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
# Another architecture of another dimension, for the model-mismatch tests.
OTHER_CONFIG = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 48, "patch_size": 16, "head_width": 24},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 48, "heads": 2, "layers": 1},
}


def write_tiny_model(folder: Path, name: str, config: dict, seed: int) -> tuple[Path, Path]:
    """Write an open_clip config and a random-weights checkpoint (a stand-in for real weights)."""
    import torch
    from safetensors.torch import save_file

    from spyglass.search.model.encoder import load_encoder

    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / f"{name}.json"
    config_path.write_text(json.dumps(config))
    torch.manual_seed(seed)
    encoder = load_encoder(str(config_path), None, device="cpu")
    checkpoint = folder / f"{name}.safetensors"
    save_file(encoder.model.state_dict(), str(checkpoint))
    return config_path, checkpoint


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> tuple[Path, Path]:
    """(config JSON, checkpoint) of the tiny test model."""
    return write_tiny_model(tmp_path_factory.mktemp("models"), "tiny-clip", TINY_CONFIG, seed=0)


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> tuple[Path, Path]:
    """(config JSON, checkpoint) of a second tiny model with 24-d vectors."""
    return write_tiny_model(tmp_path_factory.mktemp("models"), "other-clip", OTHER_CONFIG, seed=1)


@pytest.fixture(scope="session")
def encoder(tiny_model):
    """The tiny model loaded once from its checkpoint, through the real loading path."""
    from spyglass.search.model.encoder import load_encoder

    return load_encoder(str(tiny_model[0]), str(tiny_model[1]), device="cpu")


@pytest.fixture
def media(tmp_path) -> Path:
    """A private copy of the committed test images, safe to change."""
    target = tmp_path / "media"
    shutil.copytree(MEDIA, target)
    return target


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A fresh empty catalog database: a SQLite file, or a new database on the local server."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    yield from _postgres_database()


def _postgres_database():
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"spyglass_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure to reach the server
        admin.dispose()
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def settings(tmp_path, tiny_model, database_url) -> Settings:
    """Settings for a test: its own home and database, the tiny model, small batches.

    fp32 in PyTorch, stored as float32, so that vectors compare exactly with the `encoder` fixture's;
    test_precision covers bf16, test_runtimes ONNX Runtime, test_vector_storage float16.
    No OCR (a third of a second an image): test_words turns it on.
    """
    return Settings(home=tmp_path / "home", database_url=database_url, model=str(tiny_model[0]),
                    pretrained=str(tiny_model[1]), device="cpu", precision="fp32", runtime="torch",
                    vector_storage="float32", batch_size=3, decode_workers=2, ocr="off")


@pytest.fixture
def sqlite_settings(tmp_path, tiny_model) -> Settings:
    """Settings on SQLite only, for tests whose subject is not the database (fp32, as `settings`)."""
    return Settings(home=tmp_path / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                    device="cpu", precision="fp32", runtime="torch", vector_storage="float32", batch_size=3,
                    decode_workers=2, ocr="off")


def spyglass_env(settings: Settings) -> dict[str, str]:
    """The environment that hands these settings to a `spyglass` subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPYGLASS_")}
    env.update(SPYGLASS_HOME=str(settings.home), SPYGLASS_DATABASE_URL=settings.db_url,
               SPYGLASS_MODEL=settings.model, SPYGLASS_PRETRAINED=settings.pretrained,
               SPYGLASS_DEVICE=settings.device, SPYGLASS_PRECISION=settings.precision, SPYGLASS_RUNTIME=settings.runtime,
               SPYGLASS_VECTOR_STORAGE=settings.vector_storage,
               SPYGLASS_BATCH_SIZE=str(settings.batch_for(settings.device)), SPYGLASS_OCR=settings.ocr,
               SPYGLASS_AUTH=settings.auth, SPYGLASS_PAGE_CUTOFF=str(settings.page_cutoff),
               SPYGLASS_DUPLICATE_COSINE=str(settings.duplicate_cosine))
    return env


def worker_pids(master_pid: int) -> list[int]:
    """The child processes of a process (gunicorn's workers of its master)."""
    children = []
    for task in Path(f"/proc/{master_pid}/task").iterdir():
        children += [int(pid) for pid in (task / "children").read_text().split()]
    return children


def peak_rss_bytes(pid: int) -> int:
    """The most resident memory a process has held (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise LookupError(pid)


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(settings: Settings, log_path: Path, *options: str, started: list | None = None):
    """`spyglass serve` (gunicorn) on settings.port until the block ends; yields its base URL.

    options go to `spyglass serve` (--workers 2, ...); the process is appended to `started`.
    """
    import time
    import urllib.request

    log = open(log_path, "w")
    process = subprocess.Popen([sys.executable, "-m", "spyglass.cli", "serve", "--port", str(settings.port),
                                "--threads", "4", *options], env=spyglass_env(settings), stdout=log, stderr=log)
    if started is not None:
        started.append(process)
    url = f"http://127.0.0.1:{settings.port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/api/v1/healthz", timeout=2).read()
                break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("spyglass serve did not start: " + log_path.read_text()) from exc
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, tiny_model, encoder):
    """`spyglass serve` over an indexed copy of the test images (plus a duplicate of red.jpg)."""
    from spyglass.indexer.job import run_index

    base = tmp_path_factory.mktemp("served")
    media = base / "media"
    shutil.copytree(MEDIA, media)
    shutil.copy(media / "red.jpg", media / "nested" / "red copy.jpg")  # a duplicate, for deduplication
    labels = base / "labels.txt"
    labels.write_text("red\nblue\ngreen\nyellow\ncat\n")
    settings = Settings(home=base / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                        device="cpu", port=free_port(), labels=labels, page_cutoff=0)
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    with serving(settings, base / "server.log") as url:
        yield {"url": url, "media": media, "settings": settings}


ACCOUNT_PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def accounts_server(tmp_path_factory, tiny_model, encoder):
    """`spyglass serve --workers 2` with accounts over the test images: alice sees nested/ only."""
    from spyglass.indexer.job import run_index
    from spyglass.search.accounts.directory import Accounts
    from spyglass.search.catalog.db import create_db_engine, session_factory

    base = tmp_path_factory.mktemp("served-accounts")
    media = base / "media"
    shutil.copytree(MEDIA, media)
    settings = Settings(home=base / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                        device="cpu", port=free_port(), auth="accounts", page_cutoff=0)
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    engine = create_db_engine(settings.db_url, writer=True)
    accounts = Accounts(session_factory(engine))
    accounts.add_user("alice", ACCOUNT_PASSWORD, folders=["nested"])
    accounts.add_user("root", ACCOUNT_PASSWORD, admin=True)
    with serving(settings, base / "server.log", "--workers", "2") as url:
        yield {"url": url, "media": media, "settings": settings, "accounts": accounts}
    engine.dispose()


def run_spyglass(*args: str, env: dict[str, str], timeout: float = 120,
                 isolated: bool = False) -> subprocess.CompletedProcess:
    """Run the real `spyglass` command: in this process by default (click's runner, with `env` as the
    environment for the call: torch and the model are not imported again), or in a subprocess
    (`isolated`) where the process boundary is the point: a hang bounded by `timeout`, kill -9, a
    fresh interpreter. Either way the answer is a CompletedProcess; an unexpected exception in
    this process is written to its stderr as the subprocess would have printed its traceback."""
    if isolated:
        return subprocess.run([sys.executable, "-m", "spyglass.cli", *args], env=env, text=True,
                              capture_output=True, timeout=timeout)
    import logging
    import traceback

    from click.testing import CliRunner

    from spyglass.cli import cli

    changes = {key: value for key, value in env.items() if os.environ.get(key) != value}
    changes.update({key: None for key in os.environ if key.startswith("SPYGLASS_") and key not in env})
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level  # configure_logging replaces them for the call
    try:
        result = CliRunner().invoke(cli, list(args), env=changes, catch_exceptions=True)
    finally:
        root.handlers[:], root.level = handlers, level
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (most recent call last):\n" + "".join(traceback.format_exception(result.exception))
    return subprocess.CompletedProcess(["spyglass", *args], result.exit_code, result.stdout, stderr)


def kept_index_files(settings: Settings) -> set[str]:
    """The files the live generation and the one before it name: all an index folder should hold."""
    from sqlalchemy import create_engine, select

    from spyglass.search.catalog.schema import IndexGeneration

    engine = create_engine(settings.db_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(IndexGeneration.filename, IndexGeneration.ann_filename,
                                             IndexGeneration.segments)
                                      .order_by(IndexGeneration.id.desc()).limit(2)).all()
    finally:
        engine.dispose()
    from spyglass.search.store.segmented import Manifest

    return {name for base, ann, segments in rows for name in [base, ann, *Manifest.from_json(segments).filenames()]
            if name}


def index_files(settings: Settings) -> set[str]:
    """The generation files in the index folder (temp files excluded)."""
    return {path.name for path in settings.index_dir.glob("gen-*")}


@contextlib.contextmanager
def small_disk(folder: Path, size: str):
    """A tmpfs of `size` (8m, ...) mounted at folder for the block: a disk that really fills up.

    Needs root (CI and these machines run tests as root); elsewhere the test is skipped.
    """
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        if os.environ.get("CI") and os.geteuid() == 0:
            raise RuntimeError(f"mount -t tmpfs failed: {mounted.stderr}")
        pytest.skip(f"a real full disk needs `mount -t tmpfs` (root): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder: Path) -> None:
    """Write zeros under folder until its file system has no byte left."""
    import errno

    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for block in (bytes(64 * 1024), b"\0"):  # big blocks, then the last bytes one at a time
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
