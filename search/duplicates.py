"""Sets of duplicates in the library: the same bytes, then photos whose vectors nearly coincide, then
videos that match frame by frame.

Photos: each image's nearest neighbours (the live index's own searcher, so an approximate index
keeps this to minutes at a million items) at SPYGLASS_DUPLICATE_COSINE or more, joined into sets.
Videos are never paired by their poster or their pooled vector alone (a shared black intro or a
title card would pair different films): two videos are one when their lengths agree and frames
sampled across the whole of each find a match in the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
from sqlalchemy import func, select

from spyglass.search.catalog.schema import MediaItem
from spyglass.search.store.ids import frame_vector_ids, item_mask

# Neighbours looked at per photo: a burst of more near-identical shots still joins, through its neighbours.
# Only the pairs close enough are kept, and only their items' rows read: memory follows the duplicates,
# not the library.
NEIGHBOURS = 8
QUERY_BATCH = 4096
# Videos: lengths within this share of each other, and this share of frames matched both ways.
VIDEO_LENGTH_TOLERANCE = 0.05
VIDEO_FRAMES_MATCHED = 0.8
VIDEO_SAMPLES = 8


@dataclass
class DuplicateSet:
    """Items that are one photo or one film to a person, and why (same bytes, or look alike)."""

    reason: str
    item_ids: list[int] = field(default_factory=list)


class _Union:
    """Union-find over item ids."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        root = a
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while a != root:  # path compression
            self.parent[a], a = root, self.parent.get(a, a)
        return root

    def join(self, a: int, b: int) -> None:
        self.parent.setdefault(a, a)
        self.parent.setdefault(b, b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def sets(self) -> list[list[int]]:
        groups: dict[int, list[int]] = {}
        for item in list(self.parent):
            groups.setdefault(self.find(item), []).append(item)
        return [sorted(members) for members in groups.values() if len(members) > 1]


def same_bytes(sessions) -> list[DuplicateSet]:
    """Items with the same content hash (one file copied, or indexed under two folders)."""
    with sessions() as session:
        hashes = select(MediaItem.content_hash).group_by(MediaItem.content_hash).having(func.count() > 1)
        rows = session.execute(select(MediaItem.content_hash, MediaItem.id)
                               .where(MediaItem.content_hash.in_(hashes)).order_by(MediaItem.id)).all()
    found: dict[str, list[int]] = {}
    for digest, item_id in rows:
        found.setdefault(digest, []).append(item_id)
    return [DuplicateSet("same bytes", ids) for ids in found.values()]


def look_alike(engine, min_cosine: float, progress: Callable[[int], None] = lambda n: None) -> list[DuplicateSet]:
    """Photos and videos whose vectors say they are the same picture or film (same bytes left out)."""
    snapshot = engine.live()
    pairs: list[tuple[int, int]] = []  # close enough, each once; only these items' rows are read
    for ids, vectors in _item_vectors(snapshot.stored):
        scores, neighbours = snapshot.searcher.search(vectors, NEIGHBOURS + 1)
        close = (scores >= min_cosine) & (neighbours > ids[:, None]) & item_mask(neighbours)
        rows, columns = np.nonzero(close)
        pairs += zip(ids[rows].tolist(), neighbours[rows, columns].tolist())
        progress(len(ids))
    facts = _facts(engine, sorted({item for pair in pairs for item in pair}))
    union, videos = _Union(), _Union()
    for a, b in pairs:
        (kind_a, hash_a, _), (kind_b, hash_b, _) = facts.get(a, (None,) * 3), facts.get(b, (None,) * 3)
        if kind_a != kind_b or kind_a not in ("image", "video") or hash_a == hash_b:
            continue  # other kinds, frames, or the same bytes (said by same_bytes)
        (union if kind_a == "image" else videos).join(a, b)
    found = [DuplicateSet("look alike", ids) for ids in union.sets()]
    lengths = {item: length for item, (_, _, length) in facts.items()}
    confirmed = _Union()
    for group in videos.sets():
        for a in group:
            for b in group:
                if a < b and _same_film(engine, snapshot, a, b, lengths, min_cosine):
                    confirmed.join(a, b)
    return found + [DuplicateSet("same film, frame by frame", ids) for ids in confirmed.sets()]


def _facts(engine, item_ids: list[int]) -> dict[int, tuple[str, str, float | None]]:
    """(kind, content hash, length) of these items, a thousand at a time."""
    found = {}
    with engine.catalog.sessions() as session:
        for start in range(0, len(item_ids), 1000):
            chunk = item_ids[start:start + 1000]
            query = select(MediaItem.id, MediaItem.kind, MediaItem.content_hash, MediaItem.duration_s).where(
                MediaItem.id.in_(chunk))
            found.update((row[0], (row[1], row[2], row[3])) for row in session.execute(query))
    return found


def _item_vectors(stored) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The stored vectors of items (not frames), in batches."""
    for ids, vectors in stored.all_vectors(QUERY_BATCH):
        keep = item_mask(ids)
        if keep.any():
            yield ids[keep], np.ascontiguousarray(vectors[keep], dtype=np.float32)


def _same_film(engine, snapshot, a: int, b: int, lengths: dict, min_cosine: float) -> bool:
    """Two videos of (nearly) one length whose frames, sampled across each, find matches in the other."""
    length_a, length_b = lengths.get(a) or 0.0, lengths.get(b) or 0.0
    if abs(length_a - length_b) > VIDEO_LENGTH_TOLERANCE * max(length_a, length_b, 1e-9):
        return False
    frames = engine.catalog.frames_of([a, b])
    if a not in frames or b not in frames or len(frames[a].ids) < 2 or len(frames[b].ids) < 2:
        return False  # a film of one kept frame says too little to pair it
    vectors = {item: snapshot.stored.vectors(frame_vector_ids(frames[item].ids)) for item in (a, b)}
    return _matched(vectors[a], vectors[b], min_cosine) and _matched(vectors[b], vectors[a], min_cosine)


def _matched(ours: np.ndarray, theirs: np.ndarray, min_cosine: float) -> bool:
    picks = np.linspace(0, len(ours) - 1, num=min(VIDEO_SAMPLES, len(ours))).round().astype(int)
    best = (ours[picks] @ theirs.T).max(axis=1)
    return float((best >= min_cosine).mean()) >= VIDEO_FRAMES_MATCHED
