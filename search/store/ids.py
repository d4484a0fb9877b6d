"""The id space of the vector index: items' ids, and video frames' ids from FRAME_IDS_FROM up.

A video has one pooled vector under its item id, for whole-video matches, and one vector per
kept frame under FRAME_IDS_FROM + the frame's row id. Item ids stay far below that bound, so
any id in the index says by itself whether it is an item's or a frame's. Every conversion goes
through these helpers.
"""

from __future__ import annotations

import numpy as np

FRAME_IDS_FROM = 1 << 48


def is_frame(vector_id: int) -> bool:
    """Whether an index id is a video frame's (else it is an item's)."""
    return vector_id >= FRAME_IDS_FROM


def frame_vector_ids(frame_ids) -> np.ndarray:
    """The index ids of these frame rows."""
    return np.asarray(frame_ids, dtype=np.int64) + FRAME_IDS_FROM


def frame_row_ids(vector_ids) -> np.ndarray:
    """The frame row ids of these index ids."""
    return np.asarray(vector_ids, dtype=np.int64) - FRAME_IDS_FROM


def item_mask(vector_ids) -> np.ndarray:
    """Which of these index ids are items' (not frames')."""
    return np.asarray(vector_ids, dtype=np.int64) < FRAME_IDS_FROM


def frame_vector_id(frame_id: int) -> int:
    """The index id of one frame row."""
    return FRAME_IDS_FROM + int(frame_id)


def frame_row_id(vector_id: int) -> int:
    """The frame row id of one frame's index id."""
    return int(vector_id) - FRAME_IDS_FROM
