"""The search page: one HTML shell; the results come from the JSON API."""

from __future__ import annotations

from flask import Blueprint, render_template

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def index():
    """The search page; ?q=text or ?like=<item id> in the URL runs that search."""
    return render_template("index.html")
