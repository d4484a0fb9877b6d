"""Text read from images and video frames with RapidOCR (PP-OCR's detection, direction and recognition models, in
ONNX, inside the rapidocr-onnxruntime wheel: Chinese and English, nothing downloaded).

Detection runs on a reduced copy first (DETECT_SIDE on its longer side), which is all a photo with
no text costs; recognition runs only on the boxes found, cut from a larger copy (READ_SIDE).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import threading

import numpy as np

from spyglass.search.errors import SpyglassError
from spyglass.search.media.files import read_regular_file
from spyglass.search.media.images import decode_gate, decode_image

from .sources import FolderListing, ItemFacts, Piece, TextUnreadable, bounded, open_regular

# Longer side of the copy text is first looked for in, of the copy it is then found in, and of
# the copy lines are read from. Detection's cost grows with the pixels it is given; 384 px still
# finds 22 px text on a 1024 px photo (benchmarks/words.py renders such text).
DETECT_SIDE = 384
FINE_SIDE = 960
READ_SIDE = 2048
# Lines the recogniser is less sure of than this are dropped (RapidOCR's own default).
MIN_CONFIDENCE = 0.5
# Video frames are read at this short side, at every cut and at least every VIDEO_GAP_S; a frame
# whose thumbnail differs from the last one read by less than SAME_FRAME_SCORE is not read again,
# and at most MAX_VIDEO_READS frames of one video are read (two hours of slides changing each 4 s).
VIDEO_COVER = 720
VIDEO_GAP_S = 4.0
SAME_FRAME_SCORE = 0.02
MAX_VIDEO_READS = 1800


def ocr_available() -> bool:
    """Whether RapidOCR is installed (`pip install 'spyglass[words]'`)."""
    return importlib.util.find_spec("rapidocr_onnxruntime") is not None


class OcrSource:
    """Lines of text in an image: each with its confidence; its box is not kept (its place in the
    image says nothing a search needs)."""

    name = "ocr"

    def __init__(self, max_pixels: int, max_file_bytes: int, decode_memory: int, max_video_seconds: float):
        self.max_pixels, self.max_file_bytes, self.decode_memory = max_pixels, max_file_bytes, decode_memory
        self.max_video_seconds = max_video_seconds
        self.extractor = f"rapidocr-onnxruntime {importlib.metadata.version('rapidocr-onnxruntime')} " \
                         f"detect {DETECT_SIDE}/{FINE_SIDE} read {READ_SIDE} video {VIDEO_COVER}/{VIDEO_GAP_S:g}"
        self._engine = None
        self._lock = threading.Lock()

    def _ocr(self):
        with self._lock:
            if self._engine is None:
                from rapidocr_onnxruntime import RapidOCR

                # Detection at the size it is handed (it rounds to multiples of 32): we pick the sizes.
                self._engine = RapidOCR(det_limit_side_len=32, det_limit_type="min", text_score=MIN_CONFIDENCE)
            return self._engine

    def signature(self, item: ItemFacts, folder: FolderListing) -> str | None:
        return item.content_hash if item.local and item.kind in ("image", "video") else None

    def read(self, item: ItemFacts, folder: FolderListing) -> list[Piece]:
        if item.kind == "video":
            return self._read_video(item)
        try:
            data = read_regular_file(item.path, self.max_file_bytes)
            decoded = decode_image(data, self.max_pixels, draft_size=READ_SIDE // 2,
                                   gate=decode_gate(self.decode_memory))
        except SpyglassError as exc:
            raise TextUnreadable(exc.message) from None
        except OSError as exc:
            raise TextUnreadable(f"cannot read the file: {exc.strerror}") from None
        return bounded([Piece("ocr", text, confidence=confidence, box=box)
                        for text, confidence, box in self._lines(decoded.image)])

    def _lines(self, image) -> list[tuple[str, float, str]]:
        """The lines of text in an RGB Pillow image, in reading order: (text, confidence, box).

        Text is looked for in a small copy first (DETECT_SIDE): a photo without any costs that
        alone. Where some is found, it is found again in a larger copy (FINE_SIDE), and each box
        is cut from a copy of at most READ_SIDE, turned upright and read.
        """
        engine = self._ocr()
        found, _ = engine.text_det(_bgr(_reduced(image, DETECT_SIDE)))
        if found is None or len(found) == 0:
            return []
        read = _reduced(image, READ_SIDE)
        fine = _reduced(read, FINE_SIDE)
        boxes, _ = engine.text_det(_bgr(fine))
        if boxes is None or len(boxes) == 0:
            return []
        scale = read.size[0] / fine.size[0]
        boxes = [np.asarray(box, dtype=np.float32) * scale for box in engine.sorted_boxes(boxes)]
        crops, _, _ = engine.text_cls(engine.get_crop_img_list(_bgr(read), boxes))
        recognised, _ = engine.text_rec(crops, False)
        width, height = read.size
        return [(str(text).strip(), round(float(confidence), 4), _box(points, width, height))
                for (text, confidence), points in zip(recognised, boxes, strict=True)
                if str(text).strip() and float(confidence) >= MIN_CONFIDENCE]

    def _read_video(self, item: ItemFacts) -> list[Piece]:
        """Text shown in a video (slides, burned-in captions): its frames sampled as for embedding
        (the first, every cut, every VIDEO_GAP_S), a frame that looks like the last one read is
        not read again, and one text shown across frames is one timed piece."""
        from spyglass.search.media.video_frames import change_score, sample_frames

        pieces: list[Piece] = []
        shown: tuple[str, ...] = ()
        since, sure = 0.0, None
        last_small, read = None, 0
        try:
            handle = open_regular(item.path)
        except OSError as exc:
            raise TextUnreadable(f"cannot read the file: {exc.strerror or exc}") from None
        try:
            for frame in sample_frames(handle, VIDEO_COVER, VIDEO_GAP_S, self.max_video_seconds,
                                       max_pixels=self.max_pixels):
                small = np.asarray(frame.image.resize((48, 27)))
                if last_small is not None and change_score(last_small, small) < SAME_FRAME_SCORE:
                    continue  # the same picture: the same text
                last_small = small
                if read >= MAX_VIDEO_READS:
                    break
                read += 1
                lines = self._lines(frame.image)
                if tuple(text for text, _, _ in lines) != shown:
                    if shown:
                        pieces.append(Piece("ocr", "\n".join(shown), since, frame.time_s, confidence=sure))
                    shown, since = tuple(text for text, _, _ in lines), frame.time_s
                    sure = min((confidence for _, confidence, _ in lines), default=None)
        except SpyglassError as exc:
            if not pieces and not shown:
                raise TextUnreadable(exc.message) from None
        finally:
            handle.close()
        if shown:
            pieces.append(Piece("ocr", "\n".join(shown), since, max(since, item.duration_s or since), confidence=sure))
        return bounded(pieces)


def _box(points, width: int, height: int) -> str:
    """A detected quadrilateral as 'left,top,right,bottom' fractions of the picture."""
    xs, ys = [float(p[0]) for p in points], [float(p[1]) for p in points]
    return ",".join(f"{max(0.0, min(1.0, v)):.4f}" for v in (min(xs) / width, min(ys) / height,
                                                              max(xs) / width, max(ys) / height))


def _reduced(image, side: int):
    """A copy at most `side` pixels on its longer side (the image itself when it is no larger)."""
    if max(image.size) <= side:
        return image
    copy = image.copy()
    copy.thumbnail((side, side))
    return copy


def _bgr(image) -> np.ndarray:
    """An RGB Pillow image as the BGR array OpenCV and RapidOCR take."""
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
