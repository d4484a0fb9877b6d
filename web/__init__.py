"""The web front door: a Flask application factory (the search page and API build on it)."""

from __future__ import annotations

from flask import Flask, jsonify

from search.engine import SearchEngine
from search.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; the search engine is created on first use, never at import."""
    app = Flask(__name__)
    settings = settings or Settings.from_env()
    app.extensions["spyglass"] = _LazyEngine(settings)

    @app.get("/healthz")
    def healthz():
        """Liveness: the process answers."""
        return jsonify(status="ok")

    return app


class _LazyEngine:
    """Holds the settings and builds the SearchEngine when a request first needs it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._engine: SearchEngine | None = None

    def get(self) -> SearchEngine:
        """The engine of this worker, created once."""
        if self._engine is None:
            self._engine = SearchEngine(self.settings)
        return self._engine
