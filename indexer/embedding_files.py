"""Precomputed embeddings on disk: clip-retrieval's output folder, or .npy files with metadata beside them."""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from spyglass.search.errors import BadInput

from .import_rows import CAPTION_READ_BYTES, MAX_CAPTION_CHARS, MAX_PATH_CHARS, MAX_URL_CHARS

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
        return int(_load_npy(self.vectors).shape[0])


def find_parts(path: Path) -> list[EmbeddingPart]:
    """clip-retrieval's `img_emb/img_emb_N.npy` + `metadata/metadata_N.parquet`, or every `x.npy`
    beside an `x.parquet` or `x.csv` (path may also name one .npy file)."""
    path = path.expanduser()
    if not path.exists():
        raise BadInput(f"{path} does not exist", "give an embeddings folder or a .npy file")
    if not path.is_dir():
        _regular_file(path)  # a FIFO or a device named as the source is refused, never read
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


def _regular_file(path: Path) -> None:
    """Refuse what is not a regular file: a FIFO would hang the import under the indexer lock."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise BadInput(f"{path} cannot be read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise BadInput(f"{path} is not a regular file", "give .npy and metadata files, not pipes or devices")


def _load_npy(path: Path) -> np.ndarray:
    """A .npy file memory-mapped, its header checked; BadInput for anything else."""
    _regular_file(path)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - a hostile header raises ValueError, OverflowError, EOFError, ...
        raise BadInput(f"{path} is not a readable .npy array: {type(exc).__name__}: "
                       f"{str(exc).strip()[:200]}") from None


def open_vectors(part: EmbeddingPart, dim: int) -> np.ndarray:
    """The part's vectors, memory-mapped, refused unless they are rows of `dim` numbers."""
    vectors = _load_npy(part.vectors)
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise BadInput(f"{part.vectors} holds a {vectors.dtype} array of shape {vectors.shape}",
                       "expected one row of float numbers per image")
    if vectors.shape[1] != dim:
        raise BadInput(f"{part.vectors} holds {vectors.shape[1]}-number vectors; the model makes {dim}",
                       "import them under the model that made them: --model/--pretrained, or "
                       "SPYGLASS_MODEL/SPYGLASS_PRETRAINED")
    return vectors


def metadata_batches(part: EmbeddingPart) -> Iterator[dict[str, list]]:
    """The metadata rows in batches of columns: image_path and/or url, and caption when present.

    Values come as str or bytes (a CSV's columns are read as bytes, so that import_rows decides
    how text that is not UTF-8 is read), each cut a little past what a row may hold, so that
    a hostile 40 MB caption never becomes a 40 MB Python string.
    """
    import pyarrow as pa

    for batch in _arrow_batches(part):
        try:
            columns = {name: _bounded(batch.column(name), name).to_pylist() for name in batch.schema.names}
        except (pa.ArrowException, MemoryError) as exc:
            raise BadInput(f"{part.metadata} could not be read: {type(exc).__name__}: "
                           f"{str(exc).strip()[:300]}") from None
        yield columns


def metadata_rows(part: EmbeddingPart) -> int:
    """How many rows the metadata holds, reading every one: a file that breaks part way through
    is refused here, before anything is written (the columns are checked too)."""
    return sum(batch.num_rows for batch in _arrow_batches(part))


def _arrow_batches(part: EmbeddingPart) -> Iterator:
    """The wanted columns of the metadata file, batch by batch; BadInput when it cannot be read."""
    import pyarrow as pa

    _regular_file(part.metadata)
    try:
        if part.metadata.suffix == ".parquet":
            import pyarrow.parquet as pq

            reader = pq.ParquetFile(part.metadata)
            wanted = _wanted(reader.schema_arrow, part)
            yield from reader.iter_batches(batch_size=_batch_rows(reader, wanted), columns=wanted)
        else:
            import pyarrow.csv as pcsv

            reader = pcsv.open_csv(part.metadata, read_options=pcsv.ReadOptions(block_size=1 << 22),
                                   convert_options=pcsv.ConvertOptions(
                                       strings_can_be_null=True,
                                       column_types={name: pa.binary() for name in TEXT_COLUMNS}))
            wanted = _wanted(reader.schema, part)
            for batch in reader:
                yield batch.select(wanted)
    except (pa.ArrowException, OSError, MemoryError) as exc:
        raise BadInput(f"{part.metadata} could not be read: {type(exc).__name__}: "
                       f"{str(exc).strip()[:300]}") from None


