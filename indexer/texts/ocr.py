"""Text read from images with RapidOCR (PP-OCR's detection, direction and recognition models, in
ONNX, inside the rapidocr-onnxruntime wheel: Chinese and English, nothing downloaded).

Detection runs on a reduced copy (DETECT_SIDE on its longer side), which is what a photo with no
text costs; recognition runs only on the boxes found, cut from a larger copy (READ_SIDE).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading

import numpy as np

from spyglass.search.errors import SpyglassError
from spyglass.search.media.files import read_regular_file
from spyglass.search.media.images import decode_gate, decode_image

from .sources import FolderListing, ItemFacts, Piece, TextUnreadable, bounded

# Longer side of the copy text is looked for in, and of the copy lines are read from.
DETECT_SIDE = 736
READ_SIDE = 2048
# Lines the recogniser is less sure of than this are dropped (RapidOCR's own default).
MIN_CONFIDENCE = 0.5


def ocr_available() -> bool:
    """Whether RapidOCR is installed (`pip install 'spyglass[words]'`)."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


class OcrSource:
    """Lines of text in an image: each with its confidence; its box is not kept (its place in the
    image says nothing a search needs)."""

    name = "ocr"

    def __init__(self, max_pixels: int, max_file_bytes: int, decode_memory: int):
        self.max_pixels, self.max_file_bytes, self.decode_memory = max_pixels, max_file_bytes, decode_memory
        self.extractor = f"rapidocr-onnxruntime {importlib.metadata.version('rapidocr-onnxruntime')} " \
                         f"detect {DETECT_SIDE} read {READ_SIDE}"
        self._engine = None
        self._lock = threading.Lock()

    def _ocr(self):
        with self._lock:
            if self._engine is None:
                from rapidocr_onnxruntime import RapidOCR

                self._engine = RapidOCR(det_limit_side_len=DETECT_SIDE, det_limit_type="max",
                                        max_side_len=READ_SIDE, text_score=MIN_CONFIDENCE)
            return self._engine

    def signature(self, item: ItemFacts, folder: FolderListing) -> str | None:
        return item.content_hash if item.local and item.kind == "image" else None

    def read(self, item: ItemFacts, folder: FolderListing) -> list[Piece]:
        try:
            data = read_regular_file(item.path, self.max_file_bytes)
            decoded = decode_image(data, self.max_pixels, draft_size=READ_SIDE // 2,
                                   gate=decode_gate(self.decode_memory))
        except SpyglassError as exc:
            raise TextUnreadable(exc.message) from None
        except OSError as exc:
            raise TextUnreadable(f"cannot read the file: {exc.strerror}") from None
        image = decoded.image
        if max(image.size) > READ_SIDE:
            image.thumbnail((READ_SIDE, READ_SIDE))
        # RapidOCR takes BGR arrays, as OpenCV reads them.
        lines, _ = self._ocr()(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))
        return bounded([Piece("ocr", str(text).strip()) for _box, text, confidence in lines or []
                        if str(text).strip() and float(confidence) >= MIN_CONFIDENCE])
