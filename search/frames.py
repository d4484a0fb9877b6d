"""Video frames in the vector index: their id space, and the moments a search makes of them.

A video has one pooled vector under its item id, for whole-video matches, and one vector per
kept frame under FRAME_IDS_FROM + the frame's row id. Item ids stay far below that bound, so
any id in the index says by itself whether it is an item or a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_IDS_FROM = 1 << 48
# A video result shows at most this many moments.
MAX_SEGMENTS = 3
# A frame belongs to a moment when its score is within this fraction of the video's score
# range (best minus worst frame) from the best frame: the cut is relative to the best hit.
SEGMENT_SPREAD = 0.25


@dataclass(frozen=True)
class Segment:
    """A stretch of a video that matches: start and end (seconds), its best moment and score."""

    start_s: float
    end_s: float
    best_s: float
    score: float

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "best_s": round(self.best_s, 3), "score": round(self.score, 6)}


def is_frame(vector_id: int) -> bool:
    """Whether an index id is a video frame's (else it is an item's)."""
    return vector_id >= FRAME_IDS_FROM


def frame_vector_ids(frame_ids) -> np.ndarray:
    """The index ids of these frame rows."""
    return np.asarray(frame_ids, dtype=np.int64) + FRAME_IDS_FROM


def frame_row_ids(vector_ids) -> np.ndarray:
    """The frame row ids of these index ids."""
    return np.asarray(vector_ids, dtype=np.int64) - FRAME_IDS_FROM


def segments(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, spread: float = SEGMENT_SPREAD,
             limit: int = MAX_SEGMENTS) -> list[Segment]:
    """The best moments of one video from its frames' scores, best first.

    Frames (in time order) that score within `spread` of the video's score range from its best
    frame are kept; neighbouring kept frames merge into one segment, which runs from the first
    one's start to the last one's end and scores as its best frame.
    """
    if len(scores) == 0:
        return []
    order = np.argsort(starts, kind="stable")
    starts, ends, scores = starts[order], ends[order], scores[order]
    best, worst = float(scores.max()), float(scores.min())
    keep = scores >= best - spread * (best - worst)
    found: list[Segment] = []
    position = 0
    while position < len(scores):
        if not keep[position]:
            position += 1
            continue
        run_end = position
        while run_end + 1 < len(scores) and keep[run_end + 1]:
            run_end += 1
        top = position + int(np.argmax(scores[position:run_end + 1]))
        found.append(Segment(float(starts[position]), float(ends[run_end]), float(starts[top]),
                             float(scores[top])))
        position = run_end + 1
    found.sort(key=lambda s: (-s.score, s.start_s))
    return found[:limit]


def format_moment(seconds: float) -> str:
    """01:12, or 1:02:03 past an hour."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_range(start_s: float, end_s: float) -> str:
    """'01:12–01:19'."""
    return f"{format_moment(start_s)}–{format_moment(end_s)}"
