"""`spyglass import`: precomputed embeddings into the catalog and the index, through the one publish path."""

from __future__ import annotations

import io
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from sqlalchemy import func, select
from tqdm import tqdm

from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.catalog.queries import live_generation
from spyglass.search.catalog.schema import CatalogState, MediaItem, MediaRoot
from spyglass.search.display import printable
from spyglass.search.errors import BadInput, MediaFileError, ModelMismatch
from spyglass.search.media.hashing import content_hash
from spyglass.search.media.images import IMAGE_EXTENSIONS, SUPPORTED_FORMATS, register_heif
from spyglass.search.media.video_frames import is_video
from spyglass.search.model.encoder import embedding_dim, encoder_for, model_identity
from spyglass.search.model.zero_shot import LabelSet

from .embedding_files import EmbeddingPart, check_vectors, find_parts, metadata_batches, metadata_rows, open_vectors, unit_rows
from .import_rows import MAX_CAPTION_CHARS, RowRefused, RowText, row_text
from .labelling import update_labels
from .maintain import maintain_index
from .publish import HIGHEST_ID_KEY, PendingChanges
from .recorder import IndexSummary
from .runs import checked_root, finish_run, interrupted, locked, start_run
from .scan import Skipped
from .target import TargetIndex
from .texts.stage import text_sources, update_texts

_LOOKUP_CHUNK = 1000


@dataclass
class ImportSummary(IndexSummary):
    """What one import did: the index run's counts, and what was done to its rows."""

    merged: int = 0  # rows naming an item an earlier row of this import named
    recoded: int = 0  # captions that were not UTF-8, read as Windows-1252
    shortened: int = 0  # captions cut at MAX_CAPTION_CHARS

    def line(self) -> str:
        """'46 imported, 0 replaced, 2 skipped (1.2 s); 3 duplicate rows merged (the first kept)'."""
        notes = []
        if self.merged:
            notes.append(f"{self.merged:,} duplicate rows merged (the first of each kept)")
        if self.recoded:
            notes.append(f"{self.recoded:,} captions not in UTF-8 read as Windows-1252")
        if self.shortened:
            notes.append(f"{self.shortened:,} captions cut at {MAX_CAPTION_CHARS:,} characters")
        return (f"{self.added:,} imported, {self.updated:,} replaced, {len(self.skipped):,} skipped "
                f"({self.seconds:.1f} s)" + (f"; {', '.join(notes)}" if notes else "")
                + (f"\n{self.words_line}" if self.words_line else ""))


@dataclass(frozen=True)
class _Known:
    id: int
    origin: str


