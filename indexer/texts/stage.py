"""The words stage of a run: bring item_texts in step with the items, source by source.

It works from the catalog, after the vectors are published, a chunk of items at a time: an item a
source has read with the same extractor and the same signature (its content hash, its sidecars'
sizes and times, its name) is not read again, and each chunk is committed whole, so a run killed
at any instant resumes where it stopped. Changing the OCR model reads every image's text again
and embeds nothing; changing the image model embeds again and reads nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Callable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, joinedload, sessionmaker
from tqdm import tqdm

from spyglass.search.catalog.schema import ItemText, MediaItem, TextExtraction
from spyglass.search.errors import ConfigError
from spyglass.search.failpoints import failpoint
from spyglass.search.media.paths import inside_any
from spyglass.search.settings import Settings
from spyglass.search.words.terms import index_terms

from .metadata import MetadataSource
from ..scan import video_support
from .ocr import OcrSource, ocr_available
from .speech import SpeechSource
from .tracks import TrackSource
from .sources import (CaptionSource, FolderListing, ItemFacts, NameSource, PlaceSource, SidecarSource, TextSource,
                      TextUnreadable)

log = logging.getLogger(__name__)
# Items looked at per transaction: a kill costs at most this many items' reading.
CHUNK_ITEMS = 64


@dataclass
class TextSummary:
    """What the words stage did."""

    read: dict[str, int] = field(default_factory=dict)  # items read again, by source
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def line(self) -> str:
        """'words: 12 read (name 10, ocr 2), 1 unreadable', or '' when nothing was read."""
        total = sum(self.read.values())
        if not total and not self.unreadable:
            return ""
        sources = ", ".join(f"{name} {count:,}" for name, count in sorted(self.read.items()) if count)
        bad = f", {len(self.unreadable):,} could not be read" if self.unreadable else ""
        return f"Words: {total:,} item texts read ({sources}){bad}"


def text_sources(settings: Settings) -> list[TextSource]:
    """The sources this run uses: names, captions, sidecars, photo metadata, place and camera always; a video's own
    subtitle tracks with PyAV; OCR as SPYGLASS_OCR says;
    speech when SPYGLASS_SPEECH_MODEL names a model."""
    sources: list[TextSource] = [NameSource(), CaptionSource(), SidecarSource(), MetadataSource(), PlaceSource()]
    if video_support():
        sources.append(TrackSource())
    if settings.ocr == "on" and not ocr_available():
        raise ConfigError("SPYGLASS_OCR=on but RapidOCR is not installed", "pip install 'spyglass[words]'")
    if settings.ocr == "on" or (settings.ocr == "auto" and ocr_available()):
        sources.append(OcrSource(settings.max_image_pixels, settings.max_file_bytes, settings.decode_memory,
                                 settings.max_video_seconds))
    if settings.speech_model:
        sources.append(SpeechSource(settings.speech_model, settings.max_video_seconds, settings.model_cache,
                                    threads=os.cpu_count() or 1))
    return sources


def update_texts(sessions: sessionmaker[Session], settings: Settings, roots: Sequence[str] | None,
                 echo: Callable[[str], None], progress: bool = True) -> TextSummary:
    """Read the texts of the items under these roots (every item for None) that are new or changed."""
    sources = text_sources(settings)
    summary = TextSummary()
    conditions = [inside_any(MediaItem.path, roots)] if roots is not None else []  # no roots: no items
    with sessions() as session:
        total = session.scalar(select(func.count(MediaItem.id)).where(*conditions)) or 0
    folder = FolderListing()
    last_id = 0
    with tqdm(total=total, unit=" items", desc="Reading words", file=sys.stderr, disable=not progress,
              leave=False) as bar:
        while True:
            with sessions.begin() as session:
                items = list(session.scalars(
                    select(MediaItem).options(joinedload(MediaItem.root)).where(MediaItem.id > last_id, *conditions)
                    .order_by(MediaItem.id).limit(CHUNK_ITEMS)))
                if not items:
                    break
                _update_chunk(session, [_facts(item) for item in items], sources, folder, summary, echo)
                last_id = items[-1].id
            failpoint("texts")
            bar.update(len(items))
    if summary.unreadable:
        log.info("%d items' texts could not be read", len(summary.unreadable))
    return summary


def _facts(item: MediaItem) -> ItemFacts:
    # An import may bring a url alone: then the url is its path, and there is no file to read.
    return ItemFacts(item.id, item.path, item.relative_path, item.kind, item.content_hash, item.caption,
                     local=not (item.url and item.path == item.url), duration_s=item.duration_s,
                     place=item.place, camera=item.camera)


def _update_chunk(session: Session, items: list[ItemFacts], sources: list[TextSource], folder: FolderListing,
                  summary: TextSummary, echo: Callable[[str], None]) -> None:
    ids = [item.id for item in items]
    done = {(row.item_id, row.source): row for row in
            session.scalars(select(TextExtraction).where(TextExtraction.item_id.in_(ids)))}
    for item in items:
        for source in sources:
            signature = source.signature(item, folder)
            recorded = done.get((item.id, source.name))
            if signature is None:
                if recorded is not None:  # a sidecar deleted, a caption removed
                    _replace(session, item.id, source, [])
                    session.delete(recorded)
                continue
            if recorded is not None and (recorded.extractor, recorded.signature) == (source.extractor, signature):
                continue
            reason = None
            try:
                pieces = source.read(item, folder)
            except TextUnreadable as exc:
                pieces, reason = [], str(exc)
            except Exception as exc:  # noqa: BLE001 - a model meeting a hostile file: the item keeps its vector
                log.debug("text source %s failed on %s", source.name, item.path, exc_info=True)
                pieces, reason = [], f"{source.name} failed: {type(exc).__name__}: {exc}"[:500]
            if reason is not None:
                summary.unreadable.append((item.path, reason))
                echo(f"no {source.name} text from {os.path.basename(item.path)}: {reason}")
            _replace(session, item.id, source, pieces)
            if recorded is None:
                recorded = TextExtraction(item_id=item.id, source=source.name)
                session.add(recorded)
            recorded.extractor, recorded.signature, recorded.reason = source.extractor, signature, reason
            summary.read[source.name] = summary.read.get(source.name, 0) + 1


def _replace(session: Session, item_id: int, source: TextSource, pieces) -> None:
    session.execute(delete(ItemText).where(ItemText.item_id == item_id, ItemText.source == source.name))
    rows = []
    for piece in pieces:
        # NUL cannot be stored in PostgreSQL text; nothing a search matches is lost with it.
        shown = piece.text.replace("\x00", "\ufffd")
        terms = index_terms(piece.indexed if piece.indexed is not None else shown)
        if terms:
            rows.append(ItemText(item_id=item_id, source=source.name, field=piece.field, text=shown, terms=terms,
                                 start_s=piece.start_s, end_s=piece.end_s, confidence=piece.confidence,
                                 box=piece.box))
    session.add_all(rows)
