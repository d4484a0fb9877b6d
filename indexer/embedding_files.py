"""Precomputed embeddings on disk: clip-retrieval's output folder, or .npy files with metadata beside them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from spyglass.search.errors import BadInput

# Rows read, checked and imported at a time: bounded memory at any library size.
BATCH_ROWS = 10_000
PATH_COLUMNS = ("image_path", "url")
_PART_NUMBER = re.compile(r"_(\d+)$")


@dataclass(frozen=True)
class EmbeddingPart:
    """One vectors file and the metadata file whose rows describe its rows, in order."""

    vectors: Path
    metadata: Path

    def rows(self) -> int:
        """How many vectors the part holds (the file header alone is read)."""
        return int(np.load(self.vectors, mmap_mode="r").shape[0])


def find_parts(path: Path) -> list[EmbeddingPart]:
    """clip-retrieval's `img_emb/img_emb_N.npy` + `metadata/metadata_N.parquet`, or every `x.npy`
    beside an `x.parquet` or `x.csv` (path may also name one .npy file)."""
    path = path.expanduser()
    if not path.exists():
        raise BadInput(f"{path} does not exist", "give an embeddings folder or a .npy file")
    if path.is_file():
        return [_with_metadata(path)]
    if (path / "img_emb").is_dir():
        parts = []
        for vectors in sorted((path / "img_emb").glob("img_emb_*.npy"), key=_part_number):
            metadata = path / "metadata" / vectors.name.replace("img_emb_", "metadata_").replace(".npy", ".parquet")
            if not metadata.is_file():
                raise BadInput(f"{vectors} has no metadata file: {metadata} is missing",
                               "clip-retrieval writes metadata/metadata_N.parquet beside img_emb/img_emb_N.npy")
            parts.append(EmbeddingPart(vectors, metadata))
        if not parts:
            raise BadInput(f"{path / 'img_emb'} holds no img_emb_*.npy files")
        return parts
    parts = [_with_metadata(vectors) for vectors in sorted(path.glob("*.npy"))]
    if not parts:
        raise BadInput(f"{path} holds no .npy files and no img_emb folder",
                       "give clip-retrieval's embeddings folder, or .npy files with .parquet/.csv metadata")
    return parts


def _with_metadata(vectors: Path) -> EmbeddingPart:
    if vectors.suffix != ".npy":
        raise BadInput(f"{vectors} is not a .npy file")
    for suffix in (".parquet", ".csv"):
        if vectors.with_suffix(suffix).is_file():
            return EmbeddingPart(vectors, vectors.with_suffix(suffix))
    raise BadInput(f"{vectors} has no metadata file beside it",
                   f"put its rows' image_path or url (and caption) in {vectors.with_suffix('.parquet').name} "
                   f"or {vectors.with_suffix('.csv').name}")


def _part_number(path: Path) -> int:
    match = _PART_NUMBER.search(path.stem)
    return int(match[1]) if match else -1


def open_vectors(part: EmbeddingPart, dim: int) -> np.ndarray:
    """The part's vectors, memory-mapped, refused unless they are rows of `dim` numbers."""
    try:
        vectors = np.load(part.vectors, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise BadInput(f"{part.vectors} is not a readable .npy array: {exc}") from None
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise BadInput(f"{part.vectors} holds a {vectors.dtype} array of shape {vectors.shape}",
                       "expected one row of float numbers per image")
    if vectors.shape[1] != dim:
        raise BadInput(f"{part.vectors} holds {vectors.shape[1]}-number vectors; the model makes {dim}",
                       "import them under the model that made them: --model/--pretrained, or "
                       "SPYGLASS_MODEL/SPYGLASS_PRETRAINED")
    return vectors


def metadata_batches(part: EmbeddingPart) -> Iterator[dict[str, list]]:
    """The metadata rows in batches of columns: image_path and/or url, and caption when present."""
    import pyarrow as pa

    try:
        if part.metadata.suffix == ".parquet":
            import pyarrow.parquet as pq

            reader = pq.ParquetFile(part.metadata)
            names = reader.schema_arrow.names
            batches = reader.iter_batches(batch_size=BATCH_ROWS, columns=_wanted(names, part))
        else:
            import pyarrow.csv as pcsv

            reader = pcsv.open_csv(part.metadata, read_options=pcsv.ReadOptions(block_size=1 << 22),
                                   convert_options=pcsv.ConvertOptions(strings_can_be_null=True))
            names = reader.schema.names
            wanted = _wanted(names, part)
            batches = (batch.select(wanted) for batch in reader)
        for batch in batches:
            yield {name: batch.column(name).to_pylist() for name in batch.schema.names}
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInput(f"{part.metadata} could not be read: {exc}") from None


def metadata_rows(part: EmbeddingPart) -> int:
    """How many rows the metadata holds: from a parquet file's footer, or by reading a CSV once.

    Its columns are checked too, so a missing one is refused before anything is written.
    """
    if part.metadata.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            reader = pq.ParquetFile(part.metadata)
        except (pa.ArrowInvalid, OSError) as exc:
            raise BadInput(f"{part.metadata} could not be read: {exc}") from None
        _wanted(reader.schema_arrow.names, part)
        return reader.metadata.num_rows
    return sum(len(next(iter(batch.values()))) for batch in metadata_batches(part))


def _wanted(names: list[str], part: EmbeddingPart) -> list[str]:
    present = [name for name in PATH_COLUMNS if name in names]
    if not present:
        raise BadInput(f"{part.metadata} has no image_path or url column (it has: {', '.join(names[:10])})",
                       "each row needs the image's local path (image_path) or its url")
    return present + (["caption"] if "caption" in names else [])


def check_vectors(part: EmbeddingPart, vectors: np.ndarray) -> None:
    """Refuse NaN, infinite or all-zero rows, naming the first."""
    for start in range(0, len(vectors), BATCH_ROWS):
        chunk = np.asarray(vectors[start:start + BATCH_ROWS], dtype=np.float32)
        bad = ~np.isfinite(chunk).all(axis=1) | ~(np.abs(chunk).sum(axis=1) > 0)
        if bad.any():
            row = start + int(np.argmax(bad))
            raise BadInput(f"{part.vectors} row {row}: the vector is not finite or is all zeros",
                           "nothing was imported; fix or drop that row")