class ImportJob:
    """Import one embeddings folder (or .npy file) under the configured model; call run().

    Rows obey the indexer's rules (see import_rows for the text): a local file must lie in a
    media folder (a recorded one, or --media-root), be a regular image file within
    SPYGLASS_MAX_FILE_BYTES, reached as SPYGLASS_FOLLOW_SYMLINKS allows. An item the indexer
    embedded is never replaced; rows naming one item twice are merged, the first kept. What
    it shares with an index run (lock, run rows, publish, maintenance, labels) it calls; it
    loads no weights unless labels are to be computed.
    """

    def __init__(self, settings, source: Path, media_root: str | None = None, progress: bool = True,
                 echo: Callable[[str], None] | None = None):
        self.settings = settings
        self.echo = echo or (lambda message: print(message, file=sys.stderr))
        self.progress = progress
        self.roots = [checked_root(media_root)] if media_root else []
        self.source = Path(source).expanduser()
        self.base = self.source if self.source.is_dir() else self.source.parent
        self.db = create_db_engine(settings.db_url, writer=True)
        self.sessions = session_factory(self.db)
        self.identity = model_identity(settings.model, settings.pretrained)
        self.dim = embedding_dim(settings.model, settings.pretrained)
        self.summary = ImportSummary()

    def run(self) -> "ImportSummary":
        """Check everything, then import, publish and maintain, under the indexer lock."""
        started = time.monotonic()
        with locked(self.db, self.sessions, self.settings, self.echo):
            self._check_model()
            if self.settings.labels:
                LabelSet.read(self.settings.labels)  # a bad labels file stops the run before any work
            text_sources(self.settings)  # so does SPYGLASS_OCR=on without RapidOCR
            run = start_run(self.sessions, self.roots, self.settings)
            self.media = run.media
            target = TargetIndex(self.sessions, self.settings, self.identity, lambda: self.dim, lambda: None)
            try:
                self._import(target)
            except KeyboardInterrupt:
                raise interrupted(self.sessions, run.run_id, self.roots, self.summary.counts(),
                                  self.summary.generation_id) from None
            except BaseException as exc:
                finish_run(self.sessions, run.run_id, self.roots, self.summary.counts(), "failed",
                           f"{type(exc).__name__}: {exc}")
                raise
            finally:
                self.summary.seconds = time.monotonic() - started
            finish_run(self.sessions, run.run_id, self.roots, self.summary.counts(), "done")
        return self.summary

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
        if live.model.dim != self.dim:
            raise BadInput(f"the live index holds {live.model.dim}-number vectors; the model makes {self.dim}")

    def _import(self, target: TargetIndex) -> None:
        parts = find_parts(self.source)
        self._check_all(parts)  # before anything is written: a bad file refuses the whole import
        with self.sessions() as session:
            self._root_ids = {row.path: row.id for row in session.scalars(select(MediaRoot))}
            highest = session.scalar(select(func.max(MediaItem.id))) or 0
            given = session.get(CatalogState, HIGHEST_ID_KEY)
        # Items with a higher id are new in this import; `_replaced` marks older ones it replaced.
        # A row naming either again is a duplicate. One byte an id: 100 MB at 100 M items.
        self._first_new_id = max(highest, int(given.value) if given else 0) + 1
        self._replaced = np.zeros(self._first_new_id, dtype=bool)
        self._pending_paths: set[str] = set()
        pending = PendingChanges()
        total = sum(part.rows() for part in parts)
        with tqdm(total=total, unit="vec", desc="Importing", file=sys.stderr, disable=not self.progress,
                  dynamic_ncols=True) as bar:
            for part in parts:
                self._import_part(part, pending, bar, target)
        if pending:
            self._publish(target, pending)
        generation = maintain_index(self.sessions, self.settings, target, self.echo, self.progress)
        self.summary.generation_id = generation or self.summary.generation_id
        if self.settings.labels:  # labels need the text tower: the real model, only now
            self.summary.labelled = update_labels(self.sessions, LabelSet.read(self.settings.labels),
                                                  lambda: target.store, lambda: encoder_for(self.settings))
        # Every item, not only this import's: an import names no folder, and unchanged items cost a lookup.
        self.summary.words_line = update_texts(self.sessions, self.settings, None, self.echo, self.progress).line()

    def _publish(self, target: TargetIndex, pending: PendingChanges) -> None:
        self.summary.generation_id = target.publish(pending) or self.summary.generation_id

    def _skip(self, skipped: Skipped) -> None:
        self.summary.skipped.append(skipped)
        self.echo(f"skipping {printable(skipped.path)}: {printable(skipped.reason)}")

    def _check_all(self, parts: list[EmbeddingPart]) -> None:
        for part in parts:
            vectors = open_vectors(part, self.dim)
            rows = metadata_rows(part)
            if rows != len(vectors):
                raise BadInput(f"{part.metadata} has {rows:,} rows but {part.vectors} holds {len(vectors):,} vectors",
                               "row N of the metadata must describe vector N")
            check_vectors(part, vectors)

    def _import_part(self, part: EmbeddingPart, pending: PendingChanges, bar, target: TargetIndex) -> None:
        vectors = open_vectors(part, self.dim)
        start = 0
        for batch in metadata_batches(part):
            count = len(next(iter(batch.values())))
            unit, _ = unit_rows(vectors[start:start + count])  # every row passed check_vectors
            items = [self._fields(batch, row, f"{part.metadata.name} row {start + row}") for row in range(count)]
            known = self._known([fields["path"] for fields in items if fields])
            for fields, vector in zip(items, unit, strict=True):
                if fields is not None:
                    self._take(fields, vector, known.get(fields["path"]), pending)
            self.summary.embedded += count
            start += count
            bar.update(count)
            if pending.vector_count >= self.settings.checkpoint_items:
                self._publish(target, pending)
                pending.clear()
                self._pending_paths.clear()  # published: their ids now tell duplicates

    def _take(self, fields: dict, vector: np.ndarray, known: _Known | None, pending: PendingChanges) -> None:
        """One accepted row: a new item, a replaced imported one, or a duplicate of an earlier row."""
        path = fields["path"]
        if path in self._pending_paths or (known is not None and (
                known.id >= self._first_new_id or self._replaced[known.id])):
            self.summary.merged += 1
        elif known is not None and known.origin != "import":
            self._skip(Skipped(path, "already indexed from the library: an import never replaces its vector"))
        elif known is not None:
            pending.reembedded.append((known.id, fields, vector))
            self._replaced[known.id] = True
            self._pending_paths.add(path)
            self.summary.updated += 1
        else:
            pending.new.append((fields, vector))
            self._pending_paths.add(path)
            self.summary.added += 1

    def _fields(self, batch: dict, row: int, where: str) -> dict | None:
        """An item's catalog fields: a local file's own facts, or a remote item's URL and caption."""
        try:
            text = row_text(*(batch[name][row] if name in batch else None
                              for name in ("image_path", "url", "caption")), base=str(self.base))
            self.summary.recoded += text.recoded
            self.summary.shortened += text.shortened
            if text.image_path:
                local = self._local_fields(text, where)
                if local is not None:
                    return local
            if not text.url:
                raise RowRefused("it has neither an image_path nor a url")
        except RowRefused as refusal:
            self._skip(Skipped(where, str(refusal)))
            return None
        return {"path": text.url, "url": text.url, "caption": text.caption, "root_id": None, "size": 0,
                "mtime_ns": 0, "content_hash": content_hash(text.url.encode("utf-8")), "kind": "image",
                "format": _format_of(text.url), "width": 0, "height": 0, "origin": "import"}

    def _local_fields(self, text: RowText, where: str) -> dict | None:
        """A local file's facts, read under the media-file rules; None when it does not exist (the
        row's url, if any, stands instead); RowRefused when the rules forbid it."""
        path = text.image_path
        root = self.media.root_of(path)
        if root is None:
            raise RowRefused(f"{path} is not inside a media folder (give --media-root, or index its folder first)")
        if is_video(path):
            raise RowRefused(f"{path} is a video: `spyglass index` embeds its frames")
        if Path(path).suffix.lower() not in IMAGE_EXTENSIONS:
            raise RowRefused(f"{path} is not an image file Spyglass indexes (by its extension)")
        if not os.path.lexists(path):
            if text.url:
                return None
            raise RowRefused(f"{path} does not exist and the row has no url")
        try:
            data, info = self.media.read(path)
        except MediaFileError as exc:
            raise RowRefused(f"{path}: {exc}") from None
        image_format, width, height = _header(data)
        if image_format is None:
            raise RowRefused(f"{path} is not a readable image")
        return {"path": path, "url": text.url, "caption": text.caption, "root_id": self._root_ids.get(root),
                "size": info.st_size, "mtime_ns": info.st_mtime_ns, "content_hash": content_hash(data),
                "kind": "image", "format": image_format, "width": width, "height": height, "origin": "import"}

    def _known(self, paths: list[str]) -> dict[str, _Known]:
        found = {}
        with self.sessions() as session:
            for start in range(0, len(paths), _LOOKUP_CHUNK):
                chunk = paths[start:start + _LOOKUP_CHUNK]
                found.update((path, _Known(item_id, origin)) for path, item_id, origin in session.execute(
                    select(MediaItem.path, MediaItem.id, MediaItem.origin).where(MediaItem.path.in_(chunk))))
        return found


def _header(data: bytes) -> tuple[str | None, int, int]:
    """The image format and upright size from the header alone (nothing is decoded)."""
    from PIL import Image

    register_heif()
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in SUPPORTED_FORMATS:
                return None, 0, 0
            width, height = image.size
            try:
                turned = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF orientations that swap sides
            except Exception:  # noqa: BLE001 - a mangled EXIF block leaves the image as stored
                turned = False
            return image.format, (height if turned else width), (width if turned else height)
    except Exception:  # noqa: BLE001 - Pillow raises anything on hostile headers
        return None, 0, 0


def _format_of(name: str) -> str:
    return os.path.splitext(name.split("?", 1)[0])[1].lstrip(".").upper()[:16]


def run_import(settings, source: Path, media_root: str | None = None, **options) -> ImportSummary:
    """Import precomputed embeddings (see ImportJob)."""
    return ImportJob(settings, source, media_root, **options).run()
