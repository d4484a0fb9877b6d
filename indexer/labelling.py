"""Zero-shot labels in the catalog: each item's best labels from SPYGLASS_LABELS, from its stored vector.

No image is decoded again: a label is the cosine between the item's vector and the label's
prompt vectors. All items are labelled anew when the labels, their templates or the model
change (a fingerprint in catalog_state says which they were computed from); otherwise only the
items a run embedded.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np
from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.catalog.queries import live_generation
from spyglass.search.model.encoder import Encoder
from spyglass.search.store.ids import item_mask
from spyglass.search.model.zero_shot import LABELS_STATE_KEY, LabelSet, label_vectors, top_labels
from spyglass.search.catalog.schema import CatalogState, ItemLabel, MediaItem
from spyglass.search.store.flat import VectorIndex

LABELS_PER_ITEM = 3
_CHUNK = 2000


def labels_state(session: Session) -> dict | None:
    """What the stored labels were computed from: {fingerprint, model_id, labels}."""
    row = session.get(CatalogState, LABELS_STATE_KEY)
    return json.loads(row.value) if row else None


def update_labels(sessions: sessionmaker[Session], label_set: LabelSet | None,
                  live_index: Callable[[], VectorIndex], encoder: Callable[[], Encoder]) -> int:
    """Bring the item labels in step with the label set and the live generation; returns items labelled.

    The index and the encoder are asked for only when some labels must be computed, so an
    unchanged library loads neither. Items without labels are labelled (a publish drops the
    labels of re-embedded items, and a killed run's are made up for by the next).
    """
    with sessions() as session:
        state = labels_state(session)
        live = live_generation(session)
    if label_set is None or live is None:
        if state is not None:
            with sessions.begin() as session:
                session.execute(delete(ItemLabel))
                session.execute(delete(CatalogState).where(CatalogState.key == LABELS_STATE_KEY))
        return 0
    fingerprint = label_set.fingerprint()
    everything = state is None or (state["fingerprint"], state["model_id"]) != (fingerprint, live.model_id)
    if not everything:
        with sessions() as session:
            missing = list(session.scalars(select(MediaItem.id).where(
                ~exists().where(ItemLabel.item_id == MediaItem.id)).order_by(MediaItem.id)))
        if not missing:
            return 0
    index = live_index()
    weights = label_vectors(encoder(), label_set)
    chunks = index.all_vectors(_CHUNK) if everything else _chunks(index, missing)
    labelled = 0
    with sessions.begin() as session:
        if everything:
            session.execute(delete(ItemLabel))
        for ids, vectors in chunks:
            items = item_mask(ids)  # a video's frames are not items: its pooled vector is labelled
            ids, vectors = ids[items], vectors[items]
            if not len(ids):
                continue
            best, scores = top_labels(vectors, weights, LABELS_PER_ITEM)
            session.add_all(ItemLabel(item_id=int(item_id), rank=rank + 1, label=label_set.labels[best[row, rank]],
                                      score=round(float(scores[row, rank]), 6))
                            for row, item_id in enumerate(ids) for rank in range(best.shape[1]))
            labelled += len(ids)
        session.merge(CatalogState(key=LABELS_STATE_KEY, value=json.dumps(
            {"fingerprint": fingerprint, "model_id": live.model_id, "labels": len(label_set.labels)})))
    return labelled


def _chunks(index: VectorIndex, ids: list[int]):
    held = set(index.ids().tolist())
    present = [i for i in ids if i in held]
    for start in range(0, len(present), _CHUNK):
        part = present[start:start + _CHUNK]
        yield np.asarray(part, dtype=np.int64), index.vectors(part)
