"""Run the encoder in bf16 or fp16 where the hardware has it, guarded by a fidelity check."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

# Below this cosine between a vector and its fp32 twin, the reduced precision is refused: at
# 0.999 a query's ranking of two images 0.03 apart in score (a close call) can flip, but
# rarely; in our measurements bf16 stays above 0.9999 for ViT models.
MIN_COSINE = 0.999
CALIBRATION_TEXTS = ("a photo of a dog", "a red bicycle leaning on a wall", "a diagram",
                     "mountains at sunset", "two people talking in a kitchen", "text on a white page")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrecisionCheck:
    """What the fidelity check chose and measured: min_cosine is None for plain fp32."""

    precision: str
    min_cosine: float | None = None
    wanted: str = "fp32"  # what was asked for or chosen by auto, before any fallback

    @property
    def fell_back(self) -> bool:
        """Whether the wanted precision failed the check and fp32 runs instead."""
        return self.wanted != self.precision

    def describe(self) -> str:
        """'bf16 (min cosine 0.99994 against fp32)', 'fp32', or the fallback and why."""
        if self.fell_back:
            return (f"fp32 ({self.wanted} fell back: min cosine {self.min_cosine:.5f} against fp32 "
                    f"is below {MIN_COSINE})")
        if self.min_cosine is None:
            return self.precision
        return f"{self.precision} (min cosine {self.min_cosine:.5f} against fp32)"


@dataclass(frozen=True)
class PrecisionMix:
    """The precisions of an index's vectors and the lowest cosine to fp32 measured for them."""

    names: frozenset[str] = frozenset()
    min_cosine: float | None = None

    @classmethod
    def of(cls, names: str | None, min_cosine: float | None) -> "PrecisionMix":
        """From the generation's columns."""
        return cls(frozenset(n for n in (names or "").split(",") if n), min_cosine)

    def with_check(self, check: PrecisionCheck) -> "PrecisionMix":
        """Joined by vectors embedded under this check."""
        cosines = [c for c in (self.min_cosine, check.min_cosine if not check.fell_back else None)
                   if c is not None]
        return PrecisionMix(self.names | {check.precision}, min(cosines) if cosines else None)

    def columns(self) -> dict:
        """The generation's columns."""
        return {"precisions": ",".join(sorted(self.names)) or None, "precision_cosine": self.min_cosine}


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AMX tiles or AVX512-BF16)."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def chosen_precision(setting: str, device: str) -> str:
    """The precision `auto` means on this device: fp16 on CUDA, bf16 on a bf16 CPU, else fp32."""
    if setting != "auto":
        return setting
    if device.startswith("cuda"):
        return "fp16"
    if device == "cpu" and native_bf16():
        return "bf16"
    return "fp32"


def torch_dtype(precision: str):
    """The torch dtype of a precision name."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def calibration_images(count: int = 6, size: int = 256) -> list:
    """Photo-like images (gradients, noise, shapes, a flat area), the same at every call."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(20261202)
    images = []
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(count):
        base = rng.integers(0, 255, 3)
        pixels = (base + 70 * np.sin(xx[..., None] / (9 + 4 * i) + yy[..., None] / (13 + i))
                  + rng.normal(0, 6 + 3 * i, (size, size, 3)))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        for _ in range(3 + i):
            x0, y0 = (int(v) for v in rng.integers(0, size - 40, 2))
            x1, y1 = x0 + int(rng.integers(16, size // 2)), y0 + int(rng.integers(16, size // 2))
            draw.rectangle([x0, y0, x1, y1], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        images.append(image)
    return images


def reduce_precision(encoder, setting: str) -> PrecisionCheck:
    """Switch the encoder to the precision the setting asks for, if its vectors stay true to fp32.

    Both towers embed a fixed calibration batch in fp32 and in the reduced precision; when every
    cosine is at least MIN_COSINE the reduced copy replaces the fp32 model, else fp32 stays
    (and the check says so). Costs a second or two on a CPU (the fp32 pass is the first call),
    and holds both copies of the weights only while it runs.
    """
    wanted = chosen_precision(setting, encoder.device)
    if wanted == "fp32":
        return PrecisionCheck("fp32", None, "fp32")
    import torch

    images = calibration_images()
    texts = CALIBRATION_TEXTS
    pixels = torch.stack([encoder.preprocess(image) for image in images])
    reference = np.concatenate([encoder.encode_pixels(pixels), encoder.encode_texts(texts)])
    model = encoder.model
    # The fp32 tensors, kept by reference (no copy): converting the module gives it new ones.
    fp32_state = model.state_dict()
    try:
        encoder.use_model(model.to(torch_dtype(wanted)), wanted)
        reduced = np.concatenate([encoder.encode_pixels(pixels), encoder.encode_texts(texts)])
    except (RuntimeError, NotImplementedError) as exc:  # an op this device lacks in that dtype
        log.warning("precision %s does not run on %s (%s): using fp32", wanted, encoder.device, exc)
        _restore_fp32(encoder, fp32_state)
        return PrecisionCheck("fp32", float("nan"), wanted)
    cosines = np.sum(reference * reduced, axis=1)
    worst = float(np.min(cosines)) if np.all(np.isfinite(cosines)) else float("nan")
    if not worst >= MIN_COSINE:  # NaN (an overflow in fp16) fails too
        _restore_fp32(encoder, fp32_state)
        check = PrecisionCheck("fp32", worst, wanted)
        log.warning("precision check: %s", check.describe())
        return check
    return PrecisionCheck(wanted, worst, wanted)


def _restore_fp32(encoder, fp32_state: dict) -> None:
    """Back to the exact fp32 weights (a round trip through bf16 would have rounded them)."""
    import torch

    model = encoder.model.to(torch.float32)
    model.load_state_dict(fp32_state)
    encoder.use_model(model, "fp32")
