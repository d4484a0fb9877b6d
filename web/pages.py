"""The search page: one HTML shell; the results come from the JSON API."""

from __future__ import annotations

from flask import Blueprint, current_app, g, redirect, render_template, url_for

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def index():
    """The search page; the URL's query (q, like, filters, refinements) runs that search."""
    # With accounts: who is logged in, and the CSRF token the page's POSTs carry (web/auth.py).
    who = g.principal if getattr(g, "principal", None) is not None and g.principal.session else None
    return render_template("index.html", user=who, csrf_token=getattr(g, "csrf_token", ""),
                           page_cutoff=current_app.extensions["spyglass"].settings.page_cutoff)


@blueprint.get("/favicon.ico")
def favicon():
    """Browsers ask for /favicon.ico whatever the page says: the SVG one."""
    return redirect(url_for("static", filename="favicon.svg"), code=301)
