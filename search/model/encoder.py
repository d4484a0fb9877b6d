"""The dual encoder: open_clip images and texts into one L2-normalised float32 space."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse
from typing import Protocol, Sequence

import numpy as np

from spyglass.search.errors import ModelUnavailable

CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".npz")
# The names open_clip and the Hugging Face hub give a model's weights, best first.
_CHECKPOINT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                     "model.safetensors", "open_clip_pytorch_model.bin", "pytorch_model.bin")
OFFLINE_HINT = ("offline? fetch the weights on a machine that is online, copy them here and set "
                "SPYGLASS_PRETRAINED=/path/to/open_clip_model.safetensors")


class Encoder(Protocol):
    """What the indexer and the query engine need from a model."""

    architecture: str
    pretrained: str | None
    dim: int
    image_size: int
    device: str  # the torch device it runs on: "cpu", "cuda", "cuda:1"
    precision_check: "PrecisionCheck | None"  # noqa: F821 - how its reduced precision compared with fp32
    image_tower: str  # checksum of the image tower's weights: equal ones embed images alike

    def preprocess(self, image) -> "torch.Tensor":  # noqa: F821 - torch is imported lazily
        """Turn one RGB Pillow image into the model's input tensor (safe to call from threads)."""

    def encode_pixels(self, pixels) -> np.ndarray:
        """Embed a batch of preprocessed images: (n, dim) float32, unit length."""

    def encode_images(self, images: Sequence) -> np.ndarray:
        """Embed Pillow images: (n, dim) float32, unit length."""

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts, truncated to the context length: (n, dim) float32, unit length."""


class OpenClipEncoder:
    """An open_clip model with its eval transform and tokenizer."""

    def __init__(self, model, preprocess, tokenizer, device: str, architecture: str,
                 pretrained: str | None):
        self.model = model.eval()
        self._preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.architecture = architecture
        self.pretrained = pretrained
        self.precision = "fp32"
        self.precision_check = None  # a PrecisionCheck once reduce_precision has run
        self._dtype = None  # the model's dtype; None is fp32
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(max(size) if isinstance(size, (tuple, list)) else size)
        self.dim = int(self.encode_texts(["a photo"]).shape[1])

    @functools.cached_property
    def image_tower(self) -> str:
        """The checksum of the image tower: an index built by another model with the same one is valid."""
        return image_tower_checksum(self.model)

    def use_model(self, model, precision: str) -> None:
        """Embed with this copy of the model from now on (the same weights in another precision)."""
        from spyglass.search.model.precision import torch_dtype

        self.model = model.eval()
        self.precision = precision
        self._dtype = None if precision == "fp32" else torch_dtype(precision)

    def preprocess(self, image):
        """Resize, crop and normalise one RGB image the way the model was trained."""
        return self._preprocess(image)

    def encode_pixels(self, pixels) -> np.ndarray:
        """Embed a batch of preprocessed images."""
        import torch

        if self.device.startswith("cuda") and not pixels.is_cuda:
            pixels = pixels.pin_memory()  # so the copy to the GPU runs by DMA, off the CPU's back
        with torch.inference_mode():
            pixels = pixels.to(self.device, dtype=pixels.dtype if self._dtype is None else self._dtype, non_blocking=True)
            features = self.model.encode_image(pixels, normalize=True)
        return _as_float32(features)

    def encode_images(self, images: Sequence) -> np.ndarray:
        """Embed Pillow images."""
        import torch

        return self.encode_pixels(torch.stack([self.preprocess(image) for image in images]))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts; open_clip's tokenizers truncate past the context length."""
        import torch

        _bound_word_cache(self.tokenizer)
        tokens = self.tokenizer(list(texts))
        with torch.inference_mode():
            features = self.model.encode_text(tokens.to(self.device), normalize=True)
        return _as_float32(features)


# open_clip's SimpleTokenizer remembers the BPE of every word it has seen, without a bound: a
# server fed random words would grow it forever.
TOKENIZER_CACHE_WORDS = 50_000


def _bound_word_cache(tokenizer) -> None:
    cache = getattr(tokenizer, "cache", None)
    if isinstance(cache, dict) and len(cache) > TOKENIZER_CACHE_WORDS:
        # Its special tokens start the cache, and must stay in it.
        special = [tokenizer.decoder[i] for i in getattr(tokenizer, "all_special_ids", [])]
        tokenizer.cache = {t: t for t in special}


def _as_float32(features) -> np.ndarray:
    array = features.float().cpu().numpy()
    # Renormalise in float32: half-precision models leave norms slightly off one.
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12), dtype=np.float32)


