"""`spyglass import`: precomputed embeddings into the catalog and the index, through the one publish path."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
from sqlalchemy import select
from tqdm import tqdm

from spyglass.search.encoder import embedding_dim, load_encoder
from spyglass.search.errors import BadInput, ModelMismatch
from spyglass.search.catalog import live_generation
from spyglass.search.paths import is_inside
from spyglass.search.schema import MediaItem, MediaRoot

from .embedding_files import EmbeddingPart, check_vectors, find_parts, metadata_batches, metadata_rows, open_vectors
from .jobs import IndexJob, IndexSummary
from .publish import PendingChanges
from .scan import Skipped

_LOOKUP_CHUNK = 1000


class ConfigOnlyEncoder:
    """Stands in for the encoder where only its dimension is needed: importing loads no weights."""

    image_tower = None

    def __init__(self, dim: int):
        self.dim = dim


class ImportJob(IndexJob):
    """Import one embeddings folder (or .npy file) under the configured model; call run()."""

    def __init__(self, settings, source: Path, media_root: str | None = None, **options):
        super().__init__(settings, [media_root] if media_root else [], **options)
        self.source = Path(source).expanduser()
        self.base = self.source if self.source.is_dir() else self.source.parent
        self._encoder = ConfigOnlyEncoder(embedding_dim(settings.model, settings.pretrained or None))

    def _check_model(self) -> None:
        """One index never mixes two models: the vectors must be the live index's model's."""
        with self.sessions() as session:
            live = live_generation(session)
        if live is None:
            return
        if (live.model.architecture, live.model.pretrained) != self.identity:
            raise ModelMismatch(f"the index holds vectors of {live.model.describe()}; these are being "
                                f"imported as {self.identity[0]} ({self.identity[1] or 'random weights'})",
                                "import them under the live model (--model/--pretrained), or index with theirs")
        if live.model.dim != self._encoder.dim:
            raise BadInput(f"the live index holds {live.model.dim}-number vectors; the model makes {self._encoder.dim}")

    def _index_roots(self) -> None:
        parts = find_parts(self.source)
        self._check_all(parts)  # before anything is written: a bad file refuses the whole import
        with self.sessions() as session:
            self._roots = sorted(session.scalars(select(MediaRoot.path)), key=len, reverse=True)
            known_roots = {row.path: row.id for row in session.scalars(select(MediaRoot))}
        self._root_by_path = known_roots
        pending = PendingChanges()
        total = sum(part.rows() for part in parts)
        with tqdm(total=total, unit="vec", desc="Importing", file=sys.stderr, disable=not self.progress,
                  dynamic_ncols=True) as bar:
            for part in parts:
                self._import_part(part, pending, bar)
        if pending:
            self._publish(pending)
        self._maintain_index()
        self._update_labels()

    def _check_all(self, parts: list[EmbeddingPart]) -> None:
        for part in parts:
            vectors = open_vectors(part, self._encoder.dim)
            rows = metadata_rows(part)
            if rows != len(vectors):
                raise BadInput(f"{part.metadata} has {rows:,} rows but {part.vectors} holds {len(vectors):,} vectors",
                               "row N of the metadata must describe vector N")
            check_vectors(part, vectors)

    def _import_part(self, part: EmbeddingPart, pending: PendingChanges, bar) -> None:
        vectors = open_vectors(part, self._encoder.dim)
        start = 0
        for batch in metadata_batches(part):
            count = len(next(iter(batch.values())))
            chunk = np.array(vectors[start:start + count], dtype=np.float32)  # a copy: the file is mapped read-only
            chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
            items = [self._fields(batch, row, f"{part.metadata.name} row {start + row}") for row in range(count)]
            known = self._known_ids([fields["path"] for fields in items if fields])
            for fields, vector in zip(items, chunk, strict=True):
                if fields is None:
                    continue
                if fields["path"] in known:
                    pending.reembedded.append((known[fields["path"]], fields, vector))
                    self.summary.updated += 1
                else:
                    pending.new.append((fields, vector))
                    self.summary.added += 1
            self.summary.embedded += count
            start += count
            bar.update(count)
            if pending.vector_count >= self.settings.checkpoint_items:
                self._publish(pending)
                pending.clear()

    def _fields(self, batch: dict, row: int, where: str) -> dict | None:
        """An item's catalog fields: a local file's own facts, or a remote item's URL and caption."""
        caption, local, url = (batch[name][row] if name in batch else None
                               for name in ("caption", "image_path", "url"))
        if local:
            path = os.path.abspath(os.path.join(self.base, os.path.expanduser(str(local))))
            if os.path.isfile(path):
                return self._local_fields(path, caption, url, where)
            if not url:
                self._skip(Skipped(path, f"{where}: the file does not exist and the row has no url"))
                return None
        if not url:
            self._skip(Skipped(where, "the row has neither an image_path nor a url"))
            return None
        url = str(url)
        return {"path": url, "url": url, "caption": caption, "root_id": None, "size": 0, "mtime_ns": 0,
                "content_hash": hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest(),
                "kind": "image", "format": _format_of(url), "width": 0, "height": 0}

    def _local_fields(self, path: str, caption, url, where: str) -> dict:
        from PIL import Image

        stat = os.stat(path)
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        try:
            with Image.open(path) as image:  # the header only: nothing is decoded
                image_format, (width, height) = image.format or _format_of(path), image.size
        except Exception:  # noqa: BLE001 - an unreadable header still leaves a usable vector
            image_format, width, height = _format_of(path), 0, 0
        root = next((r for r in self._roots if is_inside(path, r)), None)
        return {"path": path, "url": str(url) if url else None, "caption": caption,
                "root_id": self._root_by_path.get(root) if root else None, "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns, "content_hash": digest.hexdigest(), "kind": "image",
                "format": image_format[:16], "width": width, "height": height}

    def _known_ids(self, paths: list[str]) -> dict[str, int]:
        found = {}
        with self.sessions() as session:
            for start in range(0, len(paths), _LOOKUP_CHUNK):
                chunk = paths[start:start + _LOOKUP_CHUNK]
                found.update((path, item_id) for path, item_id in session.execute(
                    select(MediaItem.path, MediaItem.id).where(MediaItem.path.in_(chunk))))
        return found

    def _update_labels(self) -> None:
        if self.settings.labels:  # labels need the text tower: the real model, only now
            self._encoder = load_encoder(self.settings.model, self.settings.pretrained, self.settings.device,
                                         self.settings.model_cache, self.settings.precision)
        super()._update_labels()


def _format_of(name: str) -> str:
    return os.path.splitext(name.split("?", 1)[0])[1].lstrip(".").upper()[:16]


def run_import(settings, source: Path, media_root: str | None = None, **options) -> IndexSummary:
    """Import precomputed embeddings (see ImportJob)."""
    return ImportJob(settings, source, media_root, **options).run()
