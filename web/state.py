"""What one worker keeps: its settings, its search engine (made once) and its metrics."""

from __future__ import annotations

import logging
import threading

from flask import current_app

from spyglass.search.accounts.directory import Accounts
from spyglass.search.catalog.db import create_db_engine, session_factory
from spyglass.search.catalog.migrate import require_current
from spyglass.search.engine import SearchEngine
from spyglass.search.settings import Settings
from spyglass.search.media.thumbnail_cache import ThumbnailCache

from .limits import FairUse
from .metrics import Metrics

log = logging.getLogger(__name__)


class WebState:
    """Per-app state, stored in app.extensions["spyglass"]."""

    def __init__(self, settings: Settings, background_reload: bool = False):
        self.settings = settings
        self.background_reload = background_reload
        self.metrics = Metrics()
        self.thumbnails = ThumbnailCache(settings.home / "thumbnails", settings.thumbnail_cache)
        self._engine: SearchEngine | None = None
        self._accounts: Accounts | None = None
        # Without accounts there is one person (or a proxy's one address): nothing to share out.
        self.limits = FairUse(settings.expensive_per_minute if settings.auth == "accounts" else 0,
                              settings.web_workers)
        self._lock = threading.Lock()
        self.loading = False  # True while warm_up loads the index and the model

    def warm_up(self) -> None:
        """Load the live index and its model now, in the background, so the first search is as fast
        as the rest; /api/v1/healthz answers 503 "loading" until it is done."""
        self.loading = True

        def load() -> None:
            try:
                engine = self.engine()
                engine.encoder(engine.live()).encode_texts(["a photo"])
            except Exception as exc:  # noqa: BLE001 - no index yet, a model that fails: the first search says so
                log.info("nothing warmed up: %s", exc)
            finally:
                self.loading = False

        threading.Thread(target=load, name="spyglass-warm-up", daemon=True).start()

    def accounts(self) -> Accounts:
        """People, tokens and sessions, in the engine's catalog (its schema checked once)."""
        engine = self.engine()
        with self._lock:
            if self._accounts is None:
                require_current(engine.db)
                writer = create_db_engine(self.settings.db_url, writer=True)
                self._accounts = Accounts(engine.catalog.sessions, self.settings.expose_paths, session_factory(writer))
            return self._accounts

    def engine(self) -> SearchEngine:
        """The worker's engine, created on first use."""
        with self._lock:
            if self._engine is None:
                self._engine = SearchEngine(self.settings, background_reload=self.background_reload)
            return self._engine


def state() -> WebState:
    """The state of the app handling this request."""
    return current_app.extensions["spyglass"]
