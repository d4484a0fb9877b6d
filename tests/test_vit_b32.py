"""The full-size ViT-B-32 architecture, from a local checkpoint this test writes itself."""

from __future__ import annotations

import pytest

from conftest import GOOD_IMAGES, run_spyglass, spyglass_env
from spyglass.search.settings import Settings


@pytest.fixture(scope="module")
def vit_b32_checkpoint(tmp_path_factory):
    """Random ViT-B-32 weights saved as a plain .pt state_dict: a stand-in for real weights."""
    import torch

    from spyglass.search.model.encoder import load_encoder

    torch.manual_seed(0)
    encoder = load_encoder("ViT-B-32", None, device="cpu")
    path = tmp_path_factory.mktemp("vit-b-32") / "checkpoint.pt"
    torch.save(encoder.model.state_dict(), path)
    return path


@pytest.mark.slow
def test_vit_b32_from_local_checkpoint_indexes_and_searches(vit_b32_checkpoint, media, tmp_path):
    settings = Settings(runtime="torch", vector_storage="float32", home=tmp_path / "home", model="ViT-B-32", pretrained=str(vit_b32_checkpoint),
                        device="cpu")
    env = spyglass_env(settings)

    indexed = run_spyglass("index", "--no-progress", str(media), env=env, timeout=600)
    assert indexed.returncode == 0, indexed.stderr
    assert f"{len(GOOD_IMAGES)} added" in indexed.stdout

    found = run_spyglass("search", "--image", str(media / "red.jpg"), "-k", "3", "--json",
                         env=env, timeout=600)
    assert found.returncode == 0, found.stderr
    import json

    result = json.loads(found.stdout)
    top = result["results"][0]
    assert (top["path"], top["root"]) == ("red.jpg", str(media))  # the API's shape; the CLI shows roots whole
    status = run_spyglass("status", "--json", env=env)
    assert json.loads(status.stdout)["model"] == {
        "architecture": "ViT-B-32", "pretrained": str(vit_b32_checkpoint), "dim": 512}
