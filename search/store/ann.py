"""An approximate FAISS index beside the stored vectors: it proposes candidates, the store scores them."""

from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass, field

import numpy as np

from spyglass.search.errors import ConfigError
from spyglass.search.store.segmented import SegmentedStore, top_k
from spyglass.search.store.flat import GPU_MAX_K, VectorIndex, _faiss_reason

log = logging.getLogger(__name__)
# Search parameters are tuned for recall@10.
TUNED_K = 10


@dataclass(frozen=True)
class AnnParams:
    """Search-time settings found by tuning: FAISS parameters and the re-ranking depth."""

    faiss: dict[str, int] = field(default_factory=dict)  # nprobe, efSearch, ... (ParameterSpace names)
    rerank: int = 1  # candidates fetched per wanted hit, then scored exactly

    def to_json(self) -> str:
        """Stored with the generation."""
        return json.dumps({"faiss": self.faiss, "rerank": self.rerank}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> "AnnParams":
        """Read back what to_json wrote."""
        data = json.loads(text) if text else {}
        return cls(dict(data.get("faiss", {})), int(data.get("rerank", 1)))

    def describe(self) -> str:
        """'nprobe=32 rerank=4' style label."""
        return " ".join([f"{k}={v}" for k, v in sorted(self.faiss.items())] + [f"rerank={self.rerank}"])


def new_ann(dim: int, factory: str):
    """An untrained FAISS index of this factory type (inner product), as the user named it."""
    import faiss

    try:
        return faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise ConfigError(f"SPYGLASS_INDEX_FACTORY={factory!r} is not a FAISS index factory "
                          f"string: {_faiss_reason(exc)}", "e.g. auto, Flat, IVF4096,Flat or HNSW32") from None


def check_factory(setting: str, dim: int) -> None:
    """Refuse, before any work, an index setting FAISS cannot build for this dimension."""
    from spyglass.search.store.index_choice import is_auto

    if not is_auto(setting):
        new_ann(dim, setting)


def with_ids(index):
    """The index itself when it stores ids (the IVF family), else wrapped in an id map."""
    import faiss

    try:
        faiss.extract_index_ivf(index)
        return index
    except RuntimeError:
        return faiss.IndexIDMap(index)


def has_exact_codes(factory: str) -> bool:
    """Whether the type stores full vectors (IVF…,Flat, HNSW32, HNSW32,Flat), so scores are exact."""
    last = factory.replace(" ", "").split(",")[-1]
    return last == "Flat" or (factory.startswith("HNSW") and "," not in factory)


def _drop_repeats(candidates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Keep one entry per id in each row: an item re-embedded into a graph index has two."""
    scores = scores.copy()
    for row in range(len(candidates)):
        _, first = np.unique(candidates[row], return_index=True)
        repeated = np.ones(len(candidates[row]), dtype=bool)
        repeated[first] = False
        scores[row, repeated] = -np.inf
    return scores


def apply_params(index, params: AnnParams) -> None:
    """Set FAISS search parameters by name (they reach through id maps and transforms)."""
    import faiss

    on_gpu = type(faiss.downcast_index(index)).__name__.startswith("Gpu") or "Gpu" in type(index).__name__
    space = faiss.GpuParameterSpace() if on_gpu and hasattr(faiss, "GpuParameterSpace") else faiss.ParameterSpace()
    for name, value in params.faiss.items():
        space.set_index_parameter(index, name, value)


class AnnIndex:
    """Searches like a VectorIndex: candidates from the approximate index, scores from the store.

    The approximate index covers the store's base segment. Scoring every candidate against the
    exact stored vector makes compressed codes as precise as their candidate lists; candidates
    whose base entry is dead (removed or re-embedded since) are dropped, and the delta segments
    published since the base are searched exactly and merged in.
    """

    def __init__(self, index, store: "SegmentedStore | VectorIndex", params: AnnParams, exact_codes: bool = False,
                 duplicates: bool = True):
        self.index = index
        self.store = store if isinstance(store, SegmentedStore) else SegmentedStore.single(store)
        self.params = params
        # Codes that are the full vectors score exactly already; no entries replaced since the
        # build means no id can come back twice.
        self.exact_codes = exact_codes
        self.duplicates = duplicates
        import faiss

        inner = faiss.downcast_index(index)
        self._ivf = inner if isinstance(inner, faiss.IndexIVF) else None
        self._ivf_params = faiss.SearchParametersIVF
        apply_params(index, params)
        self._gpu = None
        self._gpu_lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.store.dim

    def __len__(self) -> int:
        return len(self.store)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row, exactly scored; -1 ids pad short rows."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        fetch = max(1, min(k * self.params.rerank, self.index.ntotal))
        approximate, candidates = self._search_candidates(queries, fetch, k)
        valid = candidates >= 0
        # Only entries still live in the base count: the rest were removed or re-embedded since.
        valid[valid] = self._covered(candidates[valid])
        if self.exact_codes and self.params.rerank == 1:
            scores = np.where(valid, approximate, -np.inf).astype(np.float32)
        else:
            scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
            found = self.store.vectors(candidates[valid])
            rows = np.nonzero(valid)[0]
            scores[valid] = np.einsum("ij,ij->i", found, queries[rows])
        if self.duplicates:
            scores = _drop_repeats(candidates, scores)
        deltas = self.store.segment_count - 1
        if deltas:  # vectors published since the base: searched exactly beside it
            delta_scores, delta_ids = self.store.search_segments(queries, k, range(1, deltas + 1))
            scores = np.concatenate([scores, delta_scores], axis=1)
            candidates = np.concatenate([candidates, delta_ids], axis=1)
        return top_k(scores, np.where(np.isfinite(scores), candidates, -1), k)

    def _covered(self, ids: np.ndarray) -> np.ndarray:
        return self.store.live_in_base(ids)

    def _search_candidates(self, queries: np.ndarray, fetch: int, k: int):
        if self._gpu is not None and fetch <= GPU_MAX_K:
            with self._gpu_lock:  # FAISS GPU indexes are not thread-safe
                return self._gpu.search(queries, fetch)
        nprobe = self.params.faiss.get("nprobe")
        if nprobe and k > TUNED_K and self._ivf is not None:
            # Tuned for the top 10: the true top k of a larger k lies in more lists.
            wider = min(self._ivf.nlist, math.ceil(nprobe * math.sqrt(k / TUNED_K)))
            return self.index.search(queries, fetch, params=self._ivf_params(nprobe=wider))
        return self.index.search(queries, fetch)

    def vector(self, item_id: int) -> np.ndarray:
        """The stored (exact) vector of one id."""
        return self.store.vector(item_id)

    def on_search_device(self) -> "AnnIndex":
        """Also hold a GPU copy when FAISS sees a GPU and supports this type there."""
        import faiss

        if getattr(faiss, "get_num_gpus", lambda: 0)() > 0:
            try:
                self._gpu = faiss.index_cpu_to_all_gpus(self.index)
                apply_params(self._gpu, self.params)
            except (RuntimeError, AttributeError) as exc:  # e.g. fast-scan PQ has no GPU version
                log.warning("searching the approximate index on the CPU: %s", _faiss_reason(exc))
                self._gpu = None
        return self
