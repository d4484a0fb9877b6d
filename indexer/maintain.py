"""At the end of a run: compact the segments when the deltas have grown, and build (or drop) the
approximate index when the type for this library has changed or the live one has worn.

Both happen after the run's vectors are live, so search never waits for them; decided from the
live generation's row, so a run with nothing to do reads no index file.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.catalog.queries import live_generation
from spyglass.search.settings import Settings

from .ann_build import build_to_target, wanted_factory
from .ann_carry import GROWTH_FACTOR, CarriedAnn, worn
from .publish import publish_index
from .target import TargetIndex


def maintain_index(sessions: sessionmaker[Session], settings: Settings, target: TargetIndex,
                   echo: Callable[[str], None], progress: bool = True) -> int | None:
    """Compact and (re)build as due; returns the generation it published, if any."""
    with sessions() as session:
        live = live_generation(session)
    if live is None:
        return None
    count = live.vector_count
    options = wanted_factory(settings.index_factory, count, live.model.dim, settings.index_memory)
    build = True
    if live.ann_factory:
        if live.ann_factory in options and not worn(live.ann_built_vectors, live.ann_stale, count):
            build = False  # the preferred type, or the fallback an earlier build settled on
    elif options[0] == "Flat":
        build = False
    elif (live.ann_built_vectors and count <= GROWTH_FACTOR * live.ann_built_vectors
          and live.factory == settings.index_factory):
        build = False  # an earlier build for this setting fell back to exact search at about this size
    manifest = live.manifest()
    if not build and not manifest.deltas and not manifest.tombstones:
        return None
    store = target.store
    if not build and not store.compaction_due():
        return None
    ann = None if build else target.ann  # rebuilt below: no point carrying the old one
    store, ann = compact(store, ann, echo)
    if build:
        built = build_to_target(store, settings.index_factory, settings.index_memory, settings.index_recall,
                                echo, progress)
        ann = CarriedAnn.of_build(built) if built else None
        tried_at = None if built or options[0] == "Flat" else count
    else:
        tried_at = live.ann_built_vectors if not live.ann_factory else None
    target.replace(store, ann)
    generation = publish_index(sessions, live, store, ann, settings.index_dir, settings.index_factory, tried_at)
    if build and ann is None:
        echo("Index: searching exactly (Flat).")
    return generation


def compact(store, ann: CarriedAnn | None, echo: Callable[[str], None]):
    """One base of every live vector; the approximate index, if any, gets the deltas' changes."""
    if store.segment_count <= 1 and not store.removed:
        return store, ann
    echo(f"Index: compacting {store.segment_count} segments ({store.dead_count():,} dead entries) "
         f"into one base of {len(store):,} vectors.")
    if ann is not None:
        gone, ids, vectors = store.changes_since_base()
        ann.update(gone.tolist(), ids, vectors)
    return store.compacted(), ann
