"""The try-it page (``GET /``) and the API docs (``/docs``, ``/redoc``), all from the service's own
files: no CDN, no external fonts, so they work on a machine without internet access. The page
is plain HTML, CSS and JavaScript (``service/static/``) calling the public API; Swagger UI and
ReDoc are vendored, pinned, with their licences (``service/static/vendor/README.md``).

The docs pages are written here rather than by FastAPI's helpers, whose pages start Swagger UI
with an inline script and style ReDoc inline: under the service's Content-Security-Policy
(``service/edge/security_headers.py``: ``script-src 'self'``) both are started by files
(``static/docs.js``, ``static/redoc.js``) that read the spec's address from the page.
"""

from __future__ import annotations

import secrets
from html import escape
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse

from service.edge.security_headers import content_security_policy

STATIC = Path(__file__).resolve().parent.parent / "static"
SWAGGER = "/static/vendor/swagger-ui-5.35.0"
REDOC = "/static/vendor/redoc-2.5.4"
# What ReDoc 2.5.4 needs beyond the service's policy: its styled components carry the page's nonce,
# but the bundle also writes perfect-scrollbar's stylesheet into a <style> element as it loads,
# and an empty <style> before it can be given the nonce (allowed by their hashes: a new ReDoc
# version needs the new ones, which Chromium prints in the violation; tests/test_browser.py fails
# on any), and runs its search index in a worker made from a blob: URL (one it made: scripts are
# still only 'self').
REDOC_STYLE_HASHES = ("'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc=' "  # perfect-scrollbar.css
                      "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='")  # the empty string

router = APIRouter(include_in_schema=False)


def docs_page(title: str, head: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n"
            "  <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"  <title>{escape(title)}</title>\n  <link rel=\"stylesheet\" href=\"/static/docs.css\">\n{head}"
            f"</head>\n<body>\n{body}</body>\n</html>\n")


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/docs")
async def swagger(request: Request) -> HTMLResponse:
    spec = escape(request.app.openapi_url)
    return HTMLResponse(docs_page(
        f"{request.app.title}: API",
        f"  <link rel=\"icon\" href=\"{SWAGGER}/favicon-32x32.png\">\n"
        f"  <link rel=\"stylesheet\" href=\"{SWAGGER}/swagger-ui.css\">\n",
        f"  <div id=\"swagger-ui\" data-spec-url=\"{spec}\"></div>\n"
        f"  <script src=\"{SWAGGER}/swagger-ui-bundle.js\"></script>\n"
        "  <script src=\"/static/docs.js\"></script>\n"))


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc writes its styles into ``<style>`` elements: they carry this response's nonce, which the
    policy allows for styles only (scripts stay ``'self'``)."""
    nonce, spec = secrets.token_urlsafe(16), escape(request.app.openapi_url)
    return HTMLResponse(docs_page(
        f"{request.app.title}: API", "  <link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">\n",
        f"  <div id=\"redoc\" data-spec-url=\"{spec}\" data-nonce=\"{nonce}\"></div>\n"
        f"  <script src=\"{REDOC}/redoc.standalone.js\"></script>\n"
        "  <script src=\"/static/redoc.js\"></script>\n"),
        headers={"Content-Security-Policy": content_security_policy(
            {"style-src": f"'nonce-{nonce}' {REDOC_STYLE_HASHES}", "worker-src": "blob:"}),
            "Cache-Control": "no-store"})  # a nonce is for one response
