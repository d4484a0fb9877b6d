"""Decode image bytes into RGB Pillow images, refusing what is corrupt, too large or too costly."""

from __future__ import annotations

import io
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from spyglass.search.errors import ImageRefused, ImageTooLarge, InvalidImage, NotAnImage, OutOfMemory, ServerBusy, SpyglassError

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "HEIF", "AVIF"})
# The file names taken for images, in any case: HEIC/HEIF as phones save them (pillow-heif), AVIF
# (Pillow's own plugin).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif",
                              ".bmp", ".dib", ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif"})
# Camera RAW files: known, not decoded (no well-kept wheel decodes them all); a run counts them in one line.
RAW_EXTENSIONS = frozenset({".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".orf",
                            ".rw2", ".raf", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".erf", ".kdc", ".mrw"})
# EXIF orientations 5-8 swap width and height.
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
# Sides further apart than this are refused: the model's resize of the short side to 224 would
# turn a 1x65,535 strip into 224 x 14.7 M pixels (13 GB). Panoramas stay well inside it.
MAX_ASPECT_RATIO = 32
# What one decoded pixel may cost while decoding: the decoded mode, the RGB copy, an alpha
# flattening pass, with room to spare.
BYTES_PER_PIXEL = 8
# Formats without JPEG's DCT scaling decode whole, then shrink to REDUCE_MARGIN x the model's
# input on the short side before its own resize: Image.reduce by an integer box factor, with
# the geometry kept exact (Pillow's reducing_gap), then bicubic. A bare reduce() shifts the
# image by its partial last box: on the tests' 32 px model that cost cosine 0.989 on a 3000 px
# WebP; this way the photo-like corpus stays above 0.99999 on every image.
REDUCE_MARGIN = 2
_REDUCING_GAP = 2.0


@dataclass
class DecodedImage:
    """An RGB image ready for a model, with the facts the catalog keeps about the file."""

    image: Image.Image
    format: str
    width: int
    height: int


class DecodeGate:
    """Bounds the memory that decodes in this process hold at once; each waits its turn."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self.in_use = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, cost: int, timeout: float | None = None):
        """Hold `cost` bytes of the budget (all of it, at most) for the duration of the block."""
        cost = min(cost, self.budget)  # a decode bigger than the budget runs alone
        with self._changed:
            if not self._changed.wait_for(lambda: self.in_use + cost <= self.budget, timeout):
                raise ServerBusy("too many large images are being decoded right now", "try again shortly")
            self.in_use += cost
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= cost
                self._changed.notify_all()


_gates: dict[int, DecodeGate] = {}
_gates_lock = threading.Lock()


def decode_gate(budget_bytes: int) -> DecodeGate:
    """The process-wide gate for this budget (SPYGLASS_DECODE_MEMORY)."""
    with _gates_lock:
        return _gates.setdefault(budget_bytes, DecodeGate(budget_bytes))


def decode_image(data: bytes, max_pixels: int, draft_size: int | None = None,
                 gate: DecodeGate | None = None, wait: float | None = None,
                 limit_name: str = "SPYGLASS_MAX_IMAGE_PIXELS") -> DecodedImage:
    """Decode bytes to an upright RGB image; GIFs give their first frame.

    draft_size lets JPEG decode at a reduced scale that still covers draft_size on both sides,
    which is several times faster than a full decode followed by a resize; other formats are
    shrunk to REDUCE_MARGIN x draft_size (reduce, then bicubic) before the model's own resize,
    which then has far fewer pixels to filter. The pixel limit
    applies to what is actually decoded, and is checked from the header before any pixel is;
    the gate (when given) bounds how many bytes concurrent decodes hold, waiting at most `wait`
    seconds for room. limit_name is the setting that raises max_pixels, for the message.
    """
    # Our own limits below replace Pillow's global one, which is shared by every thread.
    Image.MAX_IMAGE_PIXELS = None
    register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd files it can still read
            image = Image.open(io.BytesIO(data))
            image_format = image.format
            if image_format not in SUPPORTED_FORMATS:
                raise NotAnImage(f"unsupported image format {image_format}")
            width, height = image.size
            _check_shape(width, height)
            if draft_size and image_format in ("JPEG", "MPO"):
                image.draft("RGB", (draft_size, draft_size))
            decoded_pixels = image.size[0] * image.size[1]
            if decoded_pixels > max_pixels:
                raise ImageTooLarge(
                    f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the "
                    f"{max_pixels / 1e6:.1f} MP limit", f"raise {limit_name} if you trust it")
            with (gate.hold(decoded_pixels * BYTES_PER_PIXEL, wait) if gate else _nothing()):
                image.load()
                image, orientation = _upright(image)
                rgb = _reduced(_to_rgb(image), draft_size if image_format not in ("JPEG", "MPO") else None)
    except SpyglassError:
        raise
    except UnidentifiedImageError:
        raise NotAnImage("not a readable image: unknown format or corrupt data") from None
    except MemoryError:
        # About this moment, not the file: the next run tries it again.
        raise OutOfMemory("the memory ran out while decoding the image") from None
    except Exception as exc:  # noqa: BLE001 - decoders raise anything on hostile input (struct.error, ...)
        raise InvalidImage(f"not a readable image: {_reason(exc)}") from None
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return DecodedImage(image=rgb, format=image_format, width=width, height=height)


_heif_registered = False


def register_heif() -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif), once per process; without the package they stay unreadable."""
    global _heif_registered
    if _heif_registered:
        return
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - a core dependency; a broken install only loses HEIC
        _heif_registered = True
        return
    # Thumbnails and EXIF orientation are ours to apply, as for every other format.
    pillow_heif.register_heif_opener(thumbnails=False)
    _heif_registered = True


