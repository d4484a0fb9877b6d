"""The search page: one HTML shell; the results come from the JSON API."""

from __future__ import annotations

from flask import Blueprint, g, render_template

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def index():
    """The search page; ?q=text or ?like=<item id> in the URL runs that search."""
    # With accounts: who is logged in, and the CSRF token the page's POSTs carry (web/auth.py).
    who = g.principal if getattr(g, "principal", None) is not None and g.principal.session else None
    return render_template("index.html", user=who, csrf_token=getattr(g, "csrf_token", ""))
