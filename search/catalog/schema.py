"""The catalog's tables as typed SQLAlchemy 2.0 models."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from sqlalchemy import (BigInteger, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

if TYPE_CHECKING:
    from spyglass.search.model.precision import PrecisionMix
    from spyglass.search.store.segmented import Manifest, SegmentFile


# File paths compare byte by byte on both databases (SQLite's default BINARY collation, "C" on
# PostgreSQL), so "inside this folder" is an exact, index-backed range: see paths.inside.
PathText = Text().with_variant(Text(collation="C"), "postgresql")


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the catalog uses."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of every catalog table."""


class MediaRoot(Base):
    """A folder a user asked to index."""

    __tablename__ = "media_roots"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_indexed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MediaItem(Base):
    """One indexed file; its id is also its id in the FAISS index."""

    __tablename__ = "media_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    root_id: Mapped[int | None] = mapped_column(ForeignKey("media_roots.id", ondelete="SET NULL"),
                                                index=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="image")
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    indexed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Items imported from precomputed embeddings (`spyglass import`) may have no local file:
    # then `url` is where the original lives, and `path` is that same URL.
    url: Mapped[str | None] = mapped_column(Text)
    caption: Mapped[str | None] = mapped_column(Text)
    # "index" (embedded from the library) or "import": an import never replaces an indexed item.
    origin: Mapped[str] = mapped_column(String(8), default="index", server_default="index")
    # Videos only: the length, and the moment whose frame best stands for the whole (its poster).
    duration_s: Mapped[float | None] = mapped_column(Float)
    poster_s: Mapped[float | None] = mapped_column(Float)
    # When it was taken, as the wall clock read there (taken_offset_min from UTC, when known); from
    # EXIF/XMP or a video's container, else the file's mtime in UTC ("mtime"): see media/photo_facts.
    taken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=False), index=True)
    taken_offset_min: Mapped[int | None] = mapped_column(Integer)
    taken_source: Mapped[str | None] = mapped_column(String(10))
    camera: Mapped[str | None] = mapped_column(String(100))
    lens: Mapped[str | None] = mapped_column(String(100))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    place: Mapped[str | None] = mapped_column(Text)
    # The facts reader's version and the mtime it read: either changed, the facts are read again.
    facts_version: Mapped[int | None] = mapped_column(Integer)
    facts_mtime_ns: Mapped[int | None] = mapped_column(BigInteger)

    root: Mapped[MediaRoot | None] = relationship()
    labels: Mapped[list["ItemLabel"]] = relationship(order_by="ItemLabel.rank", lazy="raise",
                                                     passive_deletes=True)

    @property
    def relative_path(self) -> str:
        """The path inside its media root (needs the root loaded); the file name without one."""
        if self.root is None:
            return os.path.basename(self.path)
        return os.path.relpath(self.path, self.root.path)


class VideoFrame(Base):
    """A kept frame of a video: the stretch [start_s, end_s) it stands for.

    Its vector's id in the index is FRAME_IDS_FROM + id (search/store/ids.py), beside the
    video's pooled vector under the video item's own id.
    """

    __tablename__ = "video_frames"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("media_items.id", ondelete="CASCADE"), index=True)
    start_s: Mapped[float] = mapped_column(Float)
    end_s: Mapped[float] = mapped_column(Float)
    # Which shot it is in (0 from the start, one more at every cut); none for frames stored before 0010.
    shot: Mapped[int | None] = mapped_column(Integer)


