"""The live approximate index, carried from one generation to the next by adds and removals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spyglass.search.catalog.schema import IndexGeneration
from spyglass.search.store.flat import generation_filename, read_faiss_file, write_index_file

from .ann_build import AnnBuild

# Rebuild (retrain and retune) when this share of the entries is stale, or the library has
# doubled since training: the lists and the tuned parameters were fitted to what was there.
STALE_FRACTION = 0.2
GROWTH_FACTOR = 2
FILE_COLUMNS = ("ann_filename", "ann_size_bytes", "ann_checksum")


@dataclass
class CarriedAnn:
    """An approximate index being carried forward, with the columns it is published under.

    It covers the base segment of the exact vectors: between compactions every generation
    shares its file, and search scores the deltas exactly beside it.
    """

    index: object  # a FAISS index that stores ids
    fields: dict  # IndexGeneration's ann_* columns, file ones excluded
    file: dict | None = None  # ann_filename, ann_size_bytes, ann_checksum while the file is current

    @classmethod
    def of_generation(cls, generation: IndexGeneration, index_dir: Path) -> "CarriedAnn | None":
        """The approximate index a generation names, read and checked; None when it has none."""
        if not generation.ann_filename:
            return None
        index = read_faiss_file(index_dir / generation.ann_filename, generation.ann_size_bytes,
                                generation.ann_checksum)
        columns = generation.ann_fields()
        file = {k: columns.pop(k) for k in FILE_COLUMNS}
        return cls(index, columns, file)

    @classmethod
    def of_build(cls, built: AnnBuild) -> "CarriedAnn":
        """A freshly built index."""
        return cls(built.ann.index, {
            "ann_factory": built.factory, "ann_params": built.ann.params.to_json(),
            "ann_recall": built.recall, "ann_query_ms": built.query_ms,
            "exact_query_ms": built.exact_query_ms, "ann_built_vectors": built.built_vectors,
            "ann_stale": 0})

    def update(self, gone: list[int], ids: np.ndarray, vectors: np.ndarray) -> None:
        """Remove the entries of removed and re-embedded items, then add the new vectors.

        Types that cannot remove (graphs) keep the old entries: search drops them, since the
        store no longer holds them or scores them by their new vector, and they count as stale.
        """
        import faiss

        self.file = None
        if gone:
            try:
                self.index.remove_ids(faiss.IDSelectorBatch(np.asarray(gone, dtype=np.int64)))
            except RuntimeError:
                self.fields["ann_stale"] = (self.fields.get("ann_stale") or 0) + len(gone)
        if len(ids):
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32),
                                    np.ascontiguousarray(ids, dtype=np.int64))

    def columns(self, index_dir: Path) -> dict:
        """Its generation columns, writing its file first when it has changed."""
        if self.file is None:
            filename = generation_filename(suffix=".ann.faiss")
            size, checksum = write_index_file(self, index_dir, filename)
            self.file = {"ann_filename": filename, "ann_size_bytes": size, "ann_checksum": checksum}
        return {**self.fields, **self.file}


def worn(built_at: int | None, stale: int | None, vector_count: int) -> bool:
    """Too many stale entries, or a library that has doubled since the index was trained."""
    built_at = max(built_at or 0, 1)
    return (stale or 0) > STALE_FRACTION * built_at or vector_count > GROWTH_FACTOR * built_at
