"""Run the app under gunicorn (threads per worker), or Flask's reloader for development."""

from __future__ import annotations

from spyglass.search.settings import Settings

from . import create_app


def serve(settings: Settings, dev: bool = False) -> None:
    """Serve on settings.host:settings.port until interrupted."""
    if dev:
        create_app(settings).run(host=settings.host, port=settings.port, debug=True, use_reloader=True)
        return
    from gunicorn.app.base import BaseApplication

    class Server(BaseApplication):
        """gunicorn with its options from the settings, loading the app in each worker."""

        def load_config(self):
            options = {"bind": f"{settings.host}:{settings.port}", "workers": settings.web_workers,
                       "threads": settings.web_threads, "worker_class": "gthread",
                       "timeout": 120, "graceful_timeout": 30, "accesslog": "-"}
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(settings)

    Server().run()
