"""Zero-shot labels (SPYGLASS_LABELS): stored per item from its vector, kept current, shown and filtered by."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from conftest import GOOD_IMAGES, run_spyglass, spyglass_env
from spyglass.indexer.job import run_index
from spyglass.search.engine import SearchEngine
from spyglass.search.errors import ConfigError
from spyglass.search.model.zero_shot import LabelSet, label_vectors
from spyglass.search.catalog.schema import ItemLabel
from spyglass.web import create_app

LABELS = ["red", "blue", "green", "yellow", "transparent", "photo"]


@pytest.fixture
def labelled(settings, tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("# colours\n" + "\n".join(LABELS) + "\ntemplate: a photo of a {label} thing.\n"
                    "template: a {label} picture\n")
    return settings.override(labels=path)


def stored(settings) -> dict[int, list[tuple[str, float]]]:
    engine = SearchEngine(settings)
    with engine.catalog.sessions() as session:
        rows = session.execute(select(ItemLabel).order_by(ItemLabel.item_id, ItemLabel.rank)).scalars().all()
        out: dict[int, list[tuple[str, float]]] = {}
        for row in rows:
            out.setdefault(row.item_id, []).append((row.label, row.score))
    engine.close()
    return out


def test_a_labels_file_is_read_with_its_templates(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat\n# not a label\ndog  # a comment\n\ncat\ntemplate: {label} on a sofa\n")
    label_set = LabelSet.read(path)
    assert label_set.labels == ("cat", "dog") and label_set.templates == ("{label} on a sofa",)
    assert label_set.prompts("dog") == ["dog on a sofa"]
    path.write_text("template: no placeholder\ncat\n")
    with pytest.raises(ConfigError, match="has no {label}"):
        LabelSet.read(path)
    with pytest.raises(ConfigError, match="cannot read the labels file"):
        LabelSet.read(tmp_path / "missing.txt")


def test_every_item_gets_its_best_labels_from_its_vector(labelled, media, encoder):
    summary = run_index(labelled, [str(media)], encoder=encoder, progress=False)
    assert summary.labelled == len(GOOD_IMAGES) and "labelled" in summary.line()
    labels = stored(labelled)
    assert len(labels) == len(GOOD_IMAGES) and all(len(v) == 3 for v in labels.values())
    # The same answer by hand: cosine of the stored vector and the label's averaged prompts.
    engine = SearchEngine(labelled)
    snapshot = engine.live()
    weights = label_vectors(encoder, LabelSet.read(labelled.labels))
    for item_id, best in labels.items():
        scores = weights @ snapshot.stored.vector(item_id)
        assert best[0][0] == LABELS[int(np.argmax(scores))]
        assert [s for _, s in best] == sorted((s for _, s in best), reverse=True)
        assert best[0][1] == pytest.approx(float(scores.max()), abs=1e-5)


def test_labels_are_kept_current_without_redoing_everything(labelled, media, encoder):
    run_index(labelled, [str(media)], encoder=encoder, progress=False)
    assert run_index(labelled, [str(media)], encoder=encoder, progress=False).labelled == 0  # nothing changed
    Image.new("RGB", (30, 30), (250, 250, 0)).save(media / "new.png")
    assert run_index(labelled, [str(media)], encoder=encoder, progress=False).labelled == 1  # only the new one
    labelled.labels.write_text("\n".join(LABELS[:3]) + "\n")
    relabelled = run_index(labelled, [str(media)], encoder=encoder, progress=False)
    assert relabelled.labelled == len(GOOD_IMAGES) + 1  # the labels changed: everything again
    assert {label for best in stored(labelled).values() for label, _ in best} <= set(LABELS[:3])
    off = run_index(dataclasses.replace(labelled, labels=None), [str(media)], encoder=encoder, progress=False)
    assert off.labelled == 0 and stored(labelled) == {}  # labels switched off: none left


def test_results_carry_labels_and_filter_by_them(labelled, media, encoder, tmp_path):
    run_index(labelled, [str(media)], encoder=encoder, progress=False)
    client = create_app(labelled).test_client()
    results = client.get("/api/v1/search?q=x&k=50").json["results"]
    assert all(len(r["labels"]) == 3 and {"label", "score"} <= set(r["labels"][0]) for r in results)
    best = results[0]["labels"][0]["label"]
    expected = {r["id"] for r in results if r["labels"][0]["label"] == best}
    only = client.get("/api/v1/search", query_string={"q": "x", "k": 50, "label": best}).json["results"]
    assert {r["id"] for r in only} == expected
    posted = client.post("/api/v1/search", json={"text": "x", "k": 50, "filters": {"label": best}}).json["results"]
    assert {r["id"] for r in posted} == expected
    assert client.get("/api/v1/search?q=x&label=no-such-label").json["results"] == []

    env = {**spyglass_env(labelled), "SPYGLASS_LABELS": str(labelled.labels)}
    cli = json.loads(run_spyglass("search", "x", "--label", best, "-k", "50", "--json", env=env).stdout)
    assert {r["id"] for r in cli["results"]} == expected and all(r["labels"][0]["label"] == best for r in cli["results"])
    status = json.loads(run_spyglass("status", "--json", env=env).stdout)
    assert status["labels"]["labels"] == len(LABELS) and sum(status["labels"]["most_common"].values()) > 0


@pytest.mark.parametrize("kind", ["device", "fifo", "huge"])
def test_a_labels_file_that_is_no_file_or_too_big_is_refused_at_once(tmp_path, sqlite_settings, media, kind):
    import os

    if kind == "device":
        labels = "/dev/zero"  # read whole, it never ends
    elif kind == "fifo":
        labels = str(tmp_path / "labels.fifo")
        os.mkfifo(labels)  # read, it waits for a writer forever
    else:
        labels = str(tmp_path / "labels.txt")
        with open(labels, "w") as handle:
            handle.write("cat\n" * (2 * 1024 * 1024))  # 8 MB
    with pytest.raises(ConfigError, match="cannot read the labels file"):
        LabelSet.read(labels)
    env = spyglass_env(sqlite_settings) | {"SPYGLASS_LABELS": labels}
    # It used to hang, holding the lock: in a subprocess, so that a hang fails the test.
    result = run_spyglass("index", "--no-progress", str(media), env=env, timeout=90, isolated=True)
    assert result.returncode == 1 and "cannot read the labels file" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
