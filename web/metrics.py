"""Prometheus metrics with prometheus_client: query counts, a latency histogram, the index's size.

Under `spyglass serve` the counts add up across gunicorn workers: serve points
PROMETHEUS_MULTIPROC_DIR at a fresh folder before the workers start, each worker writes its
values there, and a scrape of any worker reads them all (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
import time

from flask import Blueprint, Response, current_app

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

blueprint = Blueprint("metrics", __name__)


class Metrics:
    """The metrics of one app, in its own registry (so tests can build many apps in one process)."""

    def __init__(self):
        # Imported here, not at module import: multiprocess mode is chosen when it is first imported.
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry(auto_describe=True)
        self.queries = Counter("spyglass_queries", "Search queries answered, by endpoint and outcome.",
                               ["endpoint", "outcome"], registry=self.registry)
        self.latency = Histogram("spyglass_query_seconds", "Search latency.", buckets=BUCKETS,
                                 registry=self.registry)
        # Every worker serves the newest generation it has loaded; across workers, the newest.
        self.vectors = Gauge("spyglass_index_vectors", "Vectors in the live index generation.",
                             registry=self.registry, multiprocess_mode="max")
        self.generation = Gauge("spyglass_index_generation", "Id of the live index generation.",
                                registry=self.registry, multiprocess_mode="max")
        # What tuning measured on held-out vectors when the live approximate index was built
        # (1.0 and the exact search time for exact search).
        self.recall = Gauge("spyglass_index_recall_at_10", "Recall@10 of the live index against exact search.",
                            registry=self.registry, multiprocess_mode="mostrecent")
        self.tuned_ms = Gauge("spyglass_index_query_milliseconds", "Median time of one index search at tuning.",
                              registry=self.registry, multiprocess_mode="mostrecent")
        # Each live worker's own memory (a pid label under serve), sampled after every search and scrape.
        self.resident = Gauge("spyglass_worker_resident_bytes", "A worker's resident memory.",
                              registry=self.registry, multiprocess_mode="liveall")
        self.anonymous = Gauge("spyglass_worker_anonymous_bytes", "A worker's anonymous memory (heap, the model, "
                               "a loaded approximate index).", registry=self.registry, multiprocess_mode="liveall")
        self.index_loaded = Gauge("spyglass_index_loaded_bytes", "The approximate index each worker reads into "
                                  "its memory (0 for exact search).", registry=self.registry, multiprocess_mode="max")
        self.index_mapped = Gauge("spyglass_index_mapped_bytes", "The stored vectors, memory-mapped and shared "
                                  "by the workers.", registry=self.registry, multiprocess_mode="max")

    def sample_memory(self) -> None:
        """This worker's resident and anonymous memory, now."""
        from spyglass.search.memory import process_memory

        found = process_memory()
        if found:
            self.resident.set(found["resident_bytes"])
            self.anonymous.set(found.get("anonymous_bytes", 0))

    @contextmanager
    def timed(self, endpoint: str):
        """Count one query and its latency; the outcome is 'ok' or 'error'."""
        started = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.queries.labels(endpoint=endpoint, outcome=outcome).inc()
            self.latency.observe(time.perf_counter() - started)
            self.sample_memory()

    def render(self, generation) -> tuple[bytes, str]:
        """The exposition text and its content type; all workers' counts in multiprocess mode."""
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

        self.sample_memory()
        if generation is not None:
            from spyglass.search.memory import index_memory

            shares = index_memory(generation)
            self.index_loaded.set(shares["index_loaded_bytes"])
            self.index_mapped.set(shares["index_mapped_bytes"])
            self.vectors.set(generation.vector_count)
            self.generation.set(generation.id)
            if generation.ann_factory:
                self.recall.set(generation.ann_recall)
                self.tuned_ms.set(generation.ann_query_ms)
            else:
                self.recall.set(1.0)
                if generation.exact_query_ms is not None:
                    self.tuned_ms.set(generation.exact_query_ms)
        if os.environ.get(MULTIPROCESS_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


@blueprint.get("/metrics")
def metrics():
    """Prometheus scrape endpoint."""
    from spyglass.search.errors import SpyglassError

    web = current_app.extensions["spyglass"]
    try:
        generation = web.engine().live().generation
    except SpyglassError:
        generation = None
    body, content_type = web.metrics.render(generation)
    return Response(body, content_type=content_type)
