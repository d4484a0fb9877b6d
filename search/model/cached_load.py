"""Load an encoder that ONNX Runtime runs whole from its cache, without building the PyTorch model.

When the probe cached for a checkpoint file chose ONNX Runtime for both towers, the PyTorch model
would be built, its weights read, and then freed unused (search.model.runtimes): about 0.9 s of
a ViT-B-32 start-up on 2 cores, and its fp32 weights' worth of memory at the peak. This path
reads instead what the first load wrote beside the graphs (encoder.json: the preprocess
configuration, the tokenizer's name, the input size and vector width) and the checkpoint's
remembered checksums. Anything missing or different (another precision, a tower on PyTorch, a
graph gone, a rewritten checkpoint) returns None, and the full load runs as before.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

FACTS = "encoder.json"


def write_facts(encoder, place: Path) -> None:
    """What a later load needs to build this encoder without its PyTorch model."""
    config = getattr(getattr(encoder.model, "visual", None), "preprocess_cfg", None)
    if not isinstance(config, dict):
        return  # an architecture without one: later loads take the full path
    facts = {"open_clip_name": encoder.open_clip_name, "preprocess": config, "image_size": encoder.image_size,
             "dim": encoder.dim}
    try:
        part = place / f"{FACTS}.part"
        part.write_text(json.dumps(facts))
        part.replace(place / FACTS)
    except (OSError, TypeError, ValueError):
        pass  # not remembered: the next load is a full one


def _read_facts(place: Path) -> dict | None:
    try:
        facts = json.loads((place / FACTS).read_text())
    except (OSError, ValueError):
        return None
    keys = {"open_clip_name": str, "preprocess": dict, "image_size": int, "dim": int}
    if not isinstance(facts, dict) or not all(isinstance(facts.get(k), t) for k, t in keys.items()):
        return None
    return facts


def cached_encoder(architecture: str, pretrained: str | None, device: str, precision: str, setting: str,
                   folder: Path | None, threads: int):
    """The encoder with both towers on ONNX Runtime, from the cache alone; None when it cannot be."""
    from spyglass.search.model import onnx_export
    from spyglass.search.model.encoder import OpenClipEncoder
    from spyglass.search.model.precision import chosen_precision
    from spyglass.search.model.runtimes import RuntimeReport, onnx_precision_check, read_probe

    if setting == "torch" or folder is None or not pretrained:
        return None
    checksums = onnx_export.memo_checksums(pretrained, folder)
    if checksums is None:
        return None
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return None
    place = folder / onnx_export.cache_key(checksums[0], architecture)
    facts = _read_facts(place)
    probe = read_probe(place, threads, device)
    if facts is None or probe is None or probe.torch_precision != chosen_precision(precision, device):
        return None
    choices = {tower: probe.choice(tower, setting) for tower in onnx_export.TOWERS}
    graphs = {tower: onnx_export.graph_path(place, tower, choice.chosen) for tower, choice in choices.items()}
    if not all(c.chosen.startswith("onnx-") for c in choices.values()) or not all(g.is_file() for g in graphs.values()):
        return None
    preprocess, tokenizer = _transform_and_tokenizer(architecture, facts)
    encoder = OpenClipEncoder(None, preprocess, tokenizer, device, architecture, pretrained,
                              image_size=facts["image_size"], dim=facts["dim"], open_clip_name=facts["open_clip_name"])
    encoder.remember_image_tower(checksums[1])
    for tower, graph in graphs.items():
        encoder.use_onnx(tower, onnx_export.OnnxTower(graph, device, threads))
    encoder.precision_check = onnx_precision_check(choices["image"])
    encoder.runtime = RuntimeReport(choices["image"], choices["text"], True, str(place))
    try:
        (place / "probe.json").touch()  # used now: kept among the newest folders
    except OSError:
        pass
    log.debug("encoder loaded from %s without its PyTorch model", place)
    return encoder


def _transform_and_tokenizer(architecture: str, facts: dict):
    """open_clip's eval transform from the remembered configuration, and its tokenizer."""
    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from spyglass.search.model.weights import register_architecture

    register_architecture(open_clip, architecture)  # a config file's architecture is known by its stem
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in facts["preprocess"].items()}
    return image_transform_v2(PreprocessCfg(**config), is_train=False), open_clip.get_tokenizer(facts["open_clip_name"])
