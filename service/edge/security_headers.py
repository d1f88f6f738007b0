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

Documents (``text/html``, and SVG, which can carry script) get all four; every other answer (JSON,
images, scripts, styles) gets ``nosniff``, the one that means anything there. Putting all four on
``/predict``'s JSON answers cost 4-5 % of its throughput (uvicorn checks and encodes each header;
``py-spy`` under ``wrk``) for no protection: a policy governs a document, and an answer read as
its declared JSON type is not one.
"""

from __future__ import annotations

from collections.abc import Mapping

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
DOCUMENT_TYPES = (b"text/html", b"image/svg+xml")
_DOCUMENT = [(name.lower().encode(), value.encode()) for name, value in HEADERS.items()]
_ANSWER = [(b"x-content-type-options", b"nosniff")]


def added_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """What a response with raw ``headers`` (names lower-case, as Starlette sends them) lacks of its
    security headers: all of :data:`HEADERS` for a document, ``nosniff`` for anything else."""
    present = {name for name, _ in headers}
    media = next((value for name, value in headers if name == b"content-type"), b"")
    wanted = _DOCUMENT if media.lower().startswith(DOCUMENT_TYPES) else _ANSWER
    return [pair for pair in wanted if pair[0] not in present]


class SecurityHeadersMiddleware:
    """Adds the security headers a response lacks (:func:`added_headers`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                message["headers"] = headers + added_headers(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)
