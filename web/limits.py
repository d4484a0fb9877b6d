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

from werkzeug.exceptions import TooManyRequests

# A page deeper or longer than these costs like an upload: the scoring work grows with offset + k.
CHEAP_K = 100
CHEAP_OFFSET = 1000
# Buckets kept per worker; the least recently used go first (a full bucket is the same as none).
MAX_BUCKETS = 10_000


class FairUse:
    """Token buckets of costly requests, one per principal key."""

    def __init__(self, per_minute: int, workers: int = 1, clock=time.monotonic):
        self.capacity = max(1.0, per_minute / max(1, workers))
        self.per_second = self.capacity / 60.0
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one costly request for this key, or raise 429 with the seconds until one is free."""
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.per_second)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.per_second)
                raise _too_many(wait)
            self._buckets[key] = (tokens - 1.0, now)
            while len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)


def _too_many(wait: int) -> TooManyRequests:
    error = TooManyRequests("too many costly requests (uploads, embeddings, long or deep pages); "
                            f"try again in {wait} s (SPYGLASS_EXPENSIVE_PER_MINUTE)", retry_after=wait)
    return error


def costly(parts, k: int, offset: int) -> bool:
    """Whether a search costs more than a text query's normal page: an image or an embedding to
    decode and encode, or a long or deep page to score."""
    return k > CHEAP_K or offset > CHEAP_OFFSET or any(p.image is not None or p.embedding is not None for p in parts)
