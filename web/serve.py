"""Run the app under gunicorn (threads per worker), or Flask's reloader for development."""

from __future__ import annotations

import os
import shutil
import tempfile

from spyglass.search.errors import ConfigError
from spyglass.search.settings import Settings

from . import create_app
from .metrics import MULTIPROCESS_ENV
from .security import is_loopback


def serve(settings: Settings, dev: bool = False) -> None:
    """Serve on settings.host:settings.port until interrupted."""
    if dev:
        if not is_loopback(settings.host):
            # Flask's debugger runs whatever code a visitor sends it.
            raise ConfigError(f"--dev listens only on loopback, not {settings.host}",
                              "drop --dev to serve other machines with gunicorn")
        create_app(settings).run(host=settings.host, port=settings.port, debug=True, use_reloader=True)
        return
    from gunicorn.app.base import BaseApplication

    # Each worker writes its metric values here; a scrape of any worker adds them all up. A
    # fresh folder per server, so counts from an earlier run never leak in.
    own_metrics_dir = MULTIPROCESS_ENV not in os.environ
    if own_metrics_dir:
        os.environ[MULTIPROCESS_ENV] = tempfile.mkdtemp(prefix="spyglass-metrics-")

    def child_exit(_server, worker) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    class Server(BaseApplication):
        """gunicorn with its options from the settings, loading the app in each worker."""

        def load_config(self):
            options = {"bind": f"{settings.host}:{settings.port}", "workers": settings.web_workers,
                       "threads": settings.web_threads, "worker_class": "gthread",
                       "timeout": 120, "graceful_timeout": 30, "accesslog": "-",
                       "child_exit": child_exit}
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(settings, background_reload=True)

    try:
        Server().run()
    finally:
        if own_metrics_dir:
            shutil.rmtree(os.environ.pop(MULTIPROCESS_ENV), ignore_errors=True)
