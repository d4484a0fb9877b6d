"""The page's login and logout (SPYGLASS_AUTH=accounts).

The login form carries a token that must match a cookie set with it (a double submit), so no
other site can log a visitor in as someone else; cross-site POSTs are refused before that anyway
(web/security.py). The session cookie is HttpOnly, SameSite=Lax, and Secure when the page came
over TLS (directly, or through a proxy that says so in X-Forwarded-Proto).
"""

from __future__ import annotations

import hmac
import secrets

from flask import Blueprint, current_app, g, redirect, render_template, request, url_for
from werkzeug.exceptions import NotFound

from spyglass.search.accounts.directory import SESSION_HOURS, AccountError, Throttled

from .auth import SESSION_COOKIE
from .state import state

blueprint = Blueprint("login", __name__)
FORM_COOKIE = "spyglass_login"
MAX_FIELD_CHARS = 1024


def _secure() -> bool:
    return request.is_secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _local(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (never another site's URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or "\n" in target:
        return url_for("pages.index")
    return target


def _form(message: str = "", status: int = 200, name: str = ""):
    if state().settings.auth != "accounts":
        raise NotFound("this server has no accounts (SPYGLASS_AUTH=none)")
    token = secrets.token_urlsafe(32)
    response = current_app.make_response((render_template(
        "login.html", csrf_token=token, message=message, name=name,
        next=_local(request.values.get("next"))), status))
    response.set_cookie(FORM_COOKIE, token, max_age=3600, httponly=True, samesite="Lax", secure=_secure(),
                        path=url_for("login.form"))
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.get("/login")
def form():
    """The login form."""
    return _form()


@blueprint.post("/login")
def submit():
    """Check the name and password; on success start a session and go where the person was going."""
    if state().settings.auth != "accounts":
        raise NotFound("this server has no accounts (SPYGLASS_AUTH=none)")
    sent, expected = request.form.get("csrf_token", ""), request.cookies.get(FORM_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _form("The form had expired; please log in again.", 403)
    name = request.form.get("name", "")[:MAX_FIELD_CHARS]
    password = request.form.get("password", "")[:MAX_FIELD_CHARS + 1]
    accounts = state().accounts()
    try:
        who = accounts.log_in(name, password, request.remote_addr or "unknown")
    except Throttled as exc:
        response = _form("Too many failed logins: wait a few minutes and try again.", 429, name[:64])
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    except AccountError:
        return _form("Wrong name or password.", 401, name[:64])
    cookie, _csrf = accounts.start_session(who)
    response = redirect(_local(request.form.get("next")), code=303)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=SESSION_HOURS * 3600, httponly=True, samesite="Lax",
                        secure=_secure(), path="/")
    response.delete_cookie(FORM_COOKIE, path=url_for("login.form"))
    return response


@blueprint.post("/logout")
def logout():
    """End the page session everywhere (the CSRF check ran before this: web/auth.py)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and g.principal is not None and g.principal.session:
        state().accounts().end_session(cookie)
    response = redirect(url_for("login.form"), code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
