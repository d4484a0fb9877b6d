"""Run the app under gunicorn (threads per worker), or Flask's reloader for development."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
import sys
import tempfile

from spyglass.search.errors import ConfigError
from spyglass.search.settings import Settings

from . import create_app
from .metrics import MULTIPROCESS_ENV
from .security import is_loopback

log = logging.getLogger(__name__)


def check_access_mode(settings: Settings) -> None:
    """Refuse to serve beyond loopback without accounts, unless told it is fronted by a proxy that
    authenticates; warn when accounts are on but nobody could log in."""
    if settings.auth == "none" and not is_loopback(settings.host):
        if not settings.insecure_no_auth:
            raise ConfigError(f"serving {settings.host} without accounts would show the whole library to anyone "
                              "who reaches the port",
                              "set SPYGLASS_AUTH=accounts and add people with `spyglass user add NAME --admin`, "
                              "or pass --insecure-no-auth if a proxy in front authenticates them")
        log.warning("serving %s with SPYGLASS_AUTH=none (--insecure-no-auth): anyone who reaches this port "
                    "sees the whole library unless a proxy in front authenticates them", settings.host)
    if settings.auth == "accounts":
        from spyglass.search.accounts.directory import Accounts
        from spyglass.search.catalog.db import create_db_engine, session_factory
        from spyglass.search.catalog.migrate import current_revision, head_revision

        engine = create_db_engine(settings.db_url)
        try:
            people = (Accounts(session_factory(engine)).count()
                      if current_revision(engine) == head_revision() else 0)
        finally:
            engine.dispose()
        if people == 0:
            log.warning("SPYGLASS_AUTH=accounts but nobody can log in yet: run `spyglass user add NAME --admin`")


def check_port_free(settings: Settings) -> None:
    """Refuse, in one line, a port another program listens on (gunicorn would log ten errors and quit)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((settings.host.strip("[]"), settings.port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {settings.port} on {settings.host} is in use by another program",
                                  "pick another with --port or SPYGLASS_PORT") from None
            if exc.errno == errno.EACCES:
                raise ConfigError(f"port {settings.port} needs more privileges than this user has",
                                  "pick one above 1023 with --port") from None
            raise


def serve(settings: Settings, dev: bool = False) -> None:
    """Serve on settings.host:settings.port until interrupted (check_access_mode first)."""
    if dev and not is_loopback(settings.host):
        # Flask's debugger runs whatever code a visitor sends it.
        raise ConfigError(f"--dev listens only on loopback, not {settings.host}",
                          "drop --dev to serve other machines with gunicorn")
    if os.environ.get("WERKZEUG_RUN_MAIN") != "true":  # the reloader's child: its parent holds the port
        check_port_free(settings)
        print(f"Serving on http://{settings.host}:{settings.port}", file=sys.stderr, flush=True)
    if dev:
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
