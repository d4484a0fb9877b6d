"""The open_clip encoder: real loading path on a tiny model, and every way weights can fail."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import MEDIA, OTHER_CONFIG
from spyglass.search.model.encoder import load_encoder, model_identity
from spyglass.search.errors import ModelUnavailable


def test_vectors_are_unit_length_float32(encoder):
    texts = encoder.encode_texts(["a red bicycle", "a cat on a sofa"])
    images = encoder.encode_images([Image.open(MEDIA / "red.jpg").convert("RGB")])
    for vectors, rows in ((texts, 2), (images, 1)):
        assert vectors.dtype == np.float32 and vectors.shape == (rows, encoder.dim) == (rows, 32)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])


def test_text_longer_than_the_context_is_truncated_not_an_error(encoder):
    long_text = "a very long description of a red bicycle " * 200
    vectors = encoder.encode_texts([long_text, "short"])
    assert vectors.shape == (2, encoder.dim)


def test_checkpoint_round_trip_gives_the_same_vectors(tiny_model, encoder):
    again = load_encoder(str(tiny_model[0]), str(tiny_model[1]), device="cpu")
    assert np.allclose(again.encode_texts(["x"]), encoder.encode_texts(["x"]), atol=1e-6)


def test_plain_torch_state_dict_checkpoint_loads(tiny_model, tmp_path, encoder):
    import torch
    from safetensors.torch import load_file

    checkpoint = tmp_path / "weights.pt"
    torch.save({"state_dict": load_file(str(tiny_model[1]))}, checkpoint)
    loaded = load_encoder(str(tiny_model[0]), str(checkpoint), device="cpu")
    assert np.allclose(loaded.encode_texts(["x"]), encoder.encode_texts(["x"]), atol=1e-6)


def test_folder_holding_a_checkpoint_is_accepted(tiny_model, tmp_path, encoder):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "open_clip_model.safetensors").write_bytes(tiny_model[1].read_bytes())
    loaded = load_encoder(str(tiny_model[0]), str(folder), device="cpu")
    assert np.allclose(loaded.encode_texts(["x"]), encoder.encode_texts(["x"]), atol=1e-6)


def test_hf_hub_style_folder_with_config_is_accepted(tiny_model, tmp_path, encoder):
    folder = tmp_path / "hub-folder"
    folder.mkdir()
    config = json.loads(tiny_model[0].read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    (folder / "open_clip_model.safetensors").write_bytes(tiny_model[1].read_bytes())
    loaded = load_encoder("ViT-B-32", str(folder), device="cpu")  # the folder's config wins
    assert np.allclose(loaded.encode_texts(["x"]), encoder.encode_texts(["x"]), atol=1e-6)


def test_missing_checkpoint_file_names_the_setting(tiny_model, tmp_path):
    with pytest.raises(ModelUnavailable, match="SPYGLASS_PRETRAINED") as error:
        load_encoder(str(tiny_model[0]), str(tmp_path / "nope.safetensors"))
    assert "does not exist" in str(error.value)


def test_checkpoint_of_another_architecture_is_explained(tiny_model, tmp_path):
    other = tmp_path / "other.json"
    other.write_text(json.dumps(OTHER_CONFIG))
    with pytest.raises(ModelUnavailable, match="SPYGLASS_MODEL"):
        load_encoder(str(other), str(tiny_model[1]))


def test_unknown_architecture_is_explained():
    with pytest.raises(ModelUnavailable, match="not an open_clip architecture"):
        load_encoder("ViT-Q-99", "whatever")


def test_unknown_pretrained_tag_lists_known_tags():
    with pytest.raises(ModelUnavailable, match="laion2b_s34b_b79k"):
        load_encoder("ViT-B-32", "no_such_tag")


def test_pretrained_tag_offline_says_how_to_fix(monkeypatch, tmp_path):
    # An empty cache makes sure nothing is found; HF_HUB_OFFLINE, that the test passes online too.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailable) as error:
        load_encoder("ViT-B-32", "laion2b_s34b_b79k", cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "could not download" in message
    assert "SPYGLASS_PRETRAINED=/path/to/open_clip_model.safetensors" in message


class _Exploit:
    """A pickle that would create a file when unpickled with code execution allowed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_in_a_checkpoint_is_never_run(tiny_model, tmp_path):
    import torch

    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pt"
    torch.save({"state_dict": _Exploit(marker)}, checkpoint)
    with pytest.raises(ModelUnavailable, match="pickled code is never run"):
        load_encoder(str(tiny_model[0]), str(checkpoint))
    assert not marker.exists()


@pytest.mark.parametrize("name", ["garbage.pt", "garbage.safetensors"])
def test_corrupt_checkpoint_is_reported_as_such(tiny_model, tmp_path, name):
    checkpoint = tmp_path / name
    checkpoint.write_bytes(tiny_model[1].read_bytes()[:100] if name.endswith("tensors") else b"junk")
    with pytest.raises(ModelUnavailable, match="not a readable checkpoint"):
        load_encoder(str(tiny_model[0]), str(checkpoint))


def test_model_identity_makes_local_paths_absolute(tiny_model, monkeypatch):
    monkeypatch.chdir(tiny_model[0].parent)
    assert model_identity(tiny_model[0].name, tiny_model[1].name) == (
        str(tiny_model[0]), str(tiny_model[1]))
    assert model_identity("ViT-B-32", "laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")


def test_a_checkpoint_loads_exactly_without_random_init_and_init_is_restored(tiny_model, tmp_path):
    import torch
    import torch.nn.init as init
    from safetensors.torch import load_file, save_file

    before = {name: getattr(init, name) for name in ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_")}
    loaded = load_encoder(str(tiny_model[0]), str(tiny_model[1]), device="cpu")
    saved = load_file(str(tiny_model[1]))
    assert set(loaded.model.state_dict()) == set(saved)
    assert all(torch.equal(tensor, saved[name]) for name, tensor in loaded.model.state_dict().items())
    assert {name: getattr(init, name) for name in before} == before

    # A checkpoint short of one tensor must fail, never leave that tensor uninitialised.
    partial = dict(saved)
    partial.pop(next(name for name in partial if name.startswith("visual.")))
    short = tmp_path / "short.safetensors"
    save_file(partial, str(short))
    with pytest.raises(ModelUnavailable):
        load_encoder(str(tiny_model[0]), str(short), device="cpu")
    assert {name: getattr(init, name) for name in before} == before
