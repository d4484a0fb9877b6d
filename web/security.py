"""Who may talk to the server: trusted Host names, no cross-site writes, opt-in CORS, hardening headers.

- Host: loopback names by default when the server listens on loopback, so a DNS-rebinding page
  cannot read `/file` through 127.0.0.1. (Flask's TRUSTED_HOSTS cannot name an IPv6 address.)
- Cross-site POSTs (a page elsewhere submitting a form or a text/plain fetch) are refused with
  403 unless their origin is named in SPYGLASS_CORS_ORIGINS. Clients that are not browsers send
  no Origin and pass, as clip-retrieval's ClipClient does.
- CORS headers only for the origins named in SPYGLASS_CORS_ORIGINS.

flask-cors would add the CORS headers, but it never refuses a request, and both halves here
come from one list; the whole rule is shorter than its configuration would be.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from flask import Flask, Response, request
from werkzeug.exceptions import BadRequest, Forbidden

from spyglass.search.display import printable
from spyglass.search.settings import Settings

LOOPBACK_NAMES = ["localhost", "127.0.0.1", "::1"]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# https: images: the thumbnails of items imported with only a url are the originals' own URLs.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data: https:; media-src 'self' blob:; "
                           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


def is_loopback(host: str) -> bool:
    """Whether an address to listen on is a loopback one (127.0.0.0/8, ::1, localhost)."""
    if host.strip("[]") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def trusted_hosts(settings: Settings) -> list[str] | None:
    """SPYGLASS_ALLOWED_HOSTS as a list of names; None means any host."""
    names = [n.strip() for n in settings.allowed_hosts.split(",") if n.strip()]
    if "*" in names:
        return None
    if names:
        # Loopback names only ever come from a client on the server's own machine (a container's
        # health check, say): never a rebinding page, whose Host is its own name.
        return names + LOOPBACK_NAMES
    return list(LOOPBACK_NAMES) if is_loopback(settings.host) else None


def host_name(host: str) -> str:
    """The name in a Host header, without its port: 'a.example:80' -> 'a.example', '[::1]:80' -> '::1'."""
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return (host.rsplit(":", 1)[0] if host.count(":") == 1 else host).lower()


def host_allowed(host: str, trusted: list[str]) -> bool:
    """Whether a Host header names one of the trusted names ('.example.com' takes its subdomains)."""
    name = host_name(host)
    for entry in trusted:
        entry = entry.lower().strip("[]")
        if name == entry.lstrip(".") or (entry.startswith(".") and name.endswith(entry)):
            return True
    return False


def cors_origins(settings: Settings) -> frozenset[str]:
    """SPYGLASS_CORS_ORIGINS as a set of origins ('*' for any)."""
    return frozenset(o.strip().rstrip("/") for o in settings.cors_origins.split(",") if o.strip())


def init_app(app: Flask, settings: Settings) -> None:
    """Install the host check, the cross-site rule, CORS and the hardening headers."""
    trusted = trusted_hosts(settings)
    allowed = cors_origins(settings)

    def cors_allows(origin: str | None) -> bool:
        return origin is not None and ("*" in allowed or origin in allowed)

    @app.before_request
    def refuse_other_hosts_and_cross_site_writes():
        if trusted is not None and not host_allowed(request.host, trusted):
            raise BadRequest(f"this server does not answer to the host name {printable(request.host, 100)!r} "
                             "(SPYGLASS_ALLOWED_HOSTS)")
        if request.method in SAFE_METHODS:
            return None
        origin = request.headers.get("Origin")
        if origin is not None:
            if urlsplit(origin).netloc == request.host or cors_allows(origin):
                return None
        elif request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none"):
            return None
        raise Forbidden(f"requests from other sites ({origin or 'another site'}) are refused; "
                        "set SPYGLASS_CORS_ORIGINS to allow that origin")

    @app.after_request
    def add_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        origin = request.headers.get("Origin")
        if cors_allows(origin):
            headers["Access-Control-Allow-Origin"] = "*" if "*" in allowed else origin
            headers.add("Vary", "Origin")
            if request.method == "OPTIONS":
                headers["Access-Control-Allow-Methods"] = "GET, POST"
                headers["Access-Control-Allow-Headers"] = "Content-Type"
                headers["Access-Control-Max-Age"] = "600"
        return response
