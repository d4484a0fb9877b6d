"""The moments of a video a search returns: its best-scoring stretches, from its frames' scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A video result shows at most this many moments.
MAX_MOMENTS = 3
# A frame belongs to a moment when its score is within this fraction of the video's score
# range (best minus worst frame) from the best frame: the cut is relative to the best hit.
MOMENT_SPREAD = 0.25


@dataclass(frozen=True)
class Moment:
    """A stretch of a video that matches: start and end (seconds), its best moment and score."""

    start_s: float
    end_s: float
    best_s: float
    score: float

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {"start_s": round(self.start_s, 3), "end_s": round(self.end_s, 3),
                "best_s": round(self.best_s, 3), "score": round(self.score, 6)}


def moments(starts: np.ndarray, ends: np.ndarray, scores: np.ndarray, spread: float = MOMENT_SPREAD,
             limit: int = MAX_MOMENTS) -> list[Moment]:
    """The best moments of one video from its frames' scores, best first.

    Frames (in time order) that score within `spread` of the video's score range from its best
    frame are kept; neighbouring kept frames merge into one moment, which runs from the first
    one's start to the last one's end and scores as its best frame.
    """
    if len(scores) == 0:
        return []
    order = np.argsort(starts, kind="stable")
    starts, ends, scores = starts[order], ends[order], scores[order]
    best, worst = float(scores.max()), float(scores.min())
    keep = scores >= best - spread * (best - worst)
    found: list[Moment] = []
    position = 0
    while position < len(scores):
        if not keep[position]:
            position += 1
            continue
        run_end = position
        while run_end + 1 < len(scores) and keep[run_end + 1]:
            run_end += 1
        top = position + int(np.argmax(scores[position:run_end + 1]))
        found.append(Moment(float(starts[position]), float(ends[run_end]), float(starts[top]),
                             float(scores[top])))
        position = run_end + 1
    found.sort(key=lambda s: (-s.score, s.start_s))
    return found[:limit]


def with_timed_matches(visual: tuple[Moment, ...] | list[Moment], matches) -> tuple[Moment, ...]:
    """A video's moments: where its matching words are said or shown (in match order), then its
    visual moments that do not overlap them, at most MAX_MOMENTS in all."""
    timed = [Moment(m.start_s, m.end_s if m.end_s is not None else m.start_s, m.start_s, 0.0)
             for m in matches if m.start_s is not None]
    kept = list(timed)
    for moment in visual:
        if not any(moment.start_s < t.end_s and t.start_s < moment.end_s for t in timed):
            kept.append(moment)
    return tuple(kept[:MAX_MOMENTS])


def format_moment(seconds: float) -> str:
    """01:12, or 1:02:03 past an hour."""
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_range(start_s: float, end_s: float) -> str:
    """'01:12–01:19'."""
    return f"{format_moment(start_s)}–{format_moment(end_s)}"
