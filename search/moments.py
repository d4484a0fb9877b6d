"""The moments of a video a search returns: its best-scoring stretches, from its frames' scores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A video result shows at most this many moments.
MAX_MOMENTS = 3
# A frame belongs to a moment when its score is within this fraction of the video's score
# range (best minus worst frame) from the best frame: the cut is relative to the best hit.
MOMENT_SPREAD = 0.25
# Two neighbouring shots make one moment only when their best frames score within this fraction
# of the video's score range of each other: the next shot matches as well, not merely well enough.
SHOT_JOIN = 0.05


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
            limit: int = MAX_MOMENTS, shots: np.ndarray | None = None) -> list[Moment]:
    """The best moments of one video from its frames' scores, best first.

    Frames (in time order) that score within `spread` of the video's score range from its best
    frame are kept; neighbouring kept frames merge into one moment, which runs from the first
    one's start to the last one's end and scores as its best frame. With the frames' `shots`, a
    moment stays inside its shot: it crosses a cut only when the next shot matches as well, its
    best frame within SHOT_JOIN of the score range from the moment's best.
    """
    if len(scores) == 0:
        return []
    order = np.argsort(starts, kind="stable")
    starts, ends, scores = starts[order], ends[order], scores[order]
    shots = None if shots is None else np.asarray(shots)[order]
    best, worst = float(scores.max()), float(scores.min())
    keep = scores >= best - spread * (best - worst)
    runs: list[tuple[int, int]] = []  # (first, last) frame of each stretch of kept frames in one shot
    for position in np.flatnonzero(keep):
        position = int(position)
        if runs and runs[-1][1] == position - 1 and (shots is None or shots[position] == shots[position - 1]):
            runs[-1] = (runs[-1][0], position)
        else:
            runs.append((position, position))
    found: list[Moment] = []
    for first, last in runs:
        top = first + int(np.argmax(scores[first:last + 1]))
        moment = Moment(float(starts[first]), float(ends[last]), float(starts[top]), float(scores[top]))
        previous = found[-1] if found else None
        joins = (previous is not None and shots is not None and previous.end_s == moment.start_s
                 and min(previous.score, moment.score) >= max(previous.score, moment.score) - SHOT_JOIN * (best - worst))
        if joins:  # the next shot matches as well: one moment across the cut
            better = previous if previous.score >= moment.score else moment
            found[-1] = Moment(previous.start_s, moment.end_s, better.best_s, better.score)
        else:
            found.append(moment)
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
