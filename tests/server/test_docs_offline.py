"""Protects the API's documentation pages on a closed network: /docs (Swagger UI) and /redoc name no URL outside
the app (no CDN, no Google Fonts) and carry a Content-Security-Policy allowing nothing from elsewhere, every script, stylesheet and icon they reference is served by the app itself
with its content type, and the pages stay open when the API needs a login, as they always were. Also with the
Gradio page mounted at / (`page.server.build_server`), whose catch-all must not hide the docs' files."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.api import ApiConfig, create_app
from server.docs import DOCS_CONTENT_SECURITY_POLICY, DOCS_STATIC_URL

DOC_PAGES = ["/docs", "/redoc"]
CONTENT_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",), ".png": ("image/png",)}


class AssetLinks(HTMLParser):
    """The URLs a page loads: <script src>, <link href> (stylesheet, icon), <img src>."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href", "img": "src"}.get(tag)
        self.urls += [value for name, value in attrs if name == wanted and value]


def asset_urls(html: str) -> list[str]:
    parser = AssetLinks()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # A login is required, so the test also shows the docs and their files are public while the API is not;
    # the zoo is empty: the docs never touch it.
    config = ApiConfig(zoo_dir=tmp_path_factory.mktemp("empty-zoo"), auth=[("ann", "s3cret")])
    with TestClient(create_app(config)) as c:
        yield c


@pytest.mark.parametrize("page", DOC_PAGES)
def test_doc_pages_name_no_outside_url_and_serve_their_assets(client, page):
    answer = client.get(page)  # no credentials
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    # the browser itself refuses anything from elsewhere (ReDoc's menu logo from cdn.redoc.ly)
    assert answer.headers["content-security-policy"] == DOCS_CONTENT_SECURITY_POLICY
    html = answer.text
    assert re.findall(r"https?://[^\s\"'<>]+", html) == []  # no CDN, fonts or favicon from elsewhere
    urls = asset_urls(html)
    kinds = {Path(u).suffix for u in urls}
    assert ".js" in kinds and ".png" in kinds and (page != "/docs" or ".css" in kinds), urls
    for url in urls:
        assert url.startswith(DOCS_STATIC_URL + "/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] in CONTENT_TYPES[Path(url).suffix], url
        assert len(asset.content) > 1000, url  # the real file, not an error page
    assert client.get("/openapi.json").status_code == 200  # what both pages render
    assert "/api/v1/caption" in client.get("/openapi.json").json()["paths"]


def test_docs_are_open_while_the_api_needs_the_login(client):
    assert client.get("/api/v1/models").status_code == 401
    assert client.get("/api/v1/models", auth=("ann", "s3cret")).status_code == 200
    assert client.get("/docs/oauth2-redirect").status_code == 200  # Swagger UI's OAuth2 helper page, as before
    assert client.get(DOCS_STATIC_URL + "/nothing.js").status_code == 404
    assert "content-security-policy" not in client.get("/healthz").headers  # only the docs pages get the policy


def test_doc_assets_are_served_with_the_page_mounted_at_root(tmp_path):
    from helpers import build_tiny_zoo
    from page.blocks import build_app
    from page.server import build_server, parse_auth

    zoo = build_tiny_zoo(tmp_path / "zoo", ["alpha"])
    demo = build_app(zoo, tmp_path / "ratings.sqlite", samples_dir=tmp_path / "samples",
                         image_dir=tmp_path / "display")
    try:
        server = build_server(demo, auth=parse_auth("ann:s3cret"))
        with TestClient(server) as c:
            for page in DOC_PAGES:
                html = c.get(page).text
                for url in asset_urls(html):
                    asset = c.get(url)
                    assert asset.status_code == 200, url
                    assert asset.headers["content-type"].split(";")[0] in CONTENT_TYPES[Path(url).suffix], url
    finally:
        demo.ctx.store.close()
