"""Reduced-scale decoding stays true to open_clip's own preprocess of the full image, per image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from photo_corpus import SIZES, encoded, photo
from spyglass.search.media.images import decode_image

MIN_COSINE = 0.999


@pytest.fixture(scope="module")
def corpus():
    """Every size of the photo-like corpus in JPEG, PNG and WebP."""
    images = [photo(w, h, seed) for seed, (w, h) in enumerate(SIZES)]
    return [(fmt, image.size, encoded(image, fmt)) for image in images for fmt in ("JPEG", "PNG", "WEBP")]


def fidelity(encoder, corpus) -> list[tuple[float, str, tuple[int, int], tuple[int, int]]]:
    """(cosine, format, size, decoded size) of each file: ours against the full-size reference."""
    results = []
    for fmt, size, data in corpus:
        reference = encoder.encode_pixels(encoder.preprocess(Image.open(io.BytesIO(data)).convert("RGB"))[None])
        decoded = decode_image(data, 10**9, draft_size=encoder.image_size).image
        ours = encoder.encode_pixels(encoder.preprocess(decoded)[None])
        results.append((float(ours[0] @ reference[0]), fmt, size, decoded.size))
    return results


def test_every_image_stays_within_bound_and_big_ones_decode_smaller(encoder, corpus):
    results = fidelity(encoder, corpus)
    worst = min(results)
    assert worst[0] >= MIN_COSINE, worst
    for _, fmt, size, decoded in results:
        # The work saved: a 4000 px photo is never handed to the model's resize at full size.
        assert min(decoded) >= encoder.image_size
        if min(size) >= 4 * encoder.image_size:
            assert decoded[0] < size[0] / 2, (fmt, size, decoded)


@pytest.mark.slow
def test_vit_b32_every_image_stays_within_bound(corpus):
    import torch

    from spyglass.search.model.encoder import load_encoder

    torch.manual_seed(0)
    encoder = load_encoder("ViT-B-32", None, device="cpu")  # random weights: a stand-in
    results = fidelity(encoder, corpus)
    worst = min(results)
    assert worst[0] >= MIN_COSINE, worst
    assert np.median([r[0] for r in results]) > 0.9999
