"""The dual encoder: open_clip images and texts into one L2-normalised float32 space."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from spyglass.search.errors import ModelUnavailable
from spyglass.search.model.weights import (
    explain_load_failure, is_tag, looks_like_path, offline_unless_hub_reachable, random_init_skipped,
    register_architecture, resolve_weights)

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
                 pretrained: str | None, image_size: int | None = None, dim: int | None = None,
                 open_clip_name: str | None = None):
        """model None (with image_size and dim given) is an encoder whose towers ONNX Runtime runs
        (search.model.cached_load); open_clip_name is the name open_clip knows it by (its tokenizer's)."""
        self.model = model.eval() if model is not None else None
        self._preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.architecture = architecture
        self.pretrained = pretrained
        self.open_clip_name = open_clip_name or architecture
        self.precision = "fp32"
        self.precision_check = None  # a PrecisionCheck once reduce_precision has run
        self._dtype = None  # the model's dtype; None is fp32
        self._onnx = {}  # tower -> OnnxTower, for the towers ONNX Runtime runs (search.model.runtimes)
        self.runtime = None  # a RuntimeReport once apply_runtime has run
        size = image_size if model is None else getattr(model.visual, "image_size", 224)
        self.image_size = int(max(size) if isinstance(size, (tuple, list)) else size)
        self.dim = int(dim if model is None else self.encode_texts(["a photo"]).shape[1])

    @functools.cached_property
    def image_tower(self) -> str:
        """The checksum of the image tower: an index built by another model with the same one is valid."""
        return image_tower_checksum(self.model)

    def remember_image_tower(self, checksum: str) -> None:
        """Take image_tower from a memo of these weights (see onnx_export.remembered_checksums)."""
        self.__dict__["image_tower"] = checksum  # what functools.cached_property reads first

    def use_model(self, model, precision: str) -> None:
        """Embed with this copy of the model from now on (the same weights in another precision)."""
        from spyglass.search.model.precision import torch_dtype

        self.model = model.eval()
        self.precision = precision
        self._dtype = None if precision == "fp32" else torch_dtype(precision)

    def use_onnx(self, tower: str, session) -> None:
        """Run a tower ("image" or "text") in this ONNX Runtime session from now on."""
        self._onnx[tower] = session

    def release_torch_model(self) -> None:
        """Free the PyTorch weights once ONNX Runtime runs both towers (the image tower's checksum stays)."""
        self.image_tower  # noqa: B018 - computed from the weights before they go
        self.model = None

    def preprocess(self, image):
        """Resize, crop and normalise one RGB image the way the model was trained."""
        return self._preprocess(image)

    def encode_pixels(self, pixels) -> np.ndarray:
        """Embed a batch of preprocessed images."""
        import torch

        if "image" in self._onnx:
            return self._onnx["image"].run(pixels.detach().cpu().float().numpy())
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
        _bound_word_cache(self.tokenizer)
        return self.encode_tokens(self.tokenizer(list(texts)))

    def encode_tokens(self, tokens) -> np.ndarray:
        """Embed a batch of tokenised texts."""
        import torch

        if "text" in self._onnx:
            return self._onnx["text"].run(tokens.cpu().numpy())
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
    return str(Path(value).expanduser().resolve()) if looks_like_path(value) else value


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

    name = register_architecture(open_clip, architecture)
    checkpoint = resolve_weights(open_clip, name, pretrained)
    if checkpoint and checkpoint.startswith("local-dir:"):
        name, checkpoint = checkpoint, None
    device = resolve_device(device)
    hub_check = offline_unless_hub_reachable if is_tag(checkpoint) else contextlib.nullcontext
    # Weights that are loaded overwrite every parameter (open_clip loads strictly): drawing
    # random ones first only costs time, about a second for ViT-B-32 on a CPU.
    no_init = random_init_skipped if checkpoint or name.startswith(("local-dir:", "hf-hub:")) else contextlib.nullcontext
    try:
        with hub_check(), no_init():
            model, preprocess_train, preprocess_val = open_clip.create_model_and_transforms(
                name, pretrained=checkpoint, device=device, weights_only=True,
                cache_dir=str(cache_dir) if cache_dir else None)
        tokenizer = open_clip.get_tokenizer(name)
    except ModelUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - open_clip signals every failure as a bare exception
        raise explain_load_failure(architecture, pretrained, exc) from None
    return OpenClipModel(model, preprocess_train, preprocess_val, tokenizer, name, device)


def encoder_for(settings, architecture: str | None = None, pretrained: str | None = None) -> OpenClipEncoder:
    """The configured model (or the one named), on the configured device, cache, precision and
    runtime: the one way code that holds settings loads an encoder."""
    return load_encoder(architecture or settings.model, settings.pretrained if architecture is None else pretrained,
                        settings.device, settings.model_cache, settings.precision, settings.runtime,
                        settings.home / "runtimes")


def load_encoder(architecture: str, pretrained: str | None, device: str = "auto",
                 cache_dir: str | os.PathLike | None = None, precision: str = "fp32",
                 runtime: str = "torch", runtime_dir: Path | None = None) -> OpenClipEncoder:
    """The model, ready to embed; pretrained None or "" means random weights.

    Random weights are for tests and benchmarks only: their embeddings mean nothing.
    precision other than fp32 (auto, bf16, fp16) runs the reduced precision only if a
    fidelity check against fp32 passes (see search.precision); encoder.precision_check says.
    runtime other than torch may move a tower to ONNX Runtime (search.model.runtimes), its graphs
    and probe cached under runtime_dir; encoder.runtime says which and why.
    """
    import torch

    from spyglass.search.model.cached_load import cached_encoder
    from spyglass.search.model.precision import chosen_precision
    from spyglass.search.model.runtimes import apply_runtime

    pretrained = pretrained or None  # "" is no weights, never Path(""), the current folder
    cached = cached_encoder(architecture, pretrained, resolve_device(device), precision, runtime, runtime_dir,
                            torch.get_num_threads())
    if cached is not None:
        return cached
    loaded = load_open_clip(architecture, pretrained, device, cache_dir)
    encoder = OpenClipEncoder(loaded.model, loaded.preprocess_val, loaded.tokenizer, loaded.device,
                              architecture, pretrained, open_clip_name=loaded.name)
    if pretrained is not None and chosen_precision(precision, encoder.device) != "fp32":
        encoder.image_tower  # noqa: B018 - of the fp32 weights, the ones the checkpoint holds
    encoder.runtime = apply_runtime(encoder, runtime, precision, runtime_dir, torch.get_num_threads())
    return encoder


def embedding_dim(architecture: str, pretrained: str | None) -> int:
    """The dimension of a model's vectors, from its config alone (no weights are loaded)."""
    import open_clip

    pretrained = pretrained or None
    name = register_architecture(open_clip, architecture)
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
