"""Finding an open_clip model's weights (tags, files, folders, the hub) and saying why they failed to load."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from spyglass.search.errors import ModelUnavailable

CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npz")
# The names open_clip and the Hugging Face hub give a model's weights, best first.
_CHECKPOINT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                     "model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")
OFFLINE_HINT = ("offline? fetch the weights on a machine that is online, copy them here and set "
                "SPYGLASS_PRETRAINED=/path/to/open_clip_model.safetensors")


def looks_like_path(value: str) -> bool:
    return (os.sep in value or value.startswith(("~", "."))
            or value.endswith(CHECKPOINT_SUFFIXES + (".json",)) or os.path.exists(value))


_RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "xavier_uniform_", "xavier_normal_", "orthogonal_")


@contextlib.contextmanager
def random_init_skipped():
    """torch.nn.init's random initialisers do nothing inside the block (the weights are loaded next)."""
    import torch.nn.init as init

    saved = {name: getattr(init, name) for name in _RANDOM_INITS if hasattr(init, name)}
    for name in saved:
        setattr(init, name, lambda tensor, *args, **kwargs: tensor)
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(init, name, function)


def is_tag(checkpoint: str | None) -> bool:
    return bool(checkpoint) and not os.path.exists(checkpoint) and not checkpoint.startswith("local-dir:")


@contextlib.contextmanager
def offline_unless_hub_reachable(timeout: float = 3.0):
    """Use only the local weights cache when the hub cannot be reached.

    Without this, huggingface_hub retries each file for about a minute before it gives up.
    """
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    if constants.HF_HUB_OFFLINE:
        yield
        return
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        reachable = True
    except OSError:
        reachable = False
    saved, constants.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE, not reachable
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def register_architecture(open_clip, architecture: str) -> str:
    """Accept a built-in name, an hf-hub:/local-dir: name, or a path to a model-config JSON."""
    if architecture.startswith(("hf-hub:", "local-dir:")):
        return architecture
    if architecture.endswith(".json"):
        path = Path(architecture).expanduser()
        if not path.is_file():
            raise ModelUnavailable(f"model config {path} does not exist",
                                   "set SPYGLASS_MODEL to an open_clip architecture name or config file")
        open_clip.add_model_config(str(path))
        return path.stem
    if architecture not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if architecture.lower()[:5] in m.lower()][:8]
        raise ModelUnavailable(
            f"{architecture!r} is not an open_clip architecture",
            "set SPYGLASS_MODEL to one of open_clip.list_models()"
            + (f", e.g. {', '.join(close)}" if close else ", e.g. ViT-B-32"))
    return architecture


def resolve_weights(open_clip, name: str, pretrained: str | None) -> str | None:
    """A checkpoint file, a local-dir: model name, or an open_clip pretrained tag."""
    if pretrained is None or name.startswith(("hf-hub:", "local-dir:")):
        return None
    path = Path(pretrained).expanduser()
    if path.is_dir():
        if (path / "open_clip_config.json").is_file():
            return f"local-dir:{path.resolve()}"
        found = [path / n for n in _CHECKPOINT_NAMES if (path / n).is_file()]
        found += sorted(p for p in path.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
        if not found:
            raise ModelUnavailable(f"no checkpoint file in folder {path}",
                                   f"expected one of {', '.join(_CHECKPOINT_NAMES)}")
        return str(found[0])
    if path.is_file():
        return str(path)
    if looks_like_path(pretrained):
        raise ModelUnavailable(f"checkpoint {path} does not exist",
                               "set SPYGLASS_PRETRAINED to an existing open_clip checkpoint file")
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise ModelUnavailable(
            f"{pretrained!r} is not a pretrained tag of {name}",
            f"known tags: {', '.join(tags) or 'none'}; or set SPYGLASS_PRETRAINED to a checkpoint file")
    return pretrained


def explain_load_failure(architecture: str, pretrained: str | None, exc: Exception) -> ModelUnavailable:
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    if any(sign in text for sign in ("Error(s) in loading state_dict", "size mismatch", "width changed")):
        return ModelUnavailable(
            f"checkpoint {pretrained} does not fit architecture {architecture}: {first[:300]}",
            "set SPYGLASS_MODEL to the architecture the checkpoint was trained as")
    if "Unsupported global" in text:
        return ModelUnavailable(
            f"refused to load {pretrained}: it is not a plain weights file and pickled code is never run",
            "convert the checkpoint to .safetensors or a plain state_dict")
    if pretrained and os.path.isfile(os.path.expanduser(pretrained)):
        return ModelUnavailable(f"checkpoint {pretrained} is not a readable checkpoint file "
                                "(truncated or corrupt?)", "download it again")
    if "download" in text.lower() or "connect" in text.lower() or "offline" in text.lower():
        return ModelUnavailable(
            f"could not download the {pretrained!r} weights for {architecture}, and they are not "
            "in the local weights cache",
            OFFLINE_HINT)
    return ModelUnavailable(f"could not load model {architecture} with weights {pretrained}: "
                            f"{first[:300]}", "check SPYGLASS_MODEL and SPYGLASS_PRETRAINED")
