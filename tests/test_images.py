"""Decoding: every supported format, EXIF orientation, transparency, corrupt data, bombs."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from conftest import GOOD_IMAGES, MEDIA
from spyglass.search.errors import ImageTooLarge, InvalidImage
from spyglass.search.media.images import decode_image

LIMIT = 89_478_485


@pytest.mark.parametrize("name", GOOD_IMAGES)
def test_every_committed_image_decodes_to_rgb(name):
    decoded = decode_image((MEDIA / name).read_bytes(), LIMIT)
    assert decoded.image.mode == "RGB"
    assert decoded.width > 0 and decoded.height > 0


def test_formats_are_detected_from_content_not_extension():
    formats = {name: decode_image((MEDIA / name).read_bytes(), LIMIT).format for name in GOOD_IMAGES}
    assert formats["Blue Square.PNG"] == "PNG"
    assert formats["photo.TIFF"] == "TIFF"
    assert formats["ünïcødé 猫.webp"] == "WEBP"
    assert formats["nested/yellow.bmp"] == "BMP"


def test_gif_gives_its_first_frame():
    decoded = decode_image((MEDIA / "nested/deeper/green-anim.gif").read_bytes(), LIMIT)
    r, g, b = decoded.image.getpixel((decoded.width - 2, 1))
    assert g > 120 and r < 100  # the first frame is green; the second is black


def test_exif_orientation_is_applied():
    decoded = decode_image((MEDIA / "rotated-exif.jpg").read_bytes(), LIMIT)
    assert (decoded.width, decoded.height) == (20, 40)
    assert decoded.image.size == (20, 40)


def test_transparency_is_flattened_onto_white():
    decoded = decode_image((MEDIA / "transparent.png").read_bytes(), LIMIT)
    assert min(decoded.image.getpixel((1, 1))) > 240  # alpha 0 at the left edge


def test_jpeg_draft_decodes_at_reduced_size_but_keeps_true_dimensions():
    buffer = io.BytesIO()
    Image.new("RGB", (1600, 1200), (10, 20, 30)).save(buffer, "JPEG")
    decoded = decode_image(buffer.getvalue(), LIMIT, draft_size=224)
    assert (decoded.width, decoded.height) == (1600, 1200)
    assert 224 <= min(decoded.image.size) < 1200


def test_corrupt_bytes_are_refused_with_a_reason():
    with pytest.raises(InvalidImage, match="not a readable image"):
        decode_image((MEDIA / "corrupt.jpg").read_bytes(), LIMIT)


def test_truncated_image_is_refused():
    data = (MEDIA / "red.jpg").read_bytes()
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) // 2], LIMIT)


def test_text_file_is_refused():
    with pytest.raises(InvalidImage):
        decode_image(b"hello, I am not a picture", LIMIT)


@pytest.mark.parametrize("limit", [2_000, 100])  # ours only; and past twice it, Pillow's too
def test_images_over_the_pixel_limit_are_refused(limit):
    with pytest.raises(ImageTooLarge, match="SPYGLASS_MAX_IMAGE_PIXELS"):
        decode_image((MEDIA / "red.jpg").read_bytes(), limit)
