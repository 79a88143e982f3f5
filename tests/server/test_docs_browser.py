"""Protects /docs and /redoc as a person opens them on a closed network, in Debian's Chromium: the API served
by uvicorn on a loopback port (with a login on the API, which the docs do not need), every request each page
makes stays on the machine (127.0.0.1 / localhost, or data: / blob: URLs that never leave the browser; ReDoc's
Redocly logo, which it always asks cdn.redoc.ly for, is refused by the page's Content-Security-Policy before it
is sent), and the page really renders: Swagger UI with the /api/v1/caption operation, ReDoc with the API's
title and that operation. Screenshots go to test-artifacts/. Skipped, with the reason, when /usr/bin/chromium
is missing."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from helpers import ARTIFACTS, browser_test_marks, serve_asgi_in_thread
from server.api import ApiConfig, create_app

pytestmark = browser_test_marks()

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
IN_BROWSER_SCHEMES = {"data", "blob"}  # made by the page itself: nothing is fetched from a network
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    config = ApiConfig(zoo_dir=tmp_path_factory.mktemp("empty-zoo"), auth=[("ann", "s3cret")])
    yield from serve_asgi_in_thread(create_app(config))


class Recorded:
    """Everything a page asked for: every request's URL, those the browser refused by the page's
    Content-Security-Policy (never sent), and its console errors and uncaught exceptions."""

    def __init__(self, page) -> None:
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("requestfailed", self._failed)
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _failed(self, request) -> None:
        # Chromium reports a request its Content-Security-Policy refused as failed with "csp"
        if request.failure in ("csp", "net::ERR_BLOCKED_BY_CSP"):
            self.blocked.append(request.url)

    def left_the_machine(self) -> list[str]:
        """Requests to anywhere but this machine that the browser did not refuse before sending."""
        return [u for u in self.requests if urlsplit(u).scheme not in IN_BROWSER_SCHEMES
                and urlsplit(u).hostname not in LOCAL_HOSTS and u not in self.blocked]


def open_recorded(browser, address: str):
    """A 1400x900 page at `address`, recorded from before its first request."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    recorded = Recorded(page)
    page.goto(address, wait_until="networkidle", timeout=60_000)
    return page, recorded


def test_swagger_ui_renders_with_no_request_leaving_the_machine(browser, url):
    page, recorded = open_recorded(browser, url + "/docs")
    operation = page.locator(".swagger-ui .opblock", has_text="/api/v1/caption").first
    operation.wait_for(state="visible", timeout=60_000)
    assert page.locator(".swagger-ui .opblock").count() >= 4  # caption, models, healthz, readyz, metrics
    assert "Caption Zoo API" in page.locator(".swagger-ui .info .title").inner_text()
    operation.locator(".opblock-summary").click()  # expanding it renders the request body's schema
    page.locator(".swagger-ui .opblock-body").first.wait_for(state="visible", timeout=30_000)
    page.wait_for_load_state("networkidle")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-docs-swagger.png"))
    page.close()
    assert recorded.left_the_machine() == [] and recorded.blocked == []
    assert recorded.errors == []
    assert any(u.endswith("/openapi.json") for u in recorded.requests)
    assert any(u.endswith("/swagger-ui-bundle.js") for u in recorded.requests)


def test_redoc_renders_with_no_request_leaving_the_machine(browser, url):
    page, recorded = open_recorded(browser, url + "/redoc")
    page.locator("h1", has_text="Caption Zoo API").first.wait_for(state="visible", timeout=60_000)
    # the operation's heading, and its method and path in the right-hand panel
    operation = page.locator("h2").filter(has_text=re.compile(r"^Caption\s*$"))  # not the tag's "caption"
    operation.scroll_into_view_if_needed(timeout=30_000)
    assert operation.is_visible()
    assert page.get_by_text("/api/v1/caption").count() >= 1
    page.wait_for_load_state("networkidle")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "api-docs-redoc.png"))
    page.close()
    assert recorded.left_the_machine() == []
    # ReDoc 2 always asks for the Redocly logo in its menu: the page's policy stops it in the browser, and that
    # refusal is the only error on the page
    assert set(recorded.blocked) <= {REDOC_LOGO}
    assert all(REDOC_LOGO in error and "Content Security Policy" in error for error in recorded.errors)
    assert any(u.endswith("/openapi.json") for u in recorded.requests)
    assert any(u.endswith("/redoc.standalone.js") for u in recorded.requests)
