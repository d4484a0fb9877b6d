"""The index a run publishes into: the live generation's store, or a new one for a first run or a rebuild."""

from __future__ import annotations

from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from spyglass.search.catalog.queries import live_generation
from spyglass.search.catalog.schema import EmbeddingModel
from spyglass.search.model.precision import PrecisionCheck, PrecisionMix
from spyglass.search.settings import Settings
from spyglass.search.store.segmented import SegmentedStore

from .ann_carry import CarriedAnn
from .publish import PendingChanges, publish


class TargetIndex:
    """The store being built, its model row, the approximate index it carries and its precisions.

    Opened on first use, so a run with nothing to publish reads no index file. `dim` and
    `image_tower` are asked only when a new store or model row is made: for a first run, a
    rebuild, or a new model that takes the live vectors over (`new_model`).
    """

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, identity: tuple[str, str],
                 dim: Callable[[], int], image_tower: Callable[[], str | None], fresh: bool = False,
                 new_model: bool = False):
        self.sessions = sessions
        self.settings = settings
        self.identity = identity
        self._dim = dim
        self._image_tower = image_tower
        self.fresh = fresh  # a first run or a rebuild: a new store, whatever is live
        self.new_model = new_model  # after a text-side fine-tune: the live vectors under the new model
        self._store: SegmentedStore | None = None
        self.ann: CarriedAnn | None = None
        self.model_id: int | None = None
        self.precision = PrecisionMix()  # of the vectors in the store being built

    @property
    def store(self) -> SegmentedStore:
        """The live generation's segments (mapped, never changed, only added to), or a new store."""
        if self._store is None:
            with self.sessions() as session:
                live = live_generation(session)
            if live is not None and not self.fresh:
                self._store = SegmentedStore.load(self.settings.index_dir, live.base_file(), live.manifest(),
                                                  mmap=True)
                self._store.storage = self.settings.vector_storage  # new deltas, and the next compaction
                self.ann = CarriedAnn.of_generation(live, self.settings.index_dir)
                self.precision = live.precision_mix()
                self.model_id = self._model_row(live.model.dim) if self.new_model else live.model_id
            else:
                dim = self._dim()
                self._store = SegmentedStore.empty(dim, self.settings.vector_storage)
                self.ann = None  # built once the new vectors are live
                self.model_id = self._model_row(dim)
        return self._store

    def replace(self, store: SegmentedStore, ann: CarriedAnn | None) -> None:
        """A compacted store (and the approximate index that covers it) takes over."""
        self._store, self.ann = store, ann

    def embedded_with(self, check: PrecisionCheck | None) -> None:
        """Vectors embedded in this precision join the store (after it has been opened)."""
        if check is not None:
            _ = self.store  # the live generation's precisions first, then this run's
            self.precision = self.precision.with_check(check)

    def publish(self, pending: PendingChanges, force: bool = False) -> int | None:
        """Publish the pending changes into a new generation; returns its id, if one was made."""
        store = self.store
        return publish(self.sessions, store, self.settings.index_dir, self.model_id, self.settings.index_factory,
                       pending, force_generation=force, ann=self.ann, precision=self.precision)

    def _model_row(self, dim: int) -> int:
        arch, weights = self.identity
        # Random weights (tests, benchmarks) differ at every load: no checksum can vouch for them.
        tower = self._image_tower() if weights else None
        with self.sessions.begin() as session:
            model = session.scalar(select(EmbeddingModel).where(
                EmbeddingModel.architecture == arch, EmbeddingModel.pretrained == weights))
            if model is None:
                model = EmbeddingModel(architecture=arch, pretrained=weights, dim=dim, image_tower=tower)
                session.add(model)
                session.flush()
            elif model.image_tower is None:
                model.image_tower = tower
            return model.id
