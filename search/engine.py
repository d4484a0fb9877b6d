"""The query engine: text, image or vector in; ranked hits with metadata out."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .catalog import Catalog
from .db import create_db_engine, session_factory
from .encoder import Encoder, load_encoder
from .errors import EmptyDatabase, InvalidImage, NoIndex, SpyglassError
from .images import decode_image
from .migrate import require_current
from .schema import IndexGeneration, MediaItem
from .settings import Settings
from .vectors import VectorIndex, read_index_file

EncoderLoader = Callable[[str, str | None], Encoder]


@dataclass(frozen=True)
class Hit:
    """One result: the item, its score and its rank (1-based)."""

    rank: int
    score: float
    item: MediaItem

    def as_dict(self) -> dict:
        """JSON-ready form."""
        item = self.item
        return {"rank": self.rank, "id": item.id, "score": round(self.score, 6), "path": item.path,
                "kind": item.kind, "format": item.format, "width": item.width,
                "height": item.height, "size": item.size, "mtime_ns": item.mtime_ns,
                "content_hash": item.content_hash}


@dataclass(frozen=True)
class SearchResult:
    """Hits in rank order, and which generation answered."""

    hits: list[Hit]
    generation_id: int
    total: int


@dataclass
class _Live:
    generation: IndexGeneration
    index: VectorIndex


class SearchEngine:
    """Answers queries from the live generation; reloads when a newer one is published."""

    def __init__(self, settings: Settings, encoder_loader: EncoderLoader | None = None):
        self.settings = settings
        self.db = create_db_engine(settings.db_url)
        self.catalog = Catalog(session_factory(self.db))
        self._encoder_loader = encoder_loader or self._load_encoder
        self._encoders: dict[tuple[str, str], Encoder] = {}
        self._live: _Live | None = None
        self._schema_checked = False
        self._lock = threading.Lock()

    def _load_encoder(self, architecture: str, pretrained: str | None) -> Encoder:
        return load_encoder(architecture, pretrained, self.settings.device, self.settings.model_cache)

    def live(self) -> _Live:
        """The loaded live generation, reloaded if the catalog names a newer one."""
        with self._lock:
            generation = self.catalog.live_generation() if self._schema_ready() else None
            if generation is None:
                raise NoIndex("nothing is indexed yet", "run `spyglass index <folder>` first")
            if self._live is None or self._live.generation.id != generation.id:
                index = read_index_file(self.settings.index_dir / generation.filename,
                                        generation.size_bytes, generation.checksum)
                self._live = _Live(generation, index.on_search_device())
            return self._live

    def _schema_ready(self) -> bool:
        # Checked until it passes once: a running engine does not see its schema go backwards.
        if not self._schema_checked:
            try:
                require_current(self.db)
            except EmptyDatabase:
                return False
            self._schema_checked = True
        return True

    def encoder(self) -> Encoder:
        """The encoder of the model the live index was built with, loaded once."""
        model = self.live().generation.model
        key = (model.architecture, model.pretrained)
        if key not in self._encoders:
            self._encoders[key] = self._encoder_loader(model.architecture, model.pretrained or None)
        return self._encoders[key]

    def search_text(self, text: str, k: int = 10) -> SearchResult:
        """Items that best match a text."""
        if not text.strip():
            raise SpyglassError("the query text is empty", "type what you are looking for")
        return self.search_vector(self.encoder().encode_texts([text])[0], k)

    def search_image(self, image: bytes | str | Path, k: int = 10) -> SearchResult:
        """Items that look most like an image, given as bytes or a file path."""
        if not isinstance(image, bytes):
            path = Path(image).expanduser()
            try:
                image = path.read_bytes()
            except OSError as exc:
                raise InvalidImage(f"cannot read {path}: {exc.strerror or exc}") from None
        decoded = decode_image(image, self.settings.max_image_pixels)
        return self.search_vector(self.encoder().encode_images([decoded.image])[0], k)

    def search_vector(self, vector: np.ndarray, k: int = 10) -> SearchResult:
        """Items nearest to a unit vector in the model's space."""
        if k <= 0:
            raise SpyglassError(f"k must be a positive number, not {k}")
        live = self.live()
        if vector.shape != (live.index.dim,):
            raise SpyglassError(f"the query vector has shape {vector.shape}, the index holds "
                                f"{live.index.dim}-dimensional vectors")
        scores, ids = live.index.search(vector, k)
        ranked = [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True) if i >= 0]
        items = self.catalog.items_by_id([i for i, _ in ranked])
        # An id without a row can only be an item deleted after this generation was loaded.
        hits = [Hit(rank, score, items[i]) for rank, (i, score) in
                enumerate(((i, s) for i, s in ranked if i in items), start=1)]
        return SearchResult(hits=hits, generation_id=live.generation.id, total=len(live.index))

    def close(self) -> None:
        """Release the database connections."""
        self.db.dispose()
