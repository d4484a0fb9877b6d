"""Which FAISS index type serves a library: chosen from its size, dimension and memory budget."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Exact search costs vectors x dimension multiply-adds a query; below this (50,000 vectors of
# 512 numbers, a few milliseconds on one core) it is cheap enough to stay exact.
FLAT_MAX_WORK = 50_000 * 512
# k-means wants about 39 training points per inverted list (FAISS warns below that).
POINTS_PER_LIST = 39
# Bytes an inverted list entry costs besides its code: the 64-bit id.
ID_BYTES = 8


@dataclass(frozen=True)
class IndexChoice:
    """A FAISS factory string and what it is expected to hold in RAM."""

    factory: str
    bytes: int

    @property
    def exact(self) -> bool:
        """Whether this is exact search, which needs no training or tuning."""
        return self.factory == "Flat"


def is_auto(factory: str) -> bool:
    """Whether the setting asks Spyglass to choose."""
    return factory.strip().lower() == "auto"


def inverted_lists(count: int) -> int:
    """About 4 * sqrt(count) lists, a power of two, with enough points each to train."""
    wanted = 2 ** round(math.log2(max(4 * math.sqrt(max(count, 1)), 1)))
    trainable = 2 ** int(math.log2(max(count // POINTS_PER_LIST, 1)))
    return max(1, min(wanted, trainable, 65536))


def candidates(count: int, dim: int) -> list[IndexChoice]:
    """Every type the selector considers for this size, the most exact first, Flat last."""
    flat = IndexChoice("Flat", count * dim * 4)
    if count * dim <= FLAT_MAX_WORK:
        return [flat]
    lists = inverted_lists(count)
    centroids = lists * dim * 4
    choices = [IndexChoice(f"IVF{lists},Flat", count * (dim * 4 + ID_BYTES) + centroids),
               IndexChoice(f"IVF{lists},SQ8", count * (dim + ID_BYTES) + centroids)]
    # 4-bit fast-scan PQ: sub-quantizer counts that divide the dimension, most bytes first.
    for divisor in (2, 4, 8, 16):
        subquantizers = dim // divisor
        if subquantizers >= 8 and dim % subquantizers == 0 and subquantizers % 2 == 0:
            choices.append(IndexChoice(f"IVF{lists},PQ{subquantizers}x4fs",
                                       count * (subquantizers // 2 + ID_BYTES) + centroids))
    return choices + [flat]


def ladder(count: int, dim: int, memory: int) -> list[IndexChoice]:
    """What to try in order: the most exact type that fits the budget, then Flat.

    Flat is always possible: it is exact search over the stored vectors, which are on disk."""
    options = candidates(count, dim)
    fitting = [c for c in options[:-1] if c.bytes <= memory]
    if not fitting and len(options) > 1:
        fitting = [options[-2]]  # nothing fits: the most compressed there is, rather than none
    return fitting[:1] + ([options[-1]] if fitting else options[-1:])


def choose(count: int, dim: int, memory: int) -> IndexChoice:
    """The type the selector would build first for this library."""
    return ladder(count, dim, memory)[0]


_LIST_COUNT = re.compile(r"IVF(\d+)")


def needs_training_points(factory: str) -> int:
    """How many vectors training this type wants at least (0 for types that need none)."""
    match = _LIST_COUNT.search(factory)
    lists = int(match[1]) if match else 0
    # PQ and SQ codebooks train k-means with 256 centroids per sub-quantizer (16 for 4-bit).
    return max(lists * POINTS_PER_LIST, 256 * POINTS_PER_LIST if re.search(r"PQ\d+(?!x4)", factory) else 0,
               16 * POINTS_PER_LIST if "x4" in factory else 0)