class SkippedFile(Base):
    """A file that could not be indexed, remembered so an unchanged one is not retried."""

    __tablename__ = "skipped_files"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(PathText, unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EmbeddingModel(Base):
    """An encoder whose vectors an index holds: architecture, weights and dimension."""

    __tablename__ = "embedding_models"
    __table_args__ = (
        UniqueConstraint("architecture", "pretrained", name="uq_embedding_models_arch_weights"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    architecture: Mapped[str] = mapped_column(String(1024))
    pretrained: Mapped[str] = mapped_column(String(1024))
    dim: Mapped[int] = mapped_column(Integer)
    # SHA-256 of the image tower's weights: two models with the same one embed images alike, so
    # an index built by one serves the other (a text-side fine-tune) without re-embedding.
    image_tower: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    def describe(self) -> str:
        """'ViT-B-32 (laion2b_s34b_b79k)' style label."""
        return f"{self.architecture} ({self.pretrained or 'random weights'})"


class IndexGeneration(Base):
    """A published index: its segment files and approximate index; the row with the highest id is live."""

    __tablename__ = "index_generations"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("embedding_models.id"), index=True)
    factory: Mapped[str] = mapped_column(String(256))
    # The base segment of its exact vectors; `segments` lists the deltas and tombstones (see
    # search/store/segmented.py). Generations that changed nothing of the base share its file.
    filename: Mapped[str] = mapped_column(String(256))
    segments: Mapped[str | None] = mapped_column(Text)
    vector_count: Mapped[int] = mapped_column(BigInteger)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The approximate index searched instead of the stored vectors (none: exact search), its
    # tuned search parameters, and what tuning measured on held-out vectors.
    ann_factory: Mapped[str | None] = mapped_column(String(256))
    ann_filename: Mapped[str | None] = mapped_column(String(256))
    ann_size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    ann_checksum: Mapped[str | None] = mapped_column(String(64))
    ann_params: Mapped[str | None] = mapped_column(Text)
    ann_recall: Mapped[float | None] = mapped_column(Float)
    ann_query_ms: Mapped[float | None] = mapped_column(Float)
    exact_query_ms: Mapped[float | None] = mapped_column(Float)
    ann_built_vectors: Mapped[int | None] = mapped_column(BigInteger)  # vectors when it was trained
    ann_stale: Mapped[int | None] = mapped_column(BigInteger)  # entries removed or replaced since
    # The precisions its vectors were embedded in ("bf16,fp32"; none recorded before 0006 or for
    # imported vectors), and the lowest cosine against fp32 the fidelity check measured for them.
    precisions: Mapped[str | None] = mapped_column(String(64))
    precision_cosine: Mapped[float | None] = mapped_column(Float)

    model: Mapped[EmbeddingModel] = relationship(lazy="joined")

    def manifest(self) -> "Manifest":
        """Its delta segments and tombstones."""
        from spyglass.search.store.segmented import Manifest

        return Manifest.from_json(self.segments)

    def base_file(self) -> "SegmentFile":
        """Its base segment."""
        from spyglass.search.store.segmented import SegmentFile

        return SegmentFile(self.filename, self.size_bytes, self.checksum, 0)

    def precision_mix(self) -> "PrecisionMix":
        """What its vectors were embedded in."""
        from spyglass.search.model.precision import PrecisionMix

        return PrecisionMix.of(self.precisions, self.precision_cosine)

    def ann_fields(self) -> dict:
        """The approximate-index columns, to carry over to a generation that shares them."""
        return {name: getattr(self, name) for name in ANN_COLUMNS}


ANN_COLUMNS = ("ann_factory", "ann_filename", "ann_size_bytes", "ann_checksum", "ann_params", "ann_recall",
               "ann_query_ms", "exact_query_ms", "ann_built_vectors", "ann_stale")


class IndexRun(Base):
    """One `spyglass index` run and what it changed."""

    __tablename__ = "index_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="running")
    roots: Mapped[str] = mapped_column(Text, default="")
    added: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    removed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class StagedVector(Base):
    """A vector embedded by a run but not published yet: a killed run resumes from these."""

    __tablename__ = "staged_vectors"

    id: Mapped[int] = mapped_column(primary_key=True)
    model: Mapped[str] = mapped_column(Text)  # "architecture\nweights", as model_identity gives
    path: Mapped[str] = mapped_column(PathText)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian; empty for an outcome row
    # A file of a finished partition that was skipped (why), or that kept its vector (empty vector).
    skip_reason: Mapped[str | None] = mapped_column(Text)
    # Videos: the length, the poster time, and the kept frames' start times (float64) and
    # vectors (float32), little-endian.
    duration_s: Mapped[float | None] = mapped_column(Float)
    poster_s: Mapped[float | None] = mapped_column(Float)
    frame_times: Mapped[bytes | None] = mapped_column(LargeBinary)
    frame_vectors: Mapped[bytes | None] = mapped_column(LargeBinary)
    frame_shots: Mapped[bytes | None] = mapped_column(LargeBinary)  # int32, little-endian
    staged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    __table_args__ = (UniqueConstraint("model", "path", name="uq_staged_vectors_model_path"),)


# A worker re-announces the generation it holds this often; the indexer keeps the files of
# generations announced within LEASE_SECONDS.
LEASE_REFRESH_SECONDS = 60
LEASE_SECONDS = 600


class IndexReader(Base):
    """A search worker and the generation it has loaded; its file is kept while it is fresh."""

    __tablename__ = "index_readers"

    reader: Mapped[str] = mapped_column(String(256), primary_key=True)  # host:pid:engine
    generation_id: Mapped[int] = mapped_column(Integer)
    seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ItemLabel(Base):
    """One of an item's best zero-shot labels (SPYGLASS_LABELS), with its cosine score; rank 1 is the best."""

    __tablename__ = "item_labels"
    __table_args__ = (Index("ix_item_labels_label_rank", "label", "rank"),)

    item_id: Mapped[int] = mapped_column(ForeignKey("media_items.id", ondelete="CASCADE"), primary_key=True)
    rank: Mapped[int] = mapped_column(Integer, primary_key=True)
    label: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)


class CatalogState(Base):
    """Small facts about the catalog as a whole, by key (what the item labels were computed from)."""

    __tablename__ = "catalog_state"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ItemText(Base):
    """A piece of text an item holds or carries: its name, a caption, a line read from it, a spoken
    or subtitled stretch (with its times). The keyword index (FTS5 on SQLite, a GIN index on
    PostgreSQL; migration 0010) indexes `terms`, made from `text` by search/words/terms.py."""

    __tablename__ = "item_texts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("media_items.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16))  # the extractor that wrote it: TEXT_SOURCES
    field: Mapped[str] = mapped_column(String(16))  # name, caption, keywords, ocr, speech, subtitle
    text: Mapped[str] = mapped_column(Text)
    terms: Mapped[str] = mapped_column(Text)
    start_s: Mapped[float | None] = mapped_column(Float)
    end_s: Mapped[float | None] = mapped_column(Float)
    # Text read from pixels: how sure the reader was (0 to 1), and where it is, as fractions of the
    # picture's width and height: "left,top,right,bottom".
    confidence: Mapped[float | None] = mapped_column(Float)
    box: Mapped[str | None] = mapped_column(String(64))


class TextExtraction(Base):
    """What one text source last read from an item, and from what: a changed file, sidecar or
    extractor (its model and version) reads the item again; anything else is not read twice."""

    __tablename__ = "text_extractions"

    item_id: Mapped[int] = mapped_column(ForeignKey("media_items.id", ondelete="CASCADE"), primary_key=True)
    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    extractor: Mapped[str] = mapped_column(String(256))  # e.g. "rapidocr-onnxruntime 1.4.4"
    signature: Mapped[str] = mapped_column(Text)  # what was read: the content hash, sidecar stats, ...
    reason: Mapped[str | None] = mapped_column(Text)  # why nothing could be read, in one line
    extracted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# Tables and indexes the migrations make by hand, which the models cannot describe: FTS5's virtual
# table and its shadow tables on SQLite, the full-text and trigram GIN indexes on PostgreSQL.
def made_by_hand(name: str | None) -> bool:
    """Whether a schema object is one of those (schema comparisons leave them out)."""
    return bool(name) and name.startswith(("item_texts_fts", "item_names_trigram", "ix_item_texts_fts",
                                           "ix_item_texts_trgm"))


# The account tables live in their own module; importing it registers them on Base.metadata.
from spyglass.search.catalog import people as _people  # noqa: E402,F401
