"""Who is asking, checked once for every request before any route runs (SPYGLASS_AUTH=accounts).

Default deny: every endpoint needs a principal except the few named in PUBLIC, whatever the path
looked like (the check reads the endpoint Flask matched, after its own path normalisation), and
an unmatched path needs one too, so nothing is learnt about routes without credentials.

- API clients: `Authorization: Bearer TOKEN`, or HTTP basic with the token as the password (the
  user name must be the token's owner), so clip-retrieval's ClipClient works with
  `http://alice:TOKEN@host:8000/knn-service`. Missing or bad: 401 with `WWW-Authenticate`;
  a search token on an admin route: 403.
- The page: the session cookie login sets; a state-changing request with it must carry the
  session's CSRF token (header `X-CSRF-Token`, or the form field `csrf_token`).
"""

from __future__ import annotations

import base64
import binascii
import hmac

from flask import Flask, g, redirect, request, url_for
from werkzeug.exceptions import Forbidden, Unauthorized

from spyglass.search.accounts import audit
from spyglass.search.accounts.access import Principal
from spyglass.search.settings import Settings

from .security import SAFE_METHODS
from .state import state

SESSION_COOKIE = "spyglass_session"
PUBLIC = frozenset({"static", "pages.favicon", "login.form", "login.submit", "api.healthz", "api.openapi"})
ADMIN = frozenset({"metrics.metrics"})
CHALLENGE = 'Bearer realm="spyglass"'


class NotLoggedIn(Unauthorized):
    """401 with the challenge a client needs to know how to authenticate."""

    def __init__(self, description: str):
        super().__init__(description)
        self.www_authenticate_value = CHALLENGE

    def get_headers(self, environ=None, scope=None):
        return [*super().get_headers(environ, scope), ("WWW-Authenticate", CHALLENGE)]


def principal() -> Principal:
    """The principal of the request being handled."""
    return g.principal


def within() -> tuple[str, ...] | None:
    """The folders the request's principal may see; None for everything."""
    return g.principal.within


def init_app(app: Flask, settings: Settings) -> None:
    """Install the check (nothing to check with SPYGLASS_AUTH=none: everyone sees everything)."""

    @app.before_request
    def identify():
        if settings.auth == "none":
            g.principal = Principal(name=f"addr:{request.remote_addr}", is_admin=True, scope="admin")
            return None
        g.principal = None
        if request.endpoint in PUBLIC:
            return None
        if request.method == "OPTIONS":
            return None  # Flask's automatic answer names the methods a route takes, nothing more
        found = _from_header() if "Authorization" in request.headers else _from_cookie()
        if found is None:
            if request.endpoint == "pages.index" and request.method in ("GET", "HEAD"):
                return redirect(url_for("login.form", next=request.full_path.rstrip("?")))
            raise NotLoggedIn("log in, or send an API token: Authorization: Bearer TOKEN")
        if request.endpoint in ADMIN and not found.may_admin:
            audit.event("denied", user=found.name, token_id=found.token_id, endpoint=request.endpoint)
            raise Forbidden("this needs an admin: an admin's page session, or a token with --scope admin")
        if found.token_id is not None:
            audit.event("token_used", token_id=found.token_id, user=found.name, endpoint=request.endpoint,
                        method=request.method)
        g.principal = found
        return None

    @app.after_request
    def keep_answers_private(response):
        # What one person may see must not be kept by a shared cache and handed to another.
        if settings.auth == "accounts":
            response.headers["Cache-Control"] = response.headers.get(
                "Cache-Control", "private, no-cache").replace("public", "private")
            response.vary.update(("Cookie", "Authorization"))
        return response


def _accounts():
    return state().accounts()


def _from_header() -> Principal | None:
    """The principal of a Bearer token, or of basic credentials whose password is a token."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return _accounts().by_token(value)
    if scheme.lower() == "basic":
        try:
            name, _, token = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        found = _accounts().by_token(token)
        return found if found is not None and hmac.compare_digest(found.name.encode(), name.encode()) else None
    return None


def _from_cookie() -> Principal | None:
    """The principal of the page session, after the CSRF check for anything that changes state."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    found = _accounts().by_session(cookie)
    if found is None:
        return None
    who, csrf = found
    if request.method not in SAFE_METHODS:
        sent = request.headers.get("X-CSRF-Token") or (
            request.form.get("csrf_token", "") if request.mimetype == "application/x-www-form-urlencoded" else "")
        if not hmac.compare_digest(sent.encode(), csrf.encode()):
            audit.event("csrf_refused", user=who.name, endpoint=request.endpoint)
            raise Forbidden("this request did not carry the page's CSRF token; reload the page and try again")
    g.csrf_token = csrf
    return who
