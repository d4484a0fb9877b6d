"""Photo-like images of mixed sizes and formats: smooth gradients, noise, shapes and thin lines."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Phone, camera and web sizes from 640 px to 4000 px, both orientations.
SIZES = ((640, 480), (800, 1200), (1600, 1200), (1920, 1080), (1024, 1024), (2448, 3264),
         (3000, 2000), (4000, 3000))


def photo(width: int, height: int, seed: int) -> Image.Image:
    """One RGB image with the kinds of structure a photo has at several scales."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.integers(0, 255, 3)
    pixels = (base + 80 * np.sin(xx[..., None] / (width / 40 + rng.integers(1, 30))
                                 + yy[..., None] / (height / 30 + rng.integers(1, 30)))
              + rng.normal(0, 10, (height, width, 3)))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = int(rng.integers(0, width - 10)), int(rng.integers(0, height - 10))
        draw.ellipse([x0, y0, x0 + int(rng.integers(5, width // 3)), y0 + int(rng.integers(5, height // 3))],
                     fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    for _ in range(30):  # fine detail, which a careless downscale aliases
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        draw.line([x0, y0, x0 + int(rng.integers(-width // 4, width // 4)),
                   y0 + int(rng.integers(-height // 4, height // 4))],
                  fill=tuple(int(c) for c in rng.integers(0, 255, 3)), width=max(1, width // 800))
    return image


def encoded(image: Image.Image, image_format: str) -> bytes:
    """The image as a file of this format (JPEG and WebP at quality 90, PNG fast)."""
    buffer = io.BytesIO()
    options = {"compress_level": 1} if image_format == "PNG" else {"quality": 90}
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def write_corpus(folder: Path, count: int, formats: tuple[str, ...] = ("JPEG",), seed: int = 0) -> list[Path]:
    """`count` files cycling through SIZES and formats; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}
    paths = []
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        image_format = formats[i % len(formats)]
        path = folder / f"photo_{i:05d}{suffix[image_format]}"
        path.write_bytes(encoded(photo(width, height, seed + i), image_format))
        paths.append(path)
    return paths
