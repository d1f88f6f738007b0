"""service/edge/security_headers.py: every page and the API docs carry the policy and the headers, the
API's answers nosniff; no page of service/static/ needs inline script or style to work. (That Chromium
enforces the policy with no violation on any page: tests/test_browser.py.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.app import create_app
from service.edge.security_headers import content_security_policy
from service.routes.page import STATIC
from service.settings import Settings

POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; font-src 'self'; "
          "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {"content-security-policy": POLICY, "x-frame-options": "DENY", "x-content-type-options": "nosniff",
           "referrer-policy": "no-referrer"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    """The app without its lifespan (no model loaded): the pages, docs and refusals need none."""
    return TestClient(create_app(Settings(admin_tokens=SecretStr("ops:admin-token-0123456789abcdef"))))


def security_headers(response: httpx.Response) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in HEADERS}


@pytest.mark.parametrize("path", ["/", "/review", "/admin", "/docs"])
def test_every_page_and_the_swagger_docs_send_the_policy_and_headers(client, path):
    response = client.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert security_headers(response) == HEADERS


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/healthz", 200), ("GET", "/openapi.json", 200), ("GET", "/static/page.js", 200),
    ("GET", "/no-such-page", 404), ("GET", "/readyz", 503), ("DELETE", "/predict", 405)])
def test_the_api_and_its_refusals_send_nosniff_alone(client, method, path, status):
    """A policy governs a document: on JSON, scripts and styles only nosniff means anything."""
    response = client.request(method, path)
    assert response.status_code == status
    assert security_headers(response) == {**dict.fromkeys(HEADERS), "x-content-type-options": "nosniff"}


def test_an_svg_is_a_document_and_gets_them_all(client):
    response = client.get("/static/favicon.svg")
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert security_headers(response) == HEADERS


def test_redoc_allows_its_styles_by_a_fresh_nonce_and_scripts_stay_self(client):
    first, second = client.get("/redoc"), client.get("/redoc")
    nonces = []
    for response in (first, second):
        (nonce,) = re.findall(r'data-nonce="([^"]+)"', response.text)
        assert len(nonce) >= 22  # 16 random bytes
        policy = response.headers["content-security-policy"]
        assert policy == content_security_policy({"style-src": f"'nonce-{nonce}' "
                                                               "'sha256-QMIg+bpjm3JdElJ388KYke01izlUW0UoNOeKjpMxdgc=' "
                                                               "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='",
                                                  "worker-src": "blob:"})
        assert "script-src 'self';" in policy and "unsafe" not in policy and "frame-ancestors 'none'" in policy
        assert {name: response.headers[name] for name in list(HEADERS)[1:]} == dict(list(HEADERS.items())[1:])
        assert response.headers["cache-control"] == "no-store"
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


class InlineCode(HTMLParser):
    """What a page would need 'unsafe-inline' for: inline scripts, handlers, style elements and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        self.found += [f"{tag} {name}" for name in names if name.startswith("on") or name == "style"]
        self.found += [f"{tag} href={names['href']}" for _ in [0]
                       if (names.get("href") or "").startswith("javascript:")]
        if tag == "style":
            self.found.append("style element")
        if tag == "script":
            self.scripts.append(names.get("src") or "")
            self._in_script = not names.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append(f"inline script {data.strip()[:40]}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False


def inline_code(html: str) -> tuple[list[str], list[str]]:
    parser = InlineCode()
    parser.feed(html)
    return parser.found, parser.scripts


@pytest.mark.parametrize("page", ["index.html", "review.html", "admin.html"])
def test_the_pages_have_no_inline_script_or_style(page):
    found, scripts = inline_code((STATIC / page).read_text())
    assert found == []
    assert scripts and all(src.startswith("/static/") for src in scripts)


@pytest.mark.parametrize(("path", "scripts"), [
    ("/docs", ["/static/vendor/swagger-ui-5.35.0/swagger-ui-bundle.js", "/static/docs.js"]),
    ("/redoc", ["/static/vendor/redoc-2.5.4/redoc.standalone.js", "/static/redoc.js"])])
def test_the_docs_pages_start_their_ui_from_files(client, path, scripts):
    """FastAPI's own /docs page starts Swagger UI in an inline script; ours from static/docs.js."""
    found, loaded = inline_code(client.get(path).text)
    assert (found, loaded) == ([], scripts)
