"""Security headers on every response, by one pure-ASGI middleware: what a browser may do with the
service's pages (``/``, ``/review``, ``/admin``), its API docs (``/docs``, ``/redoc``) and its answers.

- ``Content-Security-Policy``: only the service's own scripts, styles, images and connections
  (``'self'``; images also ``data:`` and ``blob:``, which the pages and Swagger UI draw with); no
  inline script anywhere (every page's code is a file in ``service/static/``), no plugins, no
  ``<base>``, forms post only to the service, and no page may be framed (``frame-ancestors 'none'``,
  against clickjacking of the review and admin pages). A route that needs more sets its own
  policy, which the middleware leaves alone: ``/redoc`` allows ReDoc's ``<style>`` elements (by a
  per-request nonce and two hashes) and its search worker (``routes/page.py``).
- ``X-Frame-Options: DENY``: ``frame-ancestors`` for browsers that predate it.
- ``X-Content-Type-Options: nosniff``: an answer is read as its declared type, never sniffed into
  HTML or script (an uploaded image echoed back by the review API stays an image).
- ``Referrer-Policy: no-referrer``: no page's address (the review page's may carry its token in the
  fragment until the page removes it) is sent to anywhere a link leads.

The same headers go on every response, the JSON API's included: they cost nothing there, and a
rule that holds everywhere cannot miss a page added later.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

POLICY: dict[str, str] = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data: blob:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "base-uri": "'none'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(extra: Mapping[str, str] | None = None) -> str:
    """The policy as a header value, with ``extra`` sources added to its directives (a directive it
    lacks is added): e.g. ``{"style-src": "'nonce-...'"}``. Never ``'unsafe-inline'``."""
    directives = dict(POLICY)
    for name, sources in (extra or {}).items():
        directives[name] = f"{directives[name]} {sources}" if name in directives else sources
    return "; ".join(f"{name} {value}" for name, value in directives.items())


HEADERS: dict[str, str] = {
    "Content-Security-Policy": content_security_policy(),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    """Adds ``HEADERS`` to every HTTP response that does not already set them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
