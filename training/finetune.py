"""`spyglass finetune`: contrastive training of the dual encoder on a user's captioned images.

open_clip's own parts do the work: its model and configs, `ClipLoss`, its tower locking and
open_clip_train's cosine schedule with warm-up. Around them:

- a held-out split by image (seeded), on which the base model and every epoch are measured
  with `spyglass eval`'s metrics; early stopping keeps the best epoch;
- batches in which no caption (and no image) appears twice, so that identical captions are
  never each other's negatives;
- the learnable temperature clamped to [0, ln 100], as open_clip does;
- fp32 on the CPU (bf16 autocast is slower than fp32 there), bf16 autocast on CUDA;
- an optional weight-space blend with the base model (WiSE-FT) so a fine-tune does not forget;
- an output that is no better than the base on the held-out split is refused unless forced.

Modes: lock-image (LiT: only the text side trains, so every image vector of an index built
with the base model stays valid), unlock-image (everything, or the last N image blocks), and
from-scratch (random weights from an architecture config).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from spyglass.search.display import printable
from spyglass.search.model.encoder import image_tower_checksum, load_open_clip
from spyglass.search.errors import ConfigError
from spyglass.search.media.images import decode_gate, decode_image
from spyglass.search.media.files import read_regular_file

from .datasets import Dataset, Example
from .metrics import headline, retrieval_metrics

MODES = ("lock-image", "unlock-image", "from-scratch")
# Learning rates that work without tuning: a fine-tune nudges pretrained weights; a run from
# random weights needs far larger steps.
DEFAULT_LR = {"lock-image": 1e-5, "unlock-image": 5e-6, "from-scratch": 1e-3}
DEFAULT_EPOCHS = {"lock-image": 10, "unlock-image": 5, "from-scratch": 60}
WARMUP_FRACTION = 0.1
MAX_LOGIT_SCALE = math.log(100)  # open_clip's clamp on the learnable temperature
OUTPUT_WEIGHTS = "open_clip_model.safetensors"


@dataclass
class FinetuneOptions:
    """Everything `spyglass finetune` takes; None means the mode's default."""

    out: Path
    mode: str = "lock-image"
    epochs: int | None = None
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 0.1
    val_fraction: float = 0.1
    seed: int = 0
    patience: int = 5
    unlocked_blocks: int = 0  # with unlock-image: 0 trains all of the image tower, N its last N blocks
    blend: float = 1.0  # 1 keeps the fine-tuned weights as they are; 0.5 is WiSE-FT's halfway point
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r}", f"choose one of {', '.join(MODES)}")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("--val-fraction must be between 0 and 1")
        if not 0 <= self.blend <= 1:
            raise ConfigError("--blend must be between 0 and 1")
        if self.unlocked_blocks and self.mode != "unlock-image":
            raise ConfigError("--unlocked-blocks goes with --unlock-image")
        if self.mode == "from-scratch" and self.blend != 1:
            raise ConfigError("--blend has nothing to blend with in a run from scratch")


@dataclass
class FinetuneResult:
    """What a run did: the metrics before, after and per epoch, and where the model went."""

    out: Path
    before: dict
    after: dict
    epochs: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    train_images: int = 0
    val_images: int = 0
    seconds: float = 0.0
    image_tower: str = ""


def split_by_image(examples: list[Example], val_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded held-out split by image: no image's captions are on both sides."""
    if len(examples) < 4:
        raise ConfigError(f"{len(examples)} usable images are too few to train and hold some out",
                          "give at least a few dozen captioned images")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    held = max(2, round(len(examples) * val_fraction))
    return [examples[i] for i in order[held:]], [examples[i] for i in order[:held]]


def unique_batches(keys: list[tuple[str, str]], batch_size: int) -> list[list[int]]:
    """Batches of indices in which no (image, caption) key part repeats; order kept where it can be.

    A caption (or image) seen twice in one batch would be its own negative, and the contrastive
    loss would push apart what is the same.
    """
    batches, pending = [], list(range(len(keys)))
    while pending:
        batch, images, captions, later = [], set(), set(), []
        for index in pending:
            image, caption = keys[index]
            if len(batch) < batch_size and image not in images and caption not in captions:
                batch.append(index)
                images.add(image)
                captions.add(caption)
            else:
                later.append(index)
        batches.append(batch)
        pending = later
    return batches


class _Images:
    """Images decoded once, kept small: a little larger than the model's input, for its random crops."""

    def __init__(self, examples: list[Example], image_size: int, settings, progress: bool):
        self.pictures, self.hashes, self.examples, self.skipped = [], [], [], []
        gate = decode_gate(settings.decode_memory)
        keep = int(image_size * 1.15)
        for example in tqdm(examples, desc="Reading images", unit="img", file=sys.stderr,
                            disable=not progress, leave=False):
            try:
                data = read_regular_file(example.image, settings.max_file_bytes)
                picture = decode_image(data, settings.max_image_pixels, draft_size=keep, gate=gate).image
            except Exception as exc:  # noqa: BLE001 - a bad image is skipped and counted, whatever it is
                self.skipped.append(f"{printable(example.image)}: {exc}")
                continue
            scale = keep / min(picture.size)
            if scale < 1:
                picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))))
            picture.load()
            self.pictures.append(picture)
            self.hashes.append(hashlib.blake2b(data, digest_size=16).hexdigest())
            self.examples.append(example)


