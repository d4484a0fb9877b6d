"""Reduced precision: chosen by device, guarded by the fidelity check, exact fp32 on fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spyglass.search.model import precision
from spyglass.search.model.encoder import load_encoder
from spyglass.search.errors import ConfigError
from spyglass.search.settings import Settings


def test_auto_means_fp16_on_cuda_bf16_on_a_bf16_cpu_else_fp32(monkeypatch):
    assert precision.chosen_precision("auto", "cuda") == "fp16"
    assert precision.chosen_precision("auto", "cuda:1") == "fp16"
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    assert precision.chosen_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    assert precision.chosen_precision("auto", "cpu") == "fp32"
    assert precision.chosen_precision("bf16", "cpu") == "bf16"  # asked for: the check still guards it


def test_bf16_passes_the_check_and_its_vectors_stay_within_the_bound(tiny_model, encoder):
    reduced = load_encoder(str(tiny_model[0]), str(tiny_model[1]), device="cpu", precision="bf16")
    check = reduced.precision_check
    assert (check.precision, check.wanted, check.fell_back) == ("bf16", "bf16", False)
    assert precision.MIN_COSINE <= check.min_cosine <= 1.0001
    assert reduced.model.visual.conv1.weight.dtype == torch.bfloat16
    assert "bf16 (min cosine" in check.describe()
    # Images and texts outside the calibration batch stay close to the fp32 vectors too.
    images = precision.calibration_images(count=4, size=97)
    pairs = [(encoder.encode_images(images), reduced.encode_images(images)),
             (encoder.encode_texts(["a cat", "a boat at sea"]), reduced.encode_texts(["a cat", "a boat at sea"]))]
    for fp32, bf16 in pairs:
        assert bf16.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
        assert np.min(np.sum(fp32 * bf16, axis=1)) >= 0.995
    # The image tower is the checkpoint's, whatever precision it runs in.
    assert reduced.image_tower == encoder.image_tower


def test_a_failed_check_falls_back_to_the_exact_fp32_weights(tiny_model, encoder, monkeypatch):
    monkeypatch.setattr(precision, "MIN_COSINE", 1.5)  # no precision can pass this
    loaded = load_encoder(str(tiny_model[0]), str(tiny_model[1]), device="cpu", precision="bf16")
    check = loaded.precision_check
    assert (check.precision, check.wanted, check.fell_back) == ("fp32", "bf16", True)
    assert "fell back" in check.describe()
    assert loaded.precision == "fp32"
    expected = encoder.model.state_dict()
    for name, tensor in loaded.model.state_dict().items():
        assert tensor.dtype == expected[name].dtype, name
        assert torch.equal(tensor, expected[name]), name  # not rounded through bf16
    images = precision.calibration_images(count=2, size=64)
    np.testing.assert_array_equal(loaded.encode_images(images), encoder.encode_images(images))


def test_fp32_runs_no_check(tiny_model):
    loaded = load_encoder(str(tiny_model[0]), str(tiny_model[1]), device="cpu")
    assert loaded.precision_check == precision.PrecisionCheck("fp32", None, "fp32")
    assert loaded.precision_check.describe() == "fp32"


def test_the_setting_is_checked():
    assert Settings.from_env({"SPYGLASS_PRECISION": "bf16"}).precision == "bf16"
    assert Settings().precision == "auto"
    with pytest.raises(ConfigError, match="SPYGLASS_PRECISION"):
        Settings.from_env({"SPYGLASS_PRECISION": "int8"})


def test_an_index_records_the_precisions_of_its_vectors(settings, media, encoder):
    from spyglass.indexer.job import run_index
    from spyglass.search.engine import SearchEngine
    from spyglass.search.status import status_report

    messages = []
    bf16 = settings.override(precision="bf16")
    run_index(bf16, [str(media)], progress=False, echo=messages.append)
    assert any(m.startswith("Encoder precision: bf16 (min cosine") for m in messages)
    facts = status_report(bf16)["index"]
    assert facts["precision"] == "bf16"
    assert precision.MIN_COSINE <= facts["precision_min_cosine"] <= 1.0001
    # The bf16 vectors answer an fp32 query of the same image: the same model, in another format.
    engine = SearchEngine(settings, encoder_loader=lambda a, p: encoder)
    first = sorted(media.glob("*.png"))[0]
    assert engine.search_image(first, k=1).hits[0].item.path == str(first)

    # A later fp32 run adds its vectors: the generation says both, and keeps the lowest cosine.
    precision.calibration_images(count=1, size=64)[0].save(media / "added.png")
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    later = status_report(settings)["index"]
    assert later["precision"] == "bf16,fp32"
    assert later["precision_min_cosine"] == facts["precision_min_cosine"]


def test_batch_and_decode_threads_default_by_device(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    settings = Settings()
    assert (settings.batch_for("cpu"), settings.workers_for("cpu")) == (32, 4)
    assert (settings.batch_for("cuda:0"), settings.workers_for("cuda:0")) == (256, 15)
    chosen = Settings.from_env({"SPYGLASS_BATCH_SIZE": "8", "SPYGLASS_DECODE_WORKERS": "3"})
    assert (chosen.batch_for("cuda"), chosen.workers_for("cuda")) == (8, 3)