def resolve_device(device: str) -> str:
    """'auto' means cuda when torch sees a GPU, else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_identity(architecture: str, pretrained: str | None) -> tuple[str, str]:
    """The (architecture, weights) pair recorded with an index; local paths made absolute."""
    arch = _absolute_if_path(architecture)
    weights = "" if pretrained is None else _absolute_if_path(pretrained)
    return arch, weights


def _absolute_if_path(value: str) -> str:
    return str(Path(value).expanduser().resolve()) if _looks_like_path(value) else value


def _looks_like_path(value: str) -> bool:
    return (os.sep in value or value.startswith(("~", "."))
            or value.endswith(CHECKPOINT_SUFFIXES + (".json",)) or os.path.exists(value))


@dataclass
class OpenClipModel:
    """An open_clip model as loaded, with what training and saving it need besides."""

    model: object
    preprocess_train: object
    preprocess_val: object
    tokenizer: object
    name: str  # the name open_clip knows it by (an architecture, or local-dir:/path)
    device: str

    def config(self) -> dict:
        """Its open_clip model config (the `model_cfg` of an open_clip_config.json)."""
        import open_clip

        if self.name.startswith("local-dir:"):
            folder = Path(self.name.removeprefix("local-dir:"))
            return json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]
        config = open_clip.get_model_config(self.name)
        if config is None:
            raise ModelUnavailable(f"no open_clip config is known for {self.name}")
        return config


def load_open_clip(architecture: str, pretrained: str | None, device: str = "auto",
                   cache_dir: str | os.PathLike | None = None) -> OpenClipModel:
    """Build the open_clip model and load its weights; pretrained=None means random weights."""
    import open_clip

    name = _register_architecture(open_clip, architecture)
    checkpoint = _resolve_weights(open_clip, name, pretrained)
    if checkpoint and checkpoint.startswith("local-dir:"):
        name, checkpoint = checkpoint, None
    device = resolve_device(device)
    hub_check = _offline_unless_hub_reachable if _is_tag(checkpoint) else contextlib.nullcontext
    # Weights that are loaded overwrite every parameter (open_clip loads strictly): drawing
    # random ones first only costs time, about a second for ViT-B-32 on a CPU.
    no_init = _random_init_skipped if checkpoint or name.startswith(("local-dir:", "hf-hub:")) else contextlib.nullcontext
    try:
        with hub_check(), no_init():
            model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
                name, pretrained=checkpoint, device=device, weights_only=True,
                cache_dir=str(cache_dir) if cache_dir else None)
        tokenizer = open_clip.get_tokenizer(name)
    except ModelUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - open_clip signals every failure as a bare exception
        raise _explain_load_failure(architecture, pretrained, exc) from None
    return OpenClipModel(model, preprocess_train, preprocess_val, tokenizer, name, device)


def encoder_for(settings, architecture: str | None = None, pretrained: str | None = None) -> OpenClipEncoder:
    """The configured model (or the one named), on the configured device, cache and precision:
    the one way code that holds settings loads an encoder."""
    return load_encoder(architecture or settings.model, settings.pretrained if architecture is None else pretrained,
                        settings.device, settings.model_cache, settings.precision)


def load_encoder(architecture: str, pretrained: str | None, device: str = "auto",
                 cache_dir: str | os.PathLike | None = None, precision: str = "fp32") -> OpenClipEncoder:
    """The model, ready to embed; pretrained None or "" means random weights.

    Random weights are for tests and benchmarks only: their embeddings mean nothing.
    precision other than fp32 (auto, bf16, fp16) runs the reduced precision only if a
    fidelity check against fp32 passes (see search.precision); encoder.precision_check says.
    """
    from spyglass.search.model.precision import chosen_precision, reduce_precision

    pretrained = pretrained or None  # "" is no weights, never Path(""), the current folder
    loaded = load_open_clip(architecture, pretrained, device, cache_dir)
    encoder = OpenClipEncoder(loaded.model, loaded.preprocess_val, loaded.tokenizer, loaded.device,
                              architecture, pretrained)
    if pretrained is not None and chosen_precision(precision, encoder.device) != "fp32":
        encoder.image_tower  # noqa: B018 - of the fp32 weights, the ones the checkpoint holds
    encoder.precision_check = reduce_precision(encoder, precision)
    return encoder


def embedding_dim(architecture: str, pretrained: str | None) -> int:
    """The dimension of a model's vectors, from its config alone (no weights are loaded)."""
    import open_clip

    pretrained = pretrained or None
    name = _register_architecture(open_clip, architecture)
    folder = Path(pretrained).expanduser() if pretrained else None
    if folder is not None and (folder / "open_clip_config.json").is_file():
        return int(json.loads((folder / "open_clip_config.json").read_text())["model_cfg"]["embed_dim"])
    config = open_clip.get_model_config(name)
    if config is None:
        raise ModelUnavailable(f"no open_clip config is known for {architecture}")
    return int(config["embed_dim"])


def image_tower_checksum(model) -> str:
    """SHA-256 of the image tower's weights: equal checksums embed every image identically."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("visual."):
            data = tensor.detach().to("cpu").contiguous()
            digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
            digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


_RANDOM_INITS = ("uniform_", "normal_", "trunc_normal_", "kaiming_uniform_", "kaiming_normal_",
                 "xavier_uniform_", "xavier_normal_", "orthogonal_")


@contextlib.contextmanager
def _random_init_skipped():
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


def _is_tag(checkpoint: str | None) -> bool:
    return bool(checkpoint) and not os.path.exists(checkpoint) and not checkpoint.startswith("local-dir:")


@contextlib.contextmanager
def _offline_unless_hub_reachable(timeout: float = 3.0):
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


def _register_architecture(open_clip, architecture: str) -> str:
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


def _resolve_weights(open_clip, name: str, pretrained: str | None) -> str | None:
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
    if _looks_like_path(pretrained):
        raise ModelUnavailable(f"checkpoint {path} does not exist",
                               "set SPYGLASS_PRETRAINED to an existing open_clip checkpoint file")
    tags = open_clip.list_pretrained_tags_by_model(name)
    if pretrained not in tags:
        raise ModelUnavailable(
            f"{pretrained!r} is not a pretrained tag of {name}",
            f"known tags: {', '.join(tags) or 'none'}; or set SPYGLASS_PRETRAINED to a checkpoint file")
    return pretrained


def _explain_load_failure(architecture: str, pretrained: str | None, exc: Exception) -> ModelUnavailable:
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
