"""A region of an indexed image as a query: the person drew a box in the viewer."""

from __future__ import annotations

import numpy as np

from spyglass.search.errors import BadQuery
from spyglass.search.media.images import decode_gate, decode_image

# The smallest side a box may have, as a share of the image: below it a crop is a few pixels.
MIN_CROP = 0.02


def check_crop(crop) -> tuple[float, float, float, float]:
    """(x, y, width, height) as shares of the upright image, inside it."""
    try:
        x, y, width, height = (float(value) for value in crop)
    except (TypeError, ValueError):
        raise BadQuery("crop must be four numbers: x, y, width, height, as shares of the image (0 to 1)") from None
    if not (0 <= x < 1 and 0 <= y < 1 and MIN_CROP <= width <= 1 and MIN_CROP <= height <= 1
            and x + width <= 1.0001 and y + height <= 1.0001):
        raise BadQuery(f"crop must lie inside the image (x + width and y + height at most 1), each side at least "
                       f"{MIN_CROP:g} of it")
    return x, y, width, height


def crop_vector(engine, snapshot, item_id: int, crop: tuple[float, float, float, float]) -> np.ndarray:
    """The embedding of a box of an indexed image, read from its file under the media rules."""
    item = engine.item(item_id)
    if item.kind != "image":
        raise BadQuery("crop works on images; search a video by its thumbnail's image instead")
    handle, _ = engine.media().open_indexed(item.path, item.size, item.mtime_ns, item.format)
    with handle:
        data = handle.read(engine.settings.max_file_bytes + 1)
    encoder = engine.encoder(snapshot)
    x, y, width, height = crop
    # Decode big enough that the box still covers the model's input.
    cover = int(encoder.image_size / max(min(width, height), MIN_CROP))
    image = decode_image(data, engine.settings.max_image_pixels, draft_size=cover,
                         gate=decode_gate(engine.settings.decode_memory)).image
    w, h = image.size
    box = (int(x * w), int(y * h), max(int(x * w) + 1, round((x + width) * w)), max(int(y * h) + 1, round((y + height) * h)))
    return encoder.encode_images([image.crop(box)])[0]