TEXT_COLUMNS = ("image_path", "url", "caption")
# Values are cut at this many characters (bytes, for bytes) before they reach Python; the row
# rules then cut a caption, or refuse a url or path, that is longer than allowed.
_CUT = {"image_path": MAX_PATH_CHARS + 1, "url": MAX_URL_CHARS + 1, "caption": MAX_CAPTION_CHARS + 1}
# A parquet batch holds at most this many bytes of the wanted columns, by the file's own count.
_BATCH_BYTES = 64 << 20


def _wanted(schema, part: EmbeddingPart) -> list[str]:
    names = schema.names
    present = [name for name in PATH_COLUMNS if name in names]
    if not present:
        raise BadInput(f"{part.metadata} has no image_path or url column (it has: {', '.join(names[:10])})",
                       "each row needs the image's local path (image_path) or its url")
    wanted = present + (["caption"] if "caption" in names else [])
    for name in wanted:
        kind = schema.field(name).type
        if not _is_text(kind):
            raise BadInput(f"the {name} column of {part.metadata} holds {kind} values, not text",
                           "write image_path, url and caption as strings")
    return wanted


def _is_text(kind) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
            or pa.types.is_large_binary(kind) or pa.types.is_null(kind)
            or getattr(pa.types, "is_string_view", lambda _: False)(kind)
            or getattr(pa.types, "is_binary_view", lambda _: False)(kind))


def _bounded(column, name: str):
    """The column with every value cut at _CUT[name] characters (or bytes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_null(kind):
        return column
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or str(kind) == "binary_view":
        # 4 bytes a character at most: the row rules see every character they would keep.
        return pc.binary_slice(column, 0, CAPTION_READ_BYTES if name == "caption" else 4 * _CUT[name])
    return pc.utf8_slice_codeunits(column, 0, _CUT[name])


def _batch_rows(reader, wanted: list[str]) -> int:
    """Rows a batch may hold so that the wanted columns take about _BATCH_BYTES, at most BATCH_ROWS."""
    meta = reader.metadata
    if not meta.num_rows:
        return BATCH_ROWS
    positions = [reader.schema_arrow.get_field_index(name) for name in wanted]
    total = 0
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for position in positions:
            if position < row_group.num_columns:
                total += row_group.column(position).total_uncompressed_size
    per_row = max(1, total // meta.num_rows)
    return int(max(1, min(BATCH_ROWS, _BATCH_BYTES // per_row)))


def unit_rows(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rows as float32 unit vectors, and which rows cannot be one (non-finite, all zeros).

    Scaled by their largest value first and normalised in float64, so rows of any finite
    magnitude (1e-30 or 1e30, where float32 squares underflow or overflow) keep their direction;
    the float32 result is checked again, since that is what the index holds.
    """
    rows = np.asarray(chunk, dtype=np.float64)
    with np.errstate(all="ignore"):
        finite = np.isfinite(rows).all(axis=1)
        peak = np.where(finite, np.abs(np.where(np.isfinite(rows), rows, 0.0)).max(axis=1, initial=0.0), 0.0)
        usable = finite & (peak > 0)
        scaled = rows / np.where(usable, peak, 1.0)[:, None]
        norms = np.linalg.norm(np.where(usable[:, None], scaled, 0.0), axis=1)
        unit = (np.where(usable[:, None], scaled, 0.0) / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
        length = np.linalg.norm(unit.astype(np.float64), axis=1)
    good = usable & np.isfinite(unit).all(axis=1) & (np.abs(length - 1.0) < 1e-3)
    return unit, good


def check_vectors(part: EmbeddingPart, vectors: np.ndarray) -> None:
    """Refuse rows that are not finite, all zeros, or no unit vector in float32, naming the first."""
    for start in range(0, len(vectors), BATCH_ROWS):
        _, good = unit_rows(vectors[start:start + BATCH_ROWS])
        if not good.all():
            row = start + int(np.argmin(good))
            raise BadInput(f"{part.vectors} row {row}: the vector is not finite or is all zeros",
                           "nothing was imported; fix or drop that row")
