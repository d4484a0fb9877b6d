"""Prometheus text-format metrics: query counts, a latency histogram, the index's size."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

from flask import Blueprint, Response, current_app

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

blueprint = Blueprint("metrics", __name__)


class Metrics:
    """Counters of one worker process (each gunicorn worker reports its own)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.queries: dict[tuple[str, str], int] = {}
        self.bucket_counts = [0] * len(BUCKETS)
        self.latency_sum = 0.0
        self.latency_count = 0

    @contextmanager
    def timed(self, endpoint: str):
        """Count one query and its latency; the outcome is 'ok' or 'error'."""
        started = time.perf_counter()
        outcome = "error"
        try:
            yield
            outcome = "ok"
        finally:
            self.observe(endpoint, outcome, time.perf_counter() - started)

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        """Record one query."""
        with self._lock:
            key = (endpoint, outcome)
            self.queries[key] = self.queries.get(key, 0) + 1
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    self.bucket_counts[i] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self, vectors: int | None, generation: int | None) -> str:
        """The exposition text."""
        with self._lock:
            lines = ["# HELP spyglass_queries_total Search queries answered, by endpoint and outcome.",
                     "# TYPE spyglass_queries_total counter"]
            lines += [f'spyglass_queries_total{{endpoint="{e}",outcome="{o}"}} {n}'
                      for (e, o), n in sorted(self.queries.items())]
            lines += ["# HELP spyglass_query_seconds Search latency.",
                      "# TYPE spyglass_query_seconds histogram"]
            lines += [f'spyglass_query_seconds_bucket{{le="{b}"}} {n}'
                      for b, n in zip(BUCKETS, self.bucket_counts, strict=True)]
            lines += [f'spyglass_query_seconds_bucket{{le="+Inf"}} {self.latency_count}',
                      f"spyglass_query_seconds_sum {self.latency_sum:.6f}",
                      f"spyglass_query_seconds_count {self.latency_count}"]
        if vectors is not None:
            lines += ["# HELP spyglass_index_vectors Vectors in the live index generation.",
                      "# TYPE spyglass_index_vectors gauge", f"spyglass_index_vectors {vectors}",
                      "# HELP spyglass_index_generation Id of the live index generation.",
                      "# TYPE spyglass_index_generation gauge", f"spyglass_index_generation {generation}"]
        return "\n".join(lines) + "\n"


@blueprint.get("/metrics")
def metrics():
    """Prometheus scrape endpoint."""
    from spyglass.search.errors import SpyglassError

    web = current_app.extensions["spyglass"]
    try:
        generation = web.engine().live().generation
        vectors, generation_id = generation.vector_count, generation.id
    except SpyglassError:
        vectors = generation_id = None
    return Response(web.metrics.render(vectors, generation_id),
                    mimetype="text/plain; version=0.0.4; charset=utf-8")
