"""The API's documentation pages, /docs (Swagger UI) and /redoc (ReDoc), working on a closed network.

FastAPI's own pages load their scripts and stylesheet from cdn.jsdelivr.net and are blank offline. Here the
app is built by `fastapi_offline.FastAPIOffline` (the same FastAPI, with the Swagger UI and ReDoc files shipped
in its wheel and served at DOCS_STATIC_URL), and the two pages get a Content-Security-Policy that lets the
browser load nothing from elsewhere: ReDoc 2 always draws the Redocly logo from cdn.redoc.ly in its menu, which
the policy blocks (ReDoc then hides the image), and Swagger UI's validator badge is switched off.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
DOCS_STATIC_URL = "/static-offline-docs"  # where both pages load their scripts, stylesheet and icon from
# 'unsafe-inline': FastAPI starts Swagger UI from an inline <script>, and both UIs write inline styles.
# blob: workers: ReDoc's search index runs in a worker it builds from a blob. data: images: the UIs' icons.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; frame-ancestors 'self'"
)


class DocsContentSecurityPolicy:
    """ASGI middleware: adds DOCS_CONTENT_SECURITY_POLICY to the responses of the docs pages only (the Gradio
    page mounted on the same app has needs of its own and is left as it is)."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...] = (DOCS_URL, REDOC_URL)) -> None:
        self.app, self.paths = app, paths
        self.header = (b"content-security-policy", DOCS_CONTENT_SECURITY_POLICY.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # behind a proxy scope["path"] starts with the root path; the route is what follows it
        path = scope.get("path", "")[len(scope.get("root_path", "")):] if scope["type"] == "http" else None
        if path not in self.paths:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, send_with_policy)


def offline_docs_app(**fastapi_kwargs: Any) -> FastAPI:
    """A FastAPI app (any FastAPI arguments) whose /docs and /redoc need no network: see the file docstring.
    The pages and their files are open to everyone, as FastAPI's pages are; /openapi.json stays where it was."""
    # Swagger UI would otherwise show a badge image from validator.swagger.io when served on a non-localhost host.
    fastapi_kwargs.setdefault("swagger_ui_parameters", {"validatorUrl": None})
    app = FastAPIOffline(docs_url=DOCS_URL, redoc_url=REDOC_URL, static_url=DOCS_STATIC_URL, **fastapi_kwargs)
    app.add_middleware(DocsContentSecurityPolicy)
    return app
