"""Reciprocal rank fusion: one ranking from several, by rank alone.

A visual score is a cosine and a keyword score a BM25 (or ts_rank) value: they share no scale,
and either one's spread changes with the model, the library and the query. RRF (Cormack, Clarke
and Büttcher, SIGIR 2009) needs no scale: an item scores 1 / (K + rank) in each list it is in,
summed. K = 60 is the paper's value, and the one Elasticsearch, OpenSearch and Weaviate use: it
keeps the first few ranks of either list from drowning the other, so an item both lists rank
fairly high beats one that only a single list ranks first.
"""

from __future__ import annotations

from typing import Sequence

RRF_K = 60


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Item ids of several best-first rankings, fused, best first (ties by id), with their RRF scores."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item_id in enumerate(dict.fromkeys(ranking), start=1):
            scores[item_id] = scores.get(item_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
