"""`spyglass import`: clip-retrieval's output and plain .npy files, searched through both APIs."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import run_spyglass, spyglass_env
from spyglass.web import create_app

DIM = 32  # the tiny test model's


def unit(rows: int, seed: int, dtype=np.float16) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(rows, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(dtype)


def clip_retrieval_folder(root, local_files: list, remote: int) -> tuple:
    """What `clip-retrieval inference` writes: img_emb/img_emb_N.npy and metadata/metadata_N.parquet."""
    (root / "img_emb").mkdir(parents=True)
    (root / "metadata").mkdir()
    local = unit(len(local_files), seed=1)
    np.save(root / "img_emb" / "img_emb_0.npy", local)
    pq.write_table(pa.table({"image_path": [str(p) for p in local_files],
                             "caption": [f"picture {i}" for i in range(len(local_files))]}),
                   root / "metadata" / "metadata_0.parquet")
    far = unit(remote, seed=2)
    np.save(root / "img_emb" / "img_emb_1.npy", far)
    pq.write_table(pa.table({"url": [f"https://images.example.org/{i}.jpg" for i in range(remote)],
                             "caption": [f"a remote photo number {i}" for i in range(remote)]}),
                   root / "metadata" / "metadata_1.parquet")
    return local, far


def status(env) -> dict:
    return json.loads(run_spyglass("status", "--json", env=env).stdout)


@pytest.fixture
def pictures(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    paths = []
    for i in range(6):
        path = folder / f"p{i}.png"
        Image.new("RGB", (20 + i, 10), (40 * i, 20, 200)).save(path)
        paths.append(path)
    return folder, paths


def test_a_clip_retrieval_folder_is_imported_and_searched_through_both_apis(tmp_path, sqlite_settings, pictures):
    folder, paths = pictures
    local, far = clip_retrieval_folder(tmp_path / "embeddings", paths, remote=40)
    env = spyglass_env(sqlite_settings)
    result = run_spyglass("import", str(tmp_path / "embeddings"), "--media-root", str(folder), "--no-progress", env=env)
    assert result.returncode == 0, result.stderr
    assert "46 imported, 0 replaced, 0 skipped" in result.stdout
    assert status(env)["items"] == 46 and status(env)["index"]["vectors"] == 46

    client = create_app(sqlite_settings).test_client()
    # A remote item: found by its own vector, with its url and caption, through clip-retrieval's API...
    knn = client.post("/knn-service", json={"embedding_input": far[7].astype(float).tolist(), "num_images": 3}).json
    assert knn[0]["url"] == "https://images.example.org/7.jpg" and knn[0]["caption"] == "a remote photo number 7"
    assert knn[0]["similarity"] == pytest.approx(1.0, abs=2e-3)
    # ... and through Spyglass's own.
    hits = client.post("/api/v1/search", json={"embedding": far[7].astype(float).tolist(), "k": 1}).json["results"]
    assert hits[0]["source_url"] == "https://images.example.org/7.jpg"
    assert hits[0]["thumbnail_url"] == hits[0]["file_url"] == "https://images.example.org/7.jpg"
    # A local item is an ordinary item: its real size and format, and its original is served.
    hits = client.post("/api/v1/search", json={"embedding": local[2].astype(float).tolist(), "k": 1}).json["results"]
    assert hits[0]["name"] == "p2.png" and hits[0]["format"] == "PNG" and hits[0]["width"] == 22
    assert hits[0]["caption"] == "picture 2"
    original = client.get(hits[0]["file_url"])
    assert original.status_code == 200 and original.data == paths[2].read_bytes()
    # A later index run of the folder keeps the imported vectors of unchanged files.
    indexed = run_spyglass("index", str(folder), "--no-progress", env=env)
    assert indexed.returncode == 0 and "0 added, 0 updated" in indexed.stdout
    # check does not call remote items missing files.
    checked = run_spyglass("check", env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Importing again replaces what was imported, and adds nothing.
    again = run_spyglass("import", str(tmp_path / "embeddings"), "--no-progress", env=env)
    assert "0 imported, 46 replaced" in again.stdout and status(env)["items"] == 46


def test_plain_npy_with_csv_metadata(tmp_path, sqlite_settings):
    source = tmp_path / "mine"
    source.mkdir()
    np.save(source / "vectors.npy", unit(5, seed=3, dtype=np.float32) * 3.0)  # not unit: normalised on import
    (source / "vectors.csv").write_text("url,caption\n" + "".join(f"https://x.test/{i}.png,cap {i}\n" for i in range(5)))
    env = spyglass_env(sqlite_settings)
    result = run_spyglass("import", str(source / "vectors.npy"), "--no-progress", env=env)
    assert result.returncode == 0, result.stderr
    client = create_app(sqlite_settings).test_client()
    hits = client.post("/api/v1/search", json={"embedding": [1.0] * DIM, "k": 5}).json["results"]
    assert sorted(h["caption"] for h in hits) == [f"cap {i}" for i in range(5)]
    assert all(-1.0 <= h["score"] <= 1.0 for h in hits)
    # Captions are words: a text query finds the row whose caption holds it, and says so.
    found = client.get("/api/v1/search", query_string={"q": "cap 3", "mode": "words"}).json["results"]
    assert found[0]["caption"] == "cap 3"
    assert found[0]["matches"][0] == {"field": "caption", "snippet": "<mark>cap</mark> <mark>3</mark>"}


@pytest.mark.parametrize(("damage", "message"), [
    ("dimension", "holds 16-number vectors; the model makes 32"),
    ("column", "has no image_path or url column"),
    ("nan", "img_emb_1.npy row 3: the vector is not finite or is all zeros"),
    ("rows", "has 40 rows but"),
])
def test_a_malformed_import_is_refused_and_publishes_nothing(tmp_path, sqlite_settings, pictures, damage, message):
    folder, paths = pictures
    root = tmp_path / "embeddings"
    _, far = clip_retrieval_folder(root, paths, remote=40)
    if damage == "dimension":
        np.save(root / "img_emb" / "img_emb_1.npy", far[:, :16])
    elif damage == "column":
        pq.write_table(pa.table({"caption": ["x"] * 40}), root / "metadata" / "metadata_1.parquet")
    elif damage == "nan":
        far = far.copy()
        far[3, 5] = np.nan
        np.save(root / "img_emb" / "img_emb_1.npy", far)
    else:
        np.save(root / "img_emb" / "img_emb_1.npy", far[:30])
    env = spyglass_env(sqlite_settings)
    result = run_spyglass("import", str(root), "--no-progress", env=env)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert status(env)["index"] is None and status(env)["items"] == 0


def test_vectors_of_another_model_are_refused(tmp_path, sqlite_settings, other_model, pictures):
    folder, paths = pictures
    clip_retrieval_folder(tmp_path / "embeddings", paths, remote=4)
    env = spyglass_env(sqlite_settings)
    assert run_spyglass("import", str(tmp_path / "embeddings"), "--no-progress", env=env).returncode == 0
    other = env | {"SPYGLASS_MODEL": str(other_model[0]), "SPYGLASS_PRETRAINED": str(other_model[1])}
    result = run_spyglass("import", str(tmp_path / "embeddings"), "--no-progress", env=other)
    assert result.returncode != 0 and "the index holds vectors of" in result.stderr, result.stderr