def check_pixels(width: int, height: int, max_pixels: int, what: str = "image",
                 limit_name: str = "SPYGLASS_MAX_IMAGE_PIXELS") -> None:
    """ImageTooLarge when width x height is over max_pixels (a video frame obeys the image limit)."""
    if width * height > max_pixels:
        raise ImageTooLarge(f"{what} is {width}x{height} = {width * height / 1e6:.1f} MP, over the "
                            f"{max_pixels / 1e6:.1f} MP limit", f"raise {limit_name} if you trust it")


def _check_shape(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise InvalidImage(f"image is {width}x{height}: it has no pixels")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageRefused(f"image is {width}x{height}: its sides differ by more than "
                           f"{MAX_ASPECT_RATIO} to 1, which cannot be embedded at a sane cost")


def _upright(image: Image.Image) -> tuple[Image.Image, int]:
    """The image turned as its EXIF orientation says; a broken EXIF block leaves it as stored."""
    try:
        orientation = image.getexif().get(0x0112, 1)
        return ImageOps.exif_transpose(image), orientation if orientation in range(1, 9) else 1
    except Exception:  # noqa: BLE001 - EXIF parsers raise anything on a mangled block
        return image, 1


def _reduced(image: Image.Image, cover: int | None) -> Image.Image:
    """Shrunk to REDUCE_MARGIN x cover on the short side, when that saves a resize real work."""
    if not cover or min(image.size) < 2 * REDUCE_MARGIN * cover:
        return image
    width, height = image.size
    short = REDUCE_MARGIN * cover
    # The long side truncated, as torchvision's Resize (open_clip's) does: rounding it instead
    # stretched a 1920x1080 PNG by half a pixel, and cost the tests' model cosine 0.9985.
    size = (int(short * width / height), short) if width >= height else (short, int(short * height / width))
    return image.resize(size, Image.Resampling.BICUBIC, reducing_gap=_REDUCING_GAP)


@contextmanager
def _nothing():
    yield


def _to_rgb(image: Image.Image) -> Image.Image:
    """Flatten transparency onto white, so transparent areas do not turn black."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__
