"""The facts `spyglass status` prints, as one JSON-ready dict."""

from __future__ import annotations

from sqlalchemy import Engine

from spyglass.search.store.ann import AnnParams
from spyglass.search.catalog.queries import Catalog, format_time
from spyglass.search.catalog.db import create_db_engine, redacted, session_factory
from spyglass.search.errors import EmptyDatabase
from spyglass.search.catalog.lock import indexer_running
from spyglass.search.catalog.migrate import require_current
from spyglass.search.catalog.schema import IndexGeneration
from spyglass.search.settings import Settings


def _run_status(recorded: str, engine: Engine, settings: Settings) -> str:
    """A run recorded as running whose process no longer holds the indexer lock was killed."""
    if recorded == "running" and not indexer_running(engine, settings.home):
        return "interrupted"
    return recorded


def index_facts(generation: IndexGeneration) -> dict:
    """The live generation: its type, its segments and, for an approximate one, what tuning measured."""
    manifest = generation.manifest()
    facts = {"type": generation.ann_factory or "Flat", "setting": generation.factory,
             "generation": generation.id, "vectors": generation.vector_count,
             "bytes": generation.size_bytes + manifest.size + (generation.ann_size_bytes or 0),
             "segments": 1 + len(manifest.deltas), "tombstones": manifest.tombstones.count if manifest.tombstones else 0,
             "published": format_time(generation.created_at)}
    precision = generation.precision_mix().columns()
    if precision["precisions"]:
        facts["precision"] = precision["precisions"]
        if precision["precision_cosine"] is not None:
            facts["precision_min_cosine"] = round(precision["precision_cosine"], 6)
    if generation.ann_factory:
        facts.update(search_params=AnnParams.from_json(generation.ann_params).describe(),
                     recall_at_10=round(generation.ann_recall, 4), query_ms=round(generation.ann_query_ms, 3),
                     exact_query_ms=round(generation.exact_query_ms, 3),
                     trained_at_vectors=generation.ann_built_vectors, stale_entries=generation.ann_stale or 0)
    return facts


def status_report(settings: Settings, db: Engine | None = None) -> dict:
    """Items, model, index and last run; an empty catalog reports zeros, not an error.

    Uses the given database engine, or makes (and disposes of) one from the settings.
    """
    engine = db or create_db_engine(settings.db_url)
    report: dict = {"home": str(settings.home), "database": redacted(settings.db_url)}
    try:
        require_current(engine)
        status = Catalog(session_factory(engine)).status()
        run_status = None if status.last_run is None else _run_status(status.last_run.status, engine, settings)
        labels = Catalog(session_factory(engine)).labels_summary()
    except EmptyDatabase:
        report.update(items=0, roots=[], model=None, index=None, labels=None, last_run=None,
                      hint="nothing indexed yet: run `spyglass index <folder>`")
        return report
    finally:
        if db is None:
            engine.dispose()
    generation, run = status.generation, status.last_run
    report.update(items=status.items, roots=status.roots)
    if status.videos:
        report["videos"] = {"videos": status.videos, "frames": status.frames,
                            "hours": round(status.video_seconds / 3600, 2)}
    report["model"] = None if generation is None else {
        "architecture": generation.model.architecture,
        "pretrained": generation.model.pretrained or "random weights",
        "dim": generation.model.dim}
    report["index"] = None if generation is None else index_facts(generation)
    report["labels"] = labels
    report["last_run"] = None if run is None else {
        "status": run_status, "started": format_time(run.started_at),
        "finished": format_time(run.finished_at), "added": run.added, "updated": run.updated,
        "removed": run.removed, "skipped": run.skipped}
    return report
