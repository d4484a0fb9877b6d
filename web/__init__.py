"""The web front door: the search page, the JSON API and clip-retrieval's endpoints."""

from __future__ import annotations

from flask import Flask

from spyglass.search.settings import Settings

from . import api, auth, compat, errors, login, metrics, pages, security
from .state import WebState

MAX_FORM_PARTS = 50


def create_app(settings: Settings | None = None, background_reload: bool = False) -> Flask:
    """Build the app; the search engine is created on first use, never at import or here.

    background_reload (what `spyglass serve` uses): a newly published generation is loaded
    beside the live one, and requests go on with the live one until it is ready; and the index and
    the model start loading in the background at once (WebState.warm_up).
    """
    app = Flask(__name__)
    settings = settings or Settings.from_env()
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_upload_bytes,
        MAX_FORM_PARTS=MAX_FORM_PARTS,
    )
    app.extensions["spyglass"] = web = WebState(settings, background_reload)
    errors.init_app(app)
    security.init_app(app, settings)
    auth.init_app(app, settings)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(compat.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(pages.blueprint)
    app.register_blueprint(login.blueprint)
    if background_reload:  # under `serve`: the model loads now, not at the first search
        web.warm_up()
    return app
