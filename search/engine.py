"""The query engine: text, images, items or vectors in; ranked hits with metadata out."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from spyglass.search.accounts.access import is_within
from spyglass.search.store.ann import AnnIndex
from spyglass.search.catalog.queries import Catalog
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.model.encoder import Encoder, load_encoder
from spyglass.search.errors import BadQuery, UnknownItem
from spyglass.search.moments import Moment, moments, with_timed_matches
from spyglass.search.store.ids import frame_row_id, frame_row_ids, frame_vector_ids, is_frame
from spyglass.search.hybrid import WordSearch, resolve_mode
from spyglass.search.media.images import decode_gate, decode_image
from spyglass.search.live import LiveIndex, Snapshot
from spyglass.search.media.files import MediaRoots, read_regular_file
from spyglass.search.crops import crop_vector
from spyglass.search.query import MAX_QUERY_PARTS, Filters, QueryPart
from spyglass.search.catalog.schema import MediaItem
from spyglass.search.store.segmented import SegmentedStore
from spyglass.search.settings import Settings
from spyglass.search.words.matches import Match

log = logging.getLogger(__name__)
EncoderLoader = Callable[[str, str | None], Encoder]
# A filtered search widens its candidate list by this factor until it has enough matches.
_WIDEN = 4
# A filter that at most this many items meet is evaluated in SQL and its items scored exactly.
SUBSET_LIMIT = 200_000
# Stored vectors scored at a time by an exact search over a filtered subset (64 MiB at 512-d).
SUBSET_CHUNK = 32_768
# Text embeddings kept per engine: paging through results repeats the same query text.
TEXT_CACHE_SIZE = 1024
# Catalog ids are positive 64-bit integers; anything else cannot name an item.
MAX_ITEM_ID = 2**63 - 1
# How long an uploaded image waits for room to decode (SPYGLASS_DECODE_MEMORY) before a 503.
UPLOAD_DECODE_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Hit:
    """One result: the item, its score and its rank (1-based, counting from the first page)."""

    rank: int
    score: float
    item: MediaItem
    moments: tuple[Moment, ...] = ()  # a video's best moments, best first
    matches: tuple[Match, ...] = ()  # the texts that hold the query's words, best first
    duplicates: tuple[int, ...] = ()  # near-identical items folded into this hit (search/arrange.py)

    @property
    def relative_path(self) -> str:
        """The path inside its media root."""
        return self.item.relative_path


@dataclass(frozen=True)
class SearchResult:
    """Hits in rank order, which generation answered, and how to get the next page."""

    hits: list[Hit]
    generation_id: int
    total: int  # vectors in the index: a flat index scores every one
    next_offset: int | None = None


def exact_among(stored: SegmentedStore, vector: np.ndarray, ids: np.ndarray, wanted: int,
                min_score: float | None) -> list[tuple[int, float]]:
    """The exact top `wanted` of these ids by inner product with the vector, best first."""
    ids = ids[stored.contains(ids)]  # rows added after this snapshot was loaded are not in it
    best_ids, best_scores = np.zeros(0, np.int64), np.zeros(0, np.float32)
    for start in range(0, len(ids), SUBSET_CHUNK):
        chunk = ids[start:start + SUBSET_CHUNK]
        scores = stored.vectors(chunk) @ vector
        best_ids, best_scores = np.concatenate([best_ids, chunk]), np.concatenate([best_scores, scores])
        if len(best_ids) > wanted:
            keep = np.argpartition(-best_scores, wanted - 1)[:wanted]
            best_ids, best_scores = best_ids[keep], best_scores[keep]
    order = np.lexsort((best_ids, -best_scores))
    return [(int(i), float(s)) for i, s in zip(best_ids[order], best_scores[order], strict=True)
            if min_score is None or s >= min_score]


class SearchEngine:
    """Answers queries from the snapshot it is handed, by default the live one (LiveIndex)."""

    def __init__(self, settings: Settings, encoder_loader: EncoderLoader | None = None,
                 background_reload: bool = False):
        self.settings = settings
        self.db = create_db_engine(settings.db_url)
        self.catalog = Catalog(session_factory(self.db))
        self.live_index = LiveIndex(settings, self.db, self.catalog, background_reload)
        self._encoder_loader = encoder_loader or self._load_encoder
        self._encoders: dict[tuple[str, str], Encoder] = {}
        self._encoder_lock = threading.Lock()
        self._text_cache: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self.words = WordSearch(self)

    def wait_for_reload(self, timeout: float = 60.0) -> None:
        """Block until a background load in flight has finished (tests, benchmarks)."""
        self.live_index.wait_for_reload(timeout)

    def _load_encoder(self, architecture: str, pretrained: str | None) -> Encoder:
        return load_encoder(architecture, pretrained, self.settings.device, self.settings.model_cache,
                            self.settings.precision, self.settings.runtime, self.settings.home / "runtimes")

    def encoder(self, snapshot: Snapshot | None = None) -> Encoder:
        """The encoder of the model a generation was built with, loaded once."""
        model = (snapshot or self.live()).generation.model
        key = (model.architecture, model.pretrained)
        with self._encoder_lock:
            if key not in self._encoders:
                self._encoders[key] = self._encoder_loader(model.architecture, model.pretrained or None)
            return self._encoders[key]

    def loaded_precisions(self) -> list[dict]:
        """The precision each loaded encoder embeds queries in, and what its fidelity check measured."""
        with self._encoder_lock:
            loaded = [(getattr(e, "precision_check", None), getattr(e, "runtime", None)) for e in self._encoders.values()]
        return [{"precision": c.precision, "wanted": c.wanted,
                 "min_cosine": None if c.min_cosine is None else round(c.min_cosine, 6)}
                | ({"runtime": runtime.as_json()} if runtime is not None else {})
                for c, runtime in loaded if c is not None]

    def search(self, parts: Sequence[QueryPart], k: int = 10, offset: int = 0,
               min_score: float | None = None, filters: Filters | None = None,
               mode: str | None = None) -> SearchResult:
        """Text alone is hybrid by default: its visual and keyword rankings fused (search/hybrid.py);
        `visual` searches the weighted sum of the parts' unit embeddings, renormalised, in one snapshot."""
        mode = resolve_mode(mode, parts)
        snapshot = self.live()
        within = filters.within if filters is not None else None
        for part in parts:
            if part.item_id is not None and within is not None:
                self.item(part.item_id, within)  # another's item is not found, as one that does not exist
        if mode != "visual":
            result = self.words.search(snapshot, parts, mode, k, offset, min_score, filters)
        else:
            result = self.search_in(snapshot, self.embed(parts, snapshot), k, offset, min_score, filters)
        # Someone who sees some folders is told how many items they hold, never the library's size.
        return result if within is None else replace(result, total=self.count_visible(within))

    def search_text(self, text: str, k: int = 10, filters: Filters | None = None,
                    mode: str | None = None) -> SearchResult:
        """Items that best match a text (hybrid unless a mode is given)."""
        return self.search([QueryPart(text=text)], k, filters=filters, mode=mode)

    def search_image(self, image: bytes | str | Path, k: int = 10, filters: Filters | None = None) -> SearchResult:
        """Items that look most like an image the operator gives, as bytes or a file path.

        Local images are trusted like library files (SPYGLASS_MAX_IMAGE_PIXELS); images sent over
        HTTP come in as query parts and meet the lower upload limit.
        """
        if not isinstance(image, bytes):
            image = read_regular_file(str(Path(image).expanduser()), self.settings.max_file_bytes)
        snapshot = self.live()
        encoder = self.encoder(snapshot)
        decoded = decode_image(image, self.settings.max_image_pixels, draft_size=encoder.image_size,
                               gate=decode_gate(self.settings.decode_memory))
        return self.search_in(snapshot, encoder.encode_images([decoded.image])[0], k, filters=filters)

    def search_vector(self, vector: np.ndarray, k: int = 10) -> SearchResult:
        """Items nearest to a vector in the model's space."""
        return self.search([QueryPart(embedding=vector)], k)

    def embed(self, parts: Sequence[QueryPart], snapshot: Snapshot) -> np.ndarray:
        """One unit query vector from weighted parts."""
        if not parts:
            raise BadQuery("the query has no parts", "give a text, an image, an image_id or an embedding")
        if len(parts) > MAX_QUERY_PARTS:
            raise BadQuery(f"the query has {len(parts):,} parts; the limit is {MAX_QUERY_PARTS}")
        total = np.zeros(snapshot.searcher.dim, dtype=np.float32)
        for part in parts:
            total += np.float32(part.weight) * self._embed_part(part, snapshot)
        norm = float(np.linalg.norm(total))
        if norm < 1e-6:
            raise BadQuery("the weighted query parts cancel out", "change the weights")
        return total / norm

    def _embed_part(self, part: QueryPart, snapshot: Snapshot) -> np.ndarray:
        if part.embedding is not None:
            with np.errstate(over="ignore", invalid="ignore"):  # too large for float32 is caught below
                vector = np.asarray(part.embedding, dtype=np.float32)
            if vector.shape != (snapshot.searcher.dim,) or not np.all(np.isfinite(vector)):
                raise BadQuery(f"the embedding must be {snapshot.searcher.dim} finite numbers, "
                               f"got shape {vector.shape}")
            norm = float(np.linalg.norm(vector))
            if norm == 0:
                raise BadQuery("the embedding is all zeros")
            return vector / norm
        if part.item_id is not None and part.crop is not None:
            return crop_vector(self, snapshot, part.item_id, part.crop)
        if part.item_id is not None:
            try:
                if not 0 < part.item_id <= MAX_ITEM_ID:
                    raise KeyError(part.item_id)
                return snapshot.stored.vector(part.item_id)
            except KeyError:
                raise UnknownItem(f"item {part.item_id} is not in the index") from None
        encoder = self.encoder(snapshot)
        if part.text is not None:
            return self._text_vector(encoder, part.text)
        # Anyone who reaches the API can send an image: the lower upload limit, and a bounded wait.
        decoded = decode_image(part.image, self.settings.max_upload_pixels, draft_size=encoder.image_size,
                               gate=decode_gate(self.settings.decode_memory), wait=UPLOAD_DECODE_WAIT_SECONDS,
                               limit_name="SPYGLASS_MAX_UPLOAD_PIXELS")
        return encoder.encode_images([decoded.image])[0]

    def _text_vector(self, encoder: Encoder, text: str) -> np.ndarray:
        key = (id(encoder), text)
        with self._encoder_lock:
            cached = self._text_cache.get(key)
            if cached is not None:
                self._text_cache.move_to_end(key)
                return cached
        vector = encoder.encode_texts([text])[0]
        vector.setflags(write=False)  # shared between requests
        with self._encoder_lock:
            self._text_cache[key] = vector
            if len(self._text_cache) > TEXT_CACHE_SIZE:
                self._text_cache.popitem(last=False)
        return vector

    def search_in(self, snapshot: Snapshot, vector: np.ndarray, k: int = 10, offset: int = 0,
                  min_score: float | None = None, filters: Filters | None = None) -> SearchResult:
        """Search one snapshot with a unit vector: a page of hits that meet the filters.

        A filter that many items meet is applied to a widening list of the nearest vectors; one
        that few meet (SUBSET_LIMIT) is evaluated in SQL first and its items scored exactly,
        so a selective filter is as exact as no filter, at any index type.
        """
        if k <= 0 or offset < 0:
            raise BadQuery(f"k must be positive and offset not negative (k={k}, offset={offset})")
        # One more than the page, to know whether a next page exists.
        ranked = self.ranked(snapshot, vector, offset + k + 1, min_score, filters)
        return self.page(snapshot, ranked, k, offset, vector)

    def page(self, snapshot: Snapshot, ranked: list[tuple[int, float]], k: int, offset: int,
             vector: np.ndarray | None = None, matches: dict[int, tuple[Match, ...]] | None = None) -> SearchResult:
        """A page of ranked (item id, score) pairs as hits: a video's moments from the vector's
        scores of its frames and from its timed matching texts."""
        page = ranked[offset:offset + k]
        rows = self.catalog.items_by_id([i for i, _ in page])
        # An id without a row can only be an item deleted after this snapshot was loaded.
        matched = [(i, s) for i, s in page if i in rows]
        videos = [i for i, _ in matched if rows[i].kind == "video"]
        video_moments = self._moments(snapshot, vector, videos) if vector is not None else {}
        matches = matches or {}
        timed = {i for i, _ in matched if rows[i].kind in ("video", "audio")}
        hits = [Hit(offset + rank, score, rows[i],
                    with_timed_matches(video_moments.get(i, ()), matches.get(i, ())) if i in timed else (),
                    matches.get(i, ()))
                for rank, (i, score) in enumerate(matched, start=1)]
        return SearchResult(hits=hits, generation_id=snapshot.generation.id, total=len(snapshot.searcher),
                            next_offset=offset + k if len(ranked) > offset + k else None)

    def ranked(self, snapshot: Snapshot, vector: np.ndarray, wanted: int, min_score: float | None = None,
               filters: Filters | None = None) -> list[tuple[int, float]]:
        """The best `wanted` items for a unit vector that meet the filters, as (item id, cosine)."""
        filters = filters if filters is not None and filters.active() else None
        if filters is None:
            return self._nearest_items(snapshot, vector, min(len(snapshot.searcher), wanted), min_score)
        return self._nearest_meeting(snapshot, vector, wanted, min_score, filters.conditions(self.catalog.root_paths()))

    @staticmethod
    def _nearest(snapshot: Snapshot, vector: np.ndarray, n: int, min_score: float | None) -> list[tuple[int, float]]:
        if n <= 0:
            return []
        scores, ids = snapshot.searcher.search(vector, n)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0], strict=True)
                if i >= 0 and (min_score is None or s >= min_score)]

    def _nearest_items(self, snapshot: Snapshot, vector: np.ndarray, n: int,
                       min_score: float | None) -> list[tuple[int, float]]:
        """The n best items: a video scores as its best vector (a frame, or its pooled one).

        Frames are over-fetched: the nearest vectors widen until they name n items, since one
        long video may hold many of them.
        """
        total = len(snapshot.searcher)
        fetch = min(total, n)
        while True:
            raw = self._nearest(snapshot, vector, fetch, min_score)
            items = self._grouped(raw)
            if len(items) >= n or len(raw) < fetch or fetch >= total:
                return items[:n] if len(items) > n else items
            fetch = min(total, fetch * _WIDEN)

    def _grouped(self, ranked: list[tuple[int, float]]) -> list[tuple[int, float]]:
        """Ranked vectors as ranked items: frames stand for their video, each item once, at its best."""
        frames = [i for i, _ in ranked if is_frame(i)]
        if not frames:
            return ranked
        owners = self.catalog.frame_owners(frame_row_ids(frames).tolist())
        seen: set[int] = set()
        items = []
        for vector_id, score in ranked:
            item_id = owners.get(frame_row_id(vector_id)) if is_frame(vector_id) else vector_id
            if item_id is None or item_id in seen:
                continue  # a frame of a video deleted since this snapshot, or a lesser vector of one seen
            seen.add(item_id)
            items.append((item_id, score))
        return items

    def _exact_items(self, snapshot: Snapshot, vector: np.ndarray, subset: np.ndarray, wanted: int,
                     min_score: float | None) -> list[tuple[int, float]]:
        """The exact best `wanted` of these items, videos scored by their frames as well."""
        frames = self.catalog.frames_of(subset.tolist())
        if not frames:
            return exact_among(snapshot.stored, vector, subset, wanted, min_score)
        ids = np.concatenate([subset] + [frame_vector_ids(f[0]) for f in frames.values()])
        return self._grouped(exact_among(snapshot.stored, vector, ids, len(ids), min_score))[:wanted]

    def _moments(self, snapshot: Snapshot, vector: np.ndarray, video_ids: list[int]) -> dict[int, tuple[Moment, ...]]:
        """Each video's best moments, from the exact scores of all its frames in this snapshot."""
        found = {}
        for item_id, frames in self.catalog.frames_of(video_ids).items():
            ids = frame_vector_ids(frames.ids)
            present = snapshot.stored.contains(ids)
            if not present.any():
                continue
            scores = snapshot.stored.vectors(ids[present]) @ vector
            shots = None if frames.shots is None else frames.shots[present]
            found[item_id] = tuple(moments(frames.starts[present], frames.ends[present], scores, shots=shots))
        return found

    def _nearest_meeting(self, snapshot: Snapshot, vector: np.ndarray, wanted: int,
                         min_score: float | None, conditions: list) -> list[tuple[int, float]]:
        total = len(snapshot.searcher)
        n = min(total, max(wanted * _WIDEN, 64))
        subset: np.ndarray | None = None
        if isinstance(snapshot.searcher, AnnIndex):
            # An approximate index is tuned for unfiltered queries: exact scores for any filter
            # that few enough items meet, and only the broad ones go through it.
            subset = self.catalog.ids_where(conditions, limit=SUBSET_LIMIT + 1)
            if len(subset) <= SUBSET_LIMIT:
                return self._exact_items(snapshot, vector, subset, wanted, min_score)
        while True:
            ranked = self._nearest_items(snapshot, vector, n, min_score)
            meeting = self.catalog.ids_meeting([i for i, _ in ranked], conditions)
            matched = [(i, s) for i, s in ranked if i in meeting]
            if len(matched) >= wanted or n >= total:
                return matched
            if subset is None:
                # Too few of the nearest meet it: how many items meet it at all?
                subset = self.catalog.ids_where(conditions, limit=SUBSET_LIMIT + 1)
                if len(subset) <= SUBSET_LIMIT:
                    return self._exact_items(snapshot, vector, subset, wanted, min_score)
            if len(ranked) < n:  # the index has no more candidates, or the rest score too low
                return matched
            n = min(total, n * _WIDEN)

    def vectors_of(self, item_ids: list[int]) -> np.ndarray:
        """The live snapshot's stored vectors of these items (KeyError for one it does not hold)."""
        return self.live().stored.vectors(item_ids)

    def item(self, item_id: int, within: tuple[str, ...] | None = None) -> MediaItem:
        """One item's catalog row; one outside the folders `within` does not exist either."""
        self.live()  # an empty catalog is "nothing indexed yet", not a missing table
        row = self.catalog.items_by_id([item_id]).get(item_id) if 0 < item_id <= MAX_ITEM_ID else None
        if row is None or (within is not None and not self.visible([row], within)):
            raise UnknownItem(f"item {item_id} does not exist")
        return row

    def visible(self, rows: Sequence[MediaItem], within: tuple[str, ...] | None) -> list[MediaItem]:
        """The rows inside the folders `within` (all when None)."""
        roots = self.catalog.root_paths() if within is not None else []
        return [row for row in rows if is_within(row.path, within, roots)]

    def count_visible(self, within: tuple[str, ...]) -> int:
        """How many items lie inside the folders `within`."""
        return self.catalog.count_where(Filters(within=within).conditions(self.catalog.root_paths()))

    def media(self) -> MediaRoots:
        """The media roots and the rules for reading their files (SPYGLASS_FOLLOW_SYMLINKS, ...)."""
        return MediaRoots.of(self.catalog.root_paths(), self.settings)

    def live(self) -> Snapshot:
        """The live generation, loaded (see LiveIndex)."""
        return self.live_index.current()

    def _schema_ready(self) -> bool:
        return self.live_index.schema_ready()

    def close(self) -> None:
        """Withdraw this engine's lease and release the database connections."""
        self.live_index.close()
        self.db.dispose()
