"""What a person sees of a ranking: a cutoff relative to the best hit, near-duplicates folded into
one hit, and the order (relevance, or date taken).

It works on a bounded window of the ranking from its first hit, so the cutoff has a best hit to
be relative to and a date order sorts everything that passed it, not one page.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Callable, Sequence

import numpy as np

from spyglass.search.errors import BadQuery

SORTS = ("relevance", "date")
# A date order sorts at most this many hits: the best ones that pass the cutoff.
DATE_WINDOW = 500
# Items whose vectors are this close are the same photo to a person (a burst shot, a re-saved copy,
# a resize): SPYGLASS_DUPLICATE_COSINE's default.
DUPLICATE_COSINE = 0.97


@dataclass(frozen=True)
class Arrangement:
    """How to show a ranking: cutoff in (0, 1] keeps hits scoring at least that share of the best
    (a margin below it when the best is negative); collapse folds near-duplicates."""

    sort: str = "relevance"
    cutoff: float | None = None
    collapse: bool = False
    duplicate_cosine: float = DUPLICATE_COSINE  # SPYGLASS_DUPLICATE_COSINE

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise BadQuery(f"sort must be one of {', '.join(SORTS)}")
        if self.cutoff is not None and not 0.0 < self.cutoff <= 1.0:
            raise BadQuery("cutoff must be above 0 and at most 1 (a share of the best hit's score)")

    def active(self) -> bool:
        """Whether anything changes the engine's plain ranking."""
        return self.sort != "relevance" or self.cutoff is not None or self.collapse

    def window(self, k: int, offset: int) -> int:
        """How many hits from the first to ask the engine for."""
        if self.sort == "date":
            return max(DATE_WINDOW, offset + k + 1)
        # Folding duplicates shrinks the list; twice the page keeps a full page in all but burst-heavy folders.
        return (offset + k) * (2 if self.collapse else 1) + 1


def threshold(best: float, cutoff: float) -> float:
    """The lowest score kept: cutoff x best, or as far below a negative best as cutoff is below 1."""
    return best * cutoff if best > 0 else best - (1.0 - cutoff) * abs(best)


def arrange(hits: Sequence, k: int, offset: int, arrangement: Arrangement,
            vectors: Callable[[list[int]], np.ndarray | None] | None = None) -> tuple[list, int | None]:
    """The page [offset, offset + k) of hits (ranked from the first) as arranged; and the next offset."""
    kept = list(hits)
    if arrangement.cutoff is not None and kept:
        floor = threshold(kept[0].score, arrangement.cutoff)
        kept = [hit for hit in kept if hit.score >= floor]
    found = vectors([hit.item.id for hit in kept]) if arrangement.collapse and len(kept) > 1 and vectors else None
    if found is not None:
        kept = collapsed(kept, found, arrangement.duplicate_cosine)
    if arrangement.sort == "date":
        kept.sort(key=_taken_key, reverse=True)
    page = kept[offset:offset + k]
    return page, (offset + k if len(kept) > offset + k else None)


def collapsed(hits: list, vectors: np.ndarray, min_cosine: float = DUPLICATE_COSINE) -> list:
    """Each hit with the later hits that duplicate it (same content, or vectors at min_cosine) folded in:
    greedy in rank order, so a group stands under its best hit."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)
    similar = unit @ unit.T
    taken = np.zeros(len(hits), dtype=bool)
    folded = []
    for i, hit in enumerate(hits):
        if taken[i]:
            continue
        # Videos fold only when their bytes are the same: their vectors pool many frames, and
        # `spyglass duplicates` compares them frame by frame instead.
        same = [j for j in range(i + 1, len(hits)) if not taken[j] and hits[j].item.kind == hit.item.kind and (
            hits[j].item.content_hash == hit.item.content_hash
            or (hit.item.kind == "image" and similar[i, j] >= min_cosine))]
        taken[same] = True
        folded.append(replace(hit, duplicates=tuple(hits[j].item.id for j in same)) if same else hit)
    return folded


def _taken_key(hit) -> tuple:
    taken = hit.item.taken_at
    return (taken is not None, taken or datetime.min)


def arranged_search(engine, parts, k: int, offset: int, arrangement: Arrangement, **options):
    """engine.search, with the hits arranged: the engine is asked for the window from the first hit."""
    if not arrangement.active():
        return engine.search(parts, k=k, offset=offset, **options)
    result = engine.search(parts, k=arrangement.window(k, offset), offset=0, **options)

    def vectors(ids: list[int]) -> np.ndarray | None:
        try:
            return engine.vectors_of(ids)
        except KeyError:  # a generation published since this search: leave its page as it is
            return None

    page, next_offset = arrange(result.hits, k, offset, arrangement, vectors)
    return replace(result, hits=page, next_offset=next_offset)
