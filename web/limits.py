"""Fair use: each principal's costly requests are rationed, so one client flooding uploads cannot
starve everyone else's searches.

A token bucket per principal (its user, or its address without accounts), in each worker: the
rate SPYGLASS_EXPENSIVE_PER_MINUTE is shared among SPYGLASS_WEB_WORKERS, since gunicorn spreads
one client's requests over them. Cheap requests (a text query with a normal page) are not counted.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager

from werkzeug.exceptions import TooManyRequests

# A page deeper or longer than these costs like an upload: the scoring work grows with offset + k.
CHEAP_K = 100
CHEAP_OFFSET = 1000
# Costly requests one principal may have running at once in a worker.
MAX_IN_FLIGHT = 1
# A request body past this size is an image or an embedding: costly, known before it is read.
COSTLY_BODY_BYTES = 4096
# Buckets kept per worker; the least recently used go first (a full bucket is the same as none).
MAX_BUCKETS = 10_000


class FairUse:
    """Token buckets of costly requests, one per principal key, and how many each has in flight."""

    def __init__(self, per_minute: int, workers: int = 1, clock=time.monotonic):
        rate = per_minute / max(1, workers)
        self.per_second = rate / 60.0
        # A burst of ten seconds' worth at most: a full minute's at once would hold every core.
        self.capacity = max(1.0, rate / 6)
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def costly(self, key: str, when: bool = True):
        """Run one costly request for this key (when it is one): refused (429) past its rate, or while
        another of its costly requests is still running in this worker (one client, one core at most)."""
        if not when or self.per_second == 0:  # SPYGLASS_EXPENSIVE_PER_MINUTE=0: nothing is rationed
            yield
            return
        with self._lock:
            if self._in_flight.get(key, 0) >= MAX_IN_FLIGHT:
                raise _too_many(1)
            self._take(key)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._in_flight.pop(key) - 1
                if left:
                    self._in_flight[key] = left

    def _take(self, key: str) -> None:
        """Spend one costly request for this key, or raise 429 with the seconds until one is free."""
        now = self.clock()
        tokens, then = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - then) * self.per_second)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            raise _too_many(math.ceil((1.0 - tokens) / self.per_second))
        self._buckets[key] = (tokens - 1.0, now)
        while len(self._buckets) > MAX_BUCKETS:
            self._buckets.popitem(last=False)


def _too_many(wait: int) -> TooManyRequests:
    return TooManyRequests("too many costly requests (uploads, embeddings, long or deep pages); "
                           f"try again in {wait} s (SPYGLASS_EXPENSIVE_PER_MINUTE)", retry_after=wait)


def known_costly(content_length: int | None) -> bool:
    """Whether a request is costly by its size alone, before its body is read (an image, an embedding)."""
    return (content_length or 0) > COSTLY_BODY_BYTES


def costly(parts, k: int, offset: int) -> bool:
    """Whether a search costs more than a text query's normal page: an image or an embedding to
    decode and encode (a region of an indexed image too), or a long or deep page to score."""
    return k > CHEAP_K or offset > CHEAP_OFFSET or any(
        p.image is not None or p.embedding is not None or p.crop is not None for p in parts)