def finetune(dataset: Dataset, settings, options: FinetuneOptions, echo=print) -> FinetuneResult:
    """Train, measure, blend, and write a model folder that SPYGLASS_PRETRAINED can load."""
    import torch
    from open_clip.loss import ClipLoss
    from open_clip_train.scheduler import cosine_lr

    if dataset.kind != "captions":
        raise ConfigError("finetune needs captioned images (a CSV/TSV, or images with .txt captions)",
                          "class folders can be measured with `spyglass eval`, not trained on")
    started = time.monotonic()
    _check_output(options.out, options.force)
    torch.manual_seed(options.seed)
    random.seed(options.seed)
    pretrained = None if options.mode == "from-scratch" else settings.pretrained
    loaded = load_open_clip(settings.model, pretrained, settings.device, settings.model_cache)
    model, device = loaded.model, loaded.device
    image_size = int(max(np.atleast_1d(getattr(model.visual, "image_size", 224))))

    train_set, val_set = split_by_image(dataset.examples, options.val_fraction, options.seed)
    train = _Images(train_set, image_size, settings, options.progress)
    val = _Images(val_set, image_size, settings, options.progress)
    for problem in train.skipped + val.skipped:
        echo(f"skipping {problem}")
    if len(train.examples) < 2 or len(val.examples) < 2:
        raise ConfigError("too few images could be read to train and hold some out")
    echo(f"Training on {len(train.examples):,} images, holding out {len(val.examples):,} "
         f"({options.mode}, seed {options.seed}).")

    val_pixels = torch.stack([loaded.preprocess_val(p) for p in val.pictures])
    val_captions = [c for e in val.examples for c in e.captions]
    val_owner = np.array([i for i, e in enumerate(val.examples) for _ in e.captions])

    def measure() -> dict:
        model.eval()
        with torch.inference_mode():
            images = _encode_images(model, val_pixels, device, options.batch_size)
            texts = torch.cat([model.encode_text(loaded.tokenizer(val_captions[i:i + 256]).to(device), normalize=True)
                               for i in range(0, len(val_captions), 256)]).float().cpu().numpy()
        return retrieval_metrics(images, texts, val_owner)

    base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base_tower = image_tower_checksum(model)
    before = measure()
    echo(f"before: {_short(before)}")

    _freeze(model, options)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if not _no_decay(n, p)]
    no_decay = [p for n, p in trainable if _no_decay(n, p)]
    epochs = options.epochs or DEFAULT_EPOCHS[options.mode]
    lr = options.lr or DEFAULT_LR[options.mode]
    optimizer = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0},
                                   {"params": decay, "weight_decay": options.weight_decay}], lr=lr)
    steps_per_epoch = max(1, math.ceil(len(train.examples) / options.batch_size))
    total_steps = steps_per_epoch * epochs
    schedule = cosine_lr(optimizer, lr, max(1, int(WARMUP_FRACTION * total_steps)), total_steps)
    loss_fn = ClipLoss()
    # With the image tower locked its features never change: compute them once (the LiT recipe).
    locked_features = None
    if options.mode == "lock-image":
        model.eval()
        with torch.inference_mode():
            locked_features = torch.from_numpy(_encode_images(
                model, torch.stack([loaded.preprocess_val(p) for p in train.pictures]), device, options.batch_size))

    history, best, best_epoch, best_state, stale, step = [], before, 0, None, 0, 0
    bar = tqdm(total=total_steps, desc="Training", unit="step", file=sys.stderr, disable=not options.progress,
               dynamic_ncols=True)
    rng = random.Random(options.seed)
    with bar:
        for epoch in range(1, epochs + 1):
            model.train()
            if options.mode == "lock-image":
                model.visual.eval()
            order = list(range(len(train.examples)))
            rng.shuffle(order)
            picks = [(i, rng.choice(train.examples[i].captions)) for i in order]
            keys = [(train.hashes[i], caption.lower()) for i, caption in picks]
            losses = []
            for batch in unique_batches(keys, options.batch_size):
                if len(batch) < max(2, options.batch_size // 2):
                    continue  # a small leftover batch has too few negatives to teach anything (drop_last)
                schedule(step)
                step += 1
                captions = [picks[j][1] for j in batch]
                texts = loaded.tokenizer(captions).to(device)
                with _autocast(device):
                    if locked_features is not None:
                        image_features = locked_features[[picks[j][0] for j in batch]].to(device)
                    else:
                        pixels = torch.stack([loaded.preprocess_train(train.pictures[picks[j][0]]) for j in batch])
                        image_features = model.encode_image(pixels.to(device), normalize=True)
                    text_features = model.encode_text(texts, normalize=True)
                    loss = loss_fn(image_features.float(), text_features.float(), model.logit_scale.exp())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", best=f"{headline(best):.3f}")
            metrics = measure()
            history.append({"epoch": epoch, "loss": float(np.mean(losses)) if losses else None, **metrics})
            if headline(metrics) > headline(best):
                best, best_epoch, stale = metrics, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
            bar.write(f"epoch {epoch}: loss {history[-1]['loss'] or 0:.4f}, {_short(metrics)}", file=sys.stderr)
            if stale >= options.patience:
                bar.write(f"no better for {options.patience} epochs: stopping early", file=sys.stderr)
                break

    # The best epoch, or the last when none beat the base (written only if forced).
    tuned = best_state if best_state is not None else {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(_blended(base_state, tuned, options.blend))
    after = measure()
    echo(f"after{'' if options.blend == 1 else f' (blended {options.blend:g} with the base)'}: {_short(after)}")
    if (best_state is None or headline(after) < headline(before)) and not options.force:
        raise ConfigError(f"the trained model does not retrieve better than the base on the held-out images "
                          f"(text-to-image recall {headline(after):.3f} against {headline(before):.3f}, the mean of "
                          "R@1, R@5 and R@10); nothing was written",
                          "train longer, change --lr, or pass --force to write it anyway")
    tower = image_tower_checksum(model)
    if options.mode == "lock-image":
        assert tower == base_tower, "the locked image tower changed"
    result = FinetuneResult(options.out, before, after, history, best_epoch, len(train.examples), len(val.examples),
                            time.monotonic() - started, tower)
    _write(options, loaded, model, settings, result, dataset)
    return result


def _freeze(model, options: FinetuneOptions) -> None:
    if options.mode == "lock-image":
        model.lock_image_tower(unlocked_groups=0, freeze_bn_stats=True)
    elif options.mode == "unlock-image" and options.unlocked_blocks:
        # open_clip counts the final norm and projection as one more group after the blocks.
        model.lock_image_tower(unlocked_groups=options.unlocked_blocks + 1, freeze_bn_stats=True)


def _no_decay(name: str, parameter) -> bool:
    # open_clip's rule: gains, biases and the temperature are not decayed.
    return parameter.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name


def _encode_images(model, pixels, device: str, batch: int) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return torch.cat([model.encode_image(pixels[i:i + batch].to(device), normalize=True)
                          for i in range(0, len(pixels), batch)]).float().cpu().numpy()


def _autocast(device: str):
    import contextlib

    import torch

    # On the CPU, bf16 autocast is slower than plain fp32; on CUDA it is the fast path.
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _blended(base: dict, tuned: dict, alpha: float) -> dict:
    """WiSE-FT: (1 - alpha) * base + alpha * tuned, for every floating-point weight."""
    if alpha == 1:
        return tuned
    return {k: ((1 - alpha) * base[k] + alpha * v).to(v.dtype) if v.is_floating_point() else v
            for k, v in tuned.items()}


def _short(metrics: dict) -> str:
    return (f"text-to-image R@1 {metrics['text_to_image_R@1']:.3f} R@5 {metrics['text_to_image_R@5']:.3f} "
            f"R@10 {metrics['text_to_image_R@10']:.3f}, image-to-text R@5 {metrics['image_to_text_R@5']:.3f}")


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()) and not (out / "spyglass.json").is_file() and not force:
        raise ConfigError(f"{printable(str(out))} exists and is not an earlier finetune's output",
                          "give a new folder, or --force to replace it")


def _write(options: FinetuneOptions, loaded, model, settings, result: FinetuneResult, dataset: Dataset) -> None:
    """The output folder, written beside its final place and renamed in: never half a model."""
    from open_clip import get_model_preprocess_cfg
    from safetensors.torch import save_file

    out = options.out.expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(temp / OUTPUT_WEIGHTS))
        preprocess = {k: list(v) if isinstance(v, tuple) else v for k, v in get_model_preprocess_cfg(model).items()}
        (temp / "open_clip_config.json").write_text(json.dumps(
            {"model_cfg": loaded.config(), "preprocess_cfg": preprocess}, indent=2))
        (temp / "metrics.json").write_text(json.dumps({
            "before": result.before, "after": result.after, "epochs": result.epochs, "best_epoch": result.best_epoch,
            "train_images": result.train_images, "val_images": result.val_images, "data": dataset.source,
            "skipped": len(dataset.skipped), "seconds": round(result.seconds, 1)}, indent=2))
        (temp / "spyglass.json").write_text(json.dumps({
            "mode": options.mode, "base_model": settings.model,
            "base_weights": None if options.mode == "from-scratch" else settings.pretrained,
            "image_tower_sha256": result.image_tower, "blend": options.blend, "seed": options.seed}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(temp, out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
