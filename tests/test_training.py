"""Measuring and training the dual encoder: data sets, metrics, `spyglass eval`, `spyglass finetune`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from captioned_shapes import make_set
from conftest import GOOD_IMAGES, MEDIA, TINY_CONFIG, run_spyglass, spyglass_env
from spyglass.training.datasets import load_dataset
from spyglass.training.finetune import FinetuneOptions, finetune, unique_batches
from spyglass.indexer.job import run_index, run_reindex
from spyglass.training.metrics import classification_metrics, retrieval_metrics
from spyglass.search.engine import SearchEngine
from spyglass.search.errors import ConfigError

# The tiny architecture at 64 pixels, so that shapes and positions can be told apart.
SHAPES_CONFIG = {**TINY_CONFIG, "vision_cfg": {**TINY_CONFIG["vision_cfg"], "image_size": 64}}


def test_retrieval_metrics_match_a_hand_computed_ranking():
    images = np.eye(4, dtype=np.float32)
    # Caption j is closest to image (j + shift) % 4, so its own image ranks as hand-written below.
    texts = np.array([[0.9, 0.1, 0.0, 0.0],   # own image 0: rank 0
                      [0.8, 0.7, 0.0, 0.0],   # own image 1: image 0 beats it, rank 1
                      [0.5, 0.4, 0.3, 0.2],   # own image 2: rank 2
                      [0.1, 0.2, 0.4, 0.3]],  # own image 3: image 2 beats it, rank 1
                     dtype=np.float32)
    m = retrieval_metrics(images, texts, np.arange(4))
    assert m["text_to_image_R@1"] == 0.25 and m["text_to_image_R@5"] == 1.0
    assert m["text_to_image_mean_rank"] == pytest.approx(1 + (0 + 1 + 2 + 1) / 4)
    assert m["text_to_image_median_rank"] == 2.0
    # Image 0's best caption is caption 0 (0.9, top); image 1: 0.7 is beaten by 0.8? no: captions
    # score image 1 with 0.1, 0.7, 0.4, 0.2, so caption 1 is first. Image 2: 0.3 loses to 0.4 (caption 3).
    # Image 3: 0.3 loses to 0.2? no: 0.0, 0.0, 0.2, 0.3 -> caption 3 first.
    assert m["image_to_text_R@1"] == 0.75 and m["image_to_text_mean_rank"] == pytest.approx(1.25)


def test_an_image_hits_with_any_of_its_captions():
    images = np.eye(2, dtype=np.float32)
    texts = np.array([[0.2, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # captions 0 and 1 are image 0's
    m = retrieval_metrics(images, texts, np.array([0, 0, 1]))
    assert m["image_to_text_R@1"] == 1.0  # image 0's caption 1 is its best
    assert m["text_to_image_R@1"] == pytest.approx(2 / 3)  # caption 0 prefers image 1


def test_classification_metrics_by_hand():
    m = classification_metrics(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), classes=3)
    assert m["accuracy"] == 0.5
    # class 0: p 1/2 r 1; class 1: p 1 r 1/3; class 2: p 0 r 0 (never true).
    assert m["macro_precision"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert m["macro_recall"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 0) / 3)


def test_batches_never_hold_a_caption_or_an_image_twice():
    keys = [("a", "red"), ("b", "red"), ("c", "blue"), ("a", "green"), ("d", "blue"), ("e", "pink")]
    batches = unique_batches(keys, batch_size=3)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for batch in batches:
        assert len({keys[i][0] for i in batch}) == len(batch) == len({keys[i][1] for i in batch})
        assert len(batch) <= 3


def test_the_three_layouts_and_their_messages(tmp_path):
    table = make_set(tmp_path / "csv", 6)
    assert [len(e.captions) for e in load_dataset(table).examples] == [1] * 6

    rows = table.read_text().splitlines()
    bad = tmp_path / "csv" / "bad.tsv"
    bad.write_text("\n".join(["image\tcaption", rows[1].replace(",", "\t", 1), "missing.png\ta thing",
                              "shape-00002.png\t  ", "shape-00001.png\tanother caption of image 1"]) + "\n")
    dataset = load_dataset(bad, image_key="image", caption_key="caption")
    assert [(e.image.rsplit("/", 1)[1], e.captions) for e in dataset.examples] == [
        ("shape-00000.png", (rows[1].split(",", 1)[1].strip('"'),)),
        ("shape-00001.png", ("another caption of image 1",))]
    assert dataset.skipped == [f"{bad}:3: no such image missing.png", f"{bad}:4: empty caption"]
    with pytest.raises(ConfigError, match=r"no column 'filepath' or 'title' \(the columns are 'image', 'caption'\)"):
        load_dataset(bad)

    sidecars = make_set(tmp_path / "sidecar", 3, layout="sidecar")
    (sidecars / "shape-00000.txt").write_text("first caption\nsecond caption\n")
    (sidecars / "shape-00001.txt").write_text("")
    dataset = load_dataset(sidecars)
    assert dataset.kind == "captions" and dataset.examples[0].captions == ("first caption", "second caption")
    assert len(dataset.examples) == 2 and "empty caption file" in dataset.skipped[0]

    classes = tmp_path / "classes"
    for label, colour in (("red", (250, 0, 0)), ("blue", (0, 0, 250))):
        (classes / label).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (20, 20), colour).save(classes / label / f"{i}.png")
    dataset = load_dataset(classes)
    assert dataset.kind == "classes" and dataset.labels == ["blue", "red"] and len(dataset.examples) == 4

    empty = tmp_path / "empty.csv"
    empty.write_text("filepath,title\nnope.png,\n")
    with pytest.raises(ConfigError, match=r"no usable images with captions .*\(1 skipped; first problem: .*:2: empty caption\)"):
        load_dataset(empty)


def test_eval_prints_open_clip_metric_names_and_counts_unreadable_images(sqlite_settings, tmp_path):
    table = make_set(tmp_path / "set", 12)
    shutil.copy(MEDIA / "corrupt.jpg", tmp_path / "set" / "broken.png")
    with open(table, "a") as handle:
        handle.write("broken.png,a broken picture\n")
    result = run_spyglass("eval", "--json", "--no-progress", str(table), env=spyglass_env(sqlite_settings))
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    assert {f"{d}_R@{k}" for d in ("text_to_image", "image_to_text") for k in (1, 5, 10)} <= set(metrics)
    assert {"text_to_image_mean_rank", "image_to_text_median_rank"} <= set(metrics)
    assert (metrics["images"], metrics["captions"], metrics["skipped"]) == (12, 12, 1)
    assert "broken.png" in result.stderr or metrics["skipped"] == 1

    classes = tmp_path / "classes"
    for label, colour in (("red", (250, 0, 0)), ("green", (0, 250, 0))):
        (classes / label).mkdir(parents=True)
        Image.new("RGB", (20, 20), colour).save(classes / label / "a.png")
    text = run_spyglass("eval", "--no-progress", "--template", "a {label} square", str(classes),
                        env=spyglass_env(sqlite_settings))
    assert text.returncode == 0, text.stderr
    assert "zero-shot: accuracy" in text.stdout and "macro F1" in text.stdout


@pytest.fixture
def shapes(tmp_path):
    """A rendered captioned set, and settings for the tiny 64-pixel architecture."""
    config = tmp_path / "shapes-clip.json"
    config.write_text(json.dumps(SHAPES_CONFIG))
    return make_set(tmp_path / "shapes", 200, seed=3), config


def test_training_from_scratch_learns_to_retrieve(sqlite_settings, shapes, tmp_path):
    table, config = shapes
    settings = sqlite_settings.override(model=str(config), pretrained="")
    result = finetune(load_dataset(table), settings,
                      FinetuneOptions(out=tmp_path / "scratch", mode="from-scratch", epochs=25, seed=0,
                                      patience=25, progress=False), echo=lambda m: None)
    before, after = result.before["text_to_image_R@5"], result.after["text_to_image_R@5"]
    assert after >= before + 0.35, (before, after)  # 20 held-out images: chance is 0.25
    written = json.loads((tmp_path / "scratch" / "metrics.json").read_text())
    assert written["after"]["text_to_image_R@5"] == after and len(written["epochs"]) >= 1
    # The folder loads as a model, through the same setting a user would use.
    evaluated = run_spyglass("eval", "--json", "--no-progress", "--pretrained", str(tmp_path / "scratch"),
                             str(table), env=spyglass_env(settings))
    assert evaluated.returncode == 0, evaluated.stderr


def test_a_text_side_finetune_goes_live_without_re_embedding(sqlite_settings, tiny_model, media, tmp_path):
    table = make_set(tmp_path / "captions", 120, seed=5, side=32)
    labels = tmp_path / "labels.txt"
    labels.write_text("circle\nsquare\ntriangle\n")
    sqlite_settings = sqlite_settings.override(labels=labels)
    assert run_index(sqlite_settings, [str(media)], progress=False).labelled == len(GOOD_IMAGES)
    live_before = SearchEngine(sqlite_settings).live()
    vectors_before = {i: live_before.stored.vector(i) for i in live_before.stored.ids().tolist()}

    out = tmp_path / "tuned"
    result = finetune(load_dataset(table), sqlite_settings,
                      FinetuneOptions(out=out, mode="lock-image", epochs=6, lr=1e-3, progress=False, patience=6),
                      echo=lambda m: None)
    assert result.best_epoch > 0  # trained, and better than the base on the held-out images
    base = load_file(str(tiny_model[1]))
    tuned = load_file(str(out / "open_clip_model.safetensors"))
    visual = [k for k in base if k.startswith("visual.")]
    assert visual and all((base[k] == tuned[k]).all() for k in visual)  # bit for bit
    assert any(not (base[k] == tuned[k]).all() for k in base if not k.startswith("visual."))
    assert json.loads((out / "spyglass.json").read_text())["image_tower_sha256"] == result.image_tower

    swapped = sqlite_settings.override(pretrained=str(out))
    summary = run_reindex(swapped, progress=False)
    assert (summary.embedded, summary.updated, summary.added) == (0, 0, 0)
    assert summary.labelled == len(GOOD_IMAGES)  # the text side changed: labels are computed anew
    engine = SearchEngine(swapped)
    live = engine.live()
    assert live.generation.id > live_before.generation.id and live.generation.model.pretrained == str(out)
    assert all(np.array_equal(live.stored.vector(i), v) for i, v in vectors_before.items())
    assert engine.search_text("a small red circle", k=3).hits  # queries now use the tuned text tower


def test_a_worse_model_is_not_written_unless_forced(sqlite_settings, tmp_path):
    table = make_set(tmp_path / "set", 40, seed=9, side=32)
    options = dict(mode="lock-image", epochs=1, lr=5.0, progress=False, patience=1)  # an absurd step
    with pytest.raises(ConfigError, match="does not retrieve better than the base .* nothing was written"):
        finetune(load_dataset(table), sqlite_settings, FinetuneOptions(out=tmp_path / "worse", **options),
                 echo=lambda m: None)
    assert not (tmp_path / "worse").exists()
    forced = finetune(load_dataset(table), sqlite_settings,
                      FinetuneOptions(out=tmp_path / "worse", force=True, blend=0.5, **options), echo=lambda m: None)
    assert (tmp_path / "worse" / "open_clip_model.safetensors").is_file() and forced.after


def test_finetune_refuses_what_it_cannot_use(sqlite_settings, tmp_path):
    classes = tmp_path / "classes"
    for label in ("a", "b"):
        (classes / label).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(classes / label / "x.png")
    env = spyglass_env(sqlite_settings)
    refused = run_spyglass("finetune", "--no-progress", "--out", str(tmp_path / "o"), str(classes), env=env)
    assert refused.returncode == 1 and "needs captioned images" in refused.stderr
    table = make_set(tmp_path / "set", 8, side=16)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "precious.txt").write_text("keep me")
    refused = run_spyglass("finetune", "--no-progress", "--out", str(occupied), str(table), env=env)
    assert refused.returncode == 1 and "not an earlier finetune's output" in refused.stderr
    assert (occupied / "precious.txt").read_text() == "keep me"
    scratch_blend = run_spyglass("finetune", "--from-scratch", "--blend", "0.5", "--out", str(tmp_path / "o"),
                                 str(table), env=env)
    assert scratch_blend.returncode == 1 and "nothing to blend with" in scratch_blend.stderr


def test_unlocked_blocks_train_only_the_last_image_blocks(sqlite_settings, tiny_model, tmp_path):
    table = make_set(tmp_path / "set", 80, seed=2, side=32)
    out = tmp_path / "unlocked"
    finetune(load_dataset(table), sqlite_settings,
             FinetuneOptions(out=out, mode="unlock-image", unlocked_blocks=1, epochs=2, lr=1e-3, progress=False,
                             force=True), echo=lambda m: None)
    base, tuned = load_file(str(tiny_model[1])), load_file(str(out / "open_clip_model.safetensors"))
    changed = {k for k in base if not (base[k] == tuned[k]).all()}
    # The tiny ViT has two blocks: with one unlocked, block 0 and the patch embedding stay as they were.
    assert any(k.startswith("visual.transformer.resblocks.1.") for k in changed)
    assert not any(k.startswith(("visual.transformer.resblocks.0.", "visual.conv1")) for k in changed)
    assert float(tuned["logit_scale"]) <= np.log(100) + 1e-6  # the temperature stays clamped


def test_blending_is_the_weighted_mean_of_the_weights():
    import torch

    from spyglass.training.finetune import _blended

    base = {"w": torch.zeros(3), "steps": torch.tensor([5])}
    tuned = {"w": torch.ones(3) * 2, "steps": torch.tensor([9])}
    mixed = _blended(base, tuned, 0.25)
    assert torch.allclose(mixed["w"], torch.full((3,), 0.5)) and mixed["steps"].item() == 9  # integers kept
    assert _blended(base, tuned, 1.0) is tuned


def test_eval_modes_measures_each_search_mode_through_the_engine(tmp_path, sqlite_settings):
    folder = tmp_path / "captioned"
    folder.mkdir()
    for name, colour, caption in (("red_apple", (200, 20, 20), "a red apple"), ("blue_car", (20, 20, 200), "a blue car"),
                                  ("green_tree", (20, 160, 20), "a tall green tree"),
                                  ("IMG_0001", (120, 120, 120), "an old grey wall")):
        Image.new("RGB", (48, 48), colour).save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(caption)
    result = run_spyglass("eval", "--json", "--no-progress", "--modes", str(folder), env=spyglass_env(sqlite_settings))
    assert result.returncode == 0, result.stderr
    modes = json.loads(result.stdout)["search_modes"]
    assert set(modes) == {"visual", "words", "hybrid"}
    # The names carry three of the four captions' words; the fourth name says nothing of its caption,
    # and its caption file was not indexed as its words.
    assert modes["words"]["R@1"] == pytest.approx(0.75)
    assert modes["hybrid"]["R@10"] == pytest.approx(1.0) and modes["visual"]["R@10"] == pytest.approx(1.0)
    classes = tmp_path / "classes"
    for label in ("a", "b"):
        (classes / label).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(classes / label / "x.png")
    refused = run_spyglass("eval", "--modes", str(classes), env=spyglass_env(sqlite_settings))
    assert refused.returncode == 2 and "--modes needs a captioned set" in refused.stderr
