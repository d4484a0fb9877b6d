"""Decode image bytes into RGB Pillow images, refusing what is corrupt or too large."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLarge, InvalidImage, NotAnImage

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"})
# EXIF orientations 5-8 swap width and height.
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}


@dataclass
class DecodedImage:
    """An RGB image ready for a model, with the facts the catalog keeps about the file."""

    image: Image.Image
    format: str
    width: int
    height: int


def decode_image(data: bytes, max_pixels: int, draft_size: int | None = None) -> DecodedImage:
    """Decode bytes to an upright RGB image; GIFs give their first frame.

    draft_size lets JPEG decode at a reduced scale that still covers draft_size on both sides,
    which is several times faster than a full decode followed by a resize.
    """
    # Pillow's own bomb check (an error at twice the limit) follows the configured limit too.
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # We apply our own limit below; Pillow's warning would only repeat it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image is too large to decode safely: {exc}",
                            "raise SPYGLASS_MAX_IMAGE_PIXELS if you trust it") from None
    except UnidentifiedImageError:
        raise NotAnImage("not a readable image: unknown format or corrupt data") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidImage(f"not a readable image: {_reason(exc)}") from None

    image_format = image.format
    if image_format not in SUPPORTED_FORMATS:
        raise NotAnImage(f"unsupported image format {image_format}")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height / 1e6:.0f} MP, over the "
            f"{max_pixels / 1e6:.0f} MP limit", "raise SPYGLASS_MAX_IMAGE_PIXELS if you trust it")
    try:
        orientation = image.getexif().get(0x0112, 1)
        if draft_size and image_format == "JPEG":
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        image = ImageOps.exif_transpose(image)
        rgb = _to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image is too large to decode safely: {exc}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise InvalidImage(f"not a readable image: {_reason(exc)}") from None
    if orientation in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return DecodedImage(image=rgb, format=image_format, width=width, height=height)


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
    return text.splitlines()[0] if text else type(exc).__name__
