"""Embedding folders an attacker or an unlucky operator could hand to `spyglass import`, made from a seed.

Each case mixes: a layout (one .npy with CSV or parquet metadata, or clip-retrieval's folders),
vectors of every dtype, shape and magnitude (NaN, infinities, zeros, 1e-300, 1e300, float16
overflow), damaged .npy files, metadata columns of the wrong type, row counts that disagree,
and rows whose url, image_path and caption are hostile: other schemes, local paths, files
outside the library, the catalog itself, FIFOs, links out, text that is not UTF-8, NUL,
controls, huge values, and duplicates.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DIM = 32  # the tiny test model's


@dataclass
class Library:
    """The indexed library the cases aim at, and the places outside it."""

    root: Path
    indexed: list[str]  # files the indexer embedded: never to be replaced
    fresh: list[str]  # images not indexed yet: an import may add them
    traps: list[str]  # a FIFO, a link out, a folder, a non-image, a video name, a missing file
    outside: list[str]  # files outside every media folder, the catalog among them


@dataclass
class Case:
    """One hostile folder: where it is, and what was put in it (for the failure message)."""

    seed: int
    source: Path
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"case {self.seed} ({self.source}): " + "; ".join(self.notes)


def make_case(seed: int, folder: Path, library: Library) -> Case:
    """Write one hostile embeddings folder under folder; returns what to import."""
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    case = Case(seed, folder)
    layout = rng.choice(["csv", "parquet", "clip-retrieval", "clip-retrieval"])
    case.notes.append(layout)
    if layout == "clip-retrieval":
        (folder / "img_emb").mkdir()
        (folder / "metadata").mkdir()
        for part in range(rng.choice([1, 1, 2])):
            _write_part(rng, folder / "img_emb" / f"img_emb_{part}.npy",
                        folder / "metadata" / f"metadata_{part}.parquet", library, case)
        return case
    vectors = folder / "vectors.npy"
    _write_part(rng, vectors, vectors.with_suffix("." + layout), library, case)
    case.source = vectors if rng.random() < 0.5 else folder
    return case


def _write_part(rng: random.Random, vectors_path: Path, metadata_path: Path, library: Library, case: Case) -> None:
    rows = rng.randint(1, 12)
    _write_vectors(rng, vectors_path, rows, case)
    meta_rows = rows if rng.random() > 0.08 else max(0, rows + rng.choice([-1, 1, 3]))
    if meta_rows != rows:
        case.notes.append(f"{meta_rows} metadata rows for {rows} vectors")
    columns = _columns(rng, meta_rows, library, case)
    if metadata_path.suffix == ".csv":
        _write_csv(rng, metadata_path, columns, case)
    else:
        _write_parquet(rng, metadata_path, columns, case)


def _write_vectors(rng: random.Random, path: Path, rows: int, case: Case) -> None:
    damage = rng.random()
    if damage < 0.03:
        case.notes.append("a FIFO for vectors")
        os.mkfifo(path)
        return
    if damage < 0.07:
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % (
            rng.choice([-5, 2**62, 3]), rng.choice([DIM, -1]))
        header += " " * (63 - len(header) % 64) + "\n"
        path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
                         + os.urandom(rng.randint(0, 256)))
        case.notes.append("a forged .npy header")
        return
    if damage < 0.10:
        path.write_bytes(os.urandom(rng.randint(0, 400)))
        case.notes.append("random bytes for vectors")
        return
    dtype = rng.choice([np.float32, np.float32, np.float32, np.float16, np.float64, np.float64, np.int32, np.complex64])
    shape = (rows, DIM)
    odd = rng.random()
    if odd < 0.05:
        shape = (rows, rng.choice([DIM - 1, DIM + 1, 1]))
    elif odd < 0.08:
        shape = (rows * DIM,) if rng.random() < 0.5 else (rows, DIM, 1)
    values = np_rng(rng).normal(size=shape)
    extreme = rng.random() < 0.25  # rows of any magnitude, some past what the dtype holds
    poisoned = rng.random() < 0.1  # one row of NaN, infinity or zeros
    for row in range(shape[0] if len(shape) > 1 else 0):
        if extreme:
            values[row] *= 10.0 ** rng.uniform(-300, 300)
    if poisoned and len(shape) > 1:
        row = rng.randrange(shape[0])
        if rng.random() < 0.5:
            values[row, rng.randrange(shape[1])] = rng.choice([np.nan, np.inf, -np.inf])
        else:
            values[row] = 0.0
    if extreme or poisoned:
        case.notes.append("extreme magnitudes" if extreme else "a poisoned row")
    with np.errstate(all="ignore"):
        array = values.astype(dtype)
    case.notes.append(f"{array.dtype} {array.shape}")
    np.save(path, array)
    if rng.random() < 0.04:  # cut short after the header
        data = path.read_bytes()
        path.write_bytes(data[:rng.randint(64, max(65, len(data) - 1))])
        case.notes.append("truncated")


def np_rng(rng: random.Random) -> np.random.Generator:
    return np.random.default_rng(rng.randrange(2**32))


def _columns(rng: random.Random, rows: int, library: Library, case: Case) -> dict[str, list]:
    wanted = rng.choice([["url"], ["url", "caption"], ["image_path", "caption"], ["image_path", "url", "caption"],
                         ["image_path", "url", "caption"], ["caption"], ["url", "caption", "extra"]])
    columns: dict[str, list] = {}
    for name in wanted:
        pick = {"url": _url, "image_path": _image_path, "caption": _caption, "extra": _caption}[name]
        columns[name] = [pick(rng, library) for _ in range(rows)]
        if rows > 1 and rng.random() < 0.3:  # LAION repeats rows
            source = rng.randrange(rows)
            columns[name][rng.randrange(rows)] = columns[name][source]
            case.notes.append(f"a repeated {name}")
    return columns


def _url(rng: random.Random, library: Library):
    n = rng.randrange(10_000)
    return rng.choice([
        f"https://images.example.org/{n}.jpg", f"http://cdn.test/a/{n}.png?size=large&x=1",
        f"HTTPS://UPPER.TEST/{n}.JPG", f"https://例え.jp/ü/{n}.webp", "javascript:alert(1)",
        "file:///etc/passwd", rng.choice(library.indexed), rng.choice(library.fresh), "", None, None,
        f"https://x.test/with space/{n}.jpg", "https://x.test/" + "p" * 5000, "https://x.test/\x00nul",
        b"https://x.test/\xff\xfe.jpg", "//no-scheme.test/x.jpg", "https:///no-host", "data:image/png;base64,AAAA",
        f"https://images.example.org/{n % 7}.jpg",
    ])


def _image_path(rng: random.Random, library: Library):
    return rng.choice([
        rng.choice(library.indexed), rng.choice(library.fresh), rng.choice(library.fresh),
        rng.choice(library.traps), rng.choice(library.outside), "relative/missing.png",
        os.path.relpath(rng.choice(library.fresh), "/"), "../" * 12 + "etc/passwd", "/proc/self/environ",
        "~/.ssh/id_rsa", "", None, "a\x00b.png", b"\xff\xfe.png", "x" * 5000 + ".png",
        str(Path(library.root) / ".." / Path(library.root).name / "missing.jpg"),
    ])


def _caption(rng: random.Random, library: Library):
    return rng.choice([
        "a red bicycle leaning on a wall", "", None, "caf\xe9 au lait".encode("latin-1"), "naïve café — 猫 🐈",
        "\x00\x01\x1b[31mred\x1b[0m", "\u202eevil\u202c", "<script>alert(1)</script>", "line\nbreak\r\n",
        "é" * rng.choice([10, 5000, 40_000]), b"\xc3\x28 broken utf-8", rng.randrange(100),
        {"en": "a dict"}, ["a", "list"],
    ])


def _write_csv(rng: random.Random, path: Path, columns: dict[str, list], case: Case) -> None:
    def cell(value) -> bytes:
        if value is None:
            return b""
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")
        return b'"' + raw.replace(b'"', b'""') + b'"'

    names = list(columns)
    lines = [b",".join(name.encode() for name in names)]
    rows = len(next(iter(columns.values()))) if columns else 0
    lines += [b",".join(cell(columns[name][row]) for name in names) for row in range(rows)]
    if rng.random() < 0.05:
        lines.append(b'"unterminated')
        case.notes.append("a broken CSV line")
    path.write_bytes(b"\n".join(lines) + b"\n")


def _write_parquet(rng: random.Random, path: Path, columns: dict[str, list], case: Case) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = {}
    for name, values in columns.items():
        kinds = {type(v) for v in values if v is not None}
        if kinds <= {str}:
            kind = rng.choice([pa.string(), pa.large_string(), pa.binary()])
            arrays[name] = pa.array([v.encode("utf-8", "surrogatepass") if kind == pa.binary() and v is not None
                                     else v for v in values], type=kind)
            if rng.random() < 0.2:
                arrays[name] = arrays[name].dictionary_encode()
        elif kinds <= {str, bytes}:
            arrays[name] = pa.array([v.encode("utf-8", "surrogatepass") if isinstance(v, str) else v
                                     for v in values], type=pa.binary())
        else:
            case.notes.append(f"{name} of mixed types {sorted(k.__name__ for k in kinds)}")
            try:
                arrays[name] = pa.array(values)
            except (pa.ArrowException, TypeError, ValueError):
                arrays[name] = pa.array([repr(v) for v in values])  # what a careless export would write
    pq.write_table(pa.table(arrays), path, row_group_size=rng.choice([2, 5, 1000]))
