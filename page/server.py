"""Serving the page: launch options, the REST app with the page mounted on it, the port check, auth.

One process serves the page at / and the REST API (`server/`: /api/v1/caption, /api/v1/models, /healthz,
/readyz, /metrics, docs at /docs and /redoc, their assets served locally): `build_server` mounts the Gradio
Blocks on the API's FastAPI app, and `app.py` runs it with uvicorn on a socket bound by `listen`.

Only the display-image cache is allowed to be served (downsized copies of uploaded images); the zoo folder
and the database are listed as blocked as well, and a file input naming a server path instead of an upload is
refused with a message that names no path (`page.blocks.CaptionZooBlocks`).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI

from page.context import AppContext
from rating.validation import validate_name
from server.api import ApiConfig, create_app

STATIC = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_FILE_SIZE = "25mb"  # per uploaded file; a phone photo is 3-12 MB


def login_check(ctx: AppContext) -> Callable[[str, str], bool]:
    """Gradio's `auth` for --login: a user name and password checked against the rating database's accounts
    (`rating.accounts.authenticate`); the page then knows the signed-in user as `gr.Request.username`."""
    from rating import accounts

    def check(username: str, password: str) -> bool:
        return accounts.authenticate(ctx.store, username, password) is not None

    return check


def launch_options(ctx: AppContext, *, host: str = "127.0.0.1", port: int | None = 7860,
                   auth: tuple[str, str] | Callable[[str, str], bool] | None = None,
                   max_file_size: str | int = DEFAULT_MAX_FILE_SIZE) -> dict[str, Any]:
    """The keyword arguments for `demo.launch`: local only, no share link, upload limit, nothing private served,
    the page's CSS and script from `static/`. The footer keeps Gradio's settings link and drops its "Use via
    API" (which opens Gradio's own API page): the page's footer links the REST docs instead."""
    blocked = [str(ctx.zoo_dir.resolve())]
    if ctx.store.path is not None:  # an SQLite file (a server database has no file to guard)
        db = ctx.store.path.resolve()
        blocked += [str(db), str(db) + "-wal", str(db) + "-shm"]
    return dict(server_name=host, server_port=port, share=False, auth=auth, max_file_size=max_file_size,
                allowed_paths=[str(ctx.image_dir.resolve())], blocked_paths=blocked, footer_links=["settings"],
                theme=gr.themes.Soft(), css=(STATIC / "page.css").read_text(encoding="utf-8"),
                js=(STATIC / "keys.js").read_text(encoding="utf-8"), show_error=True, ssr_mode=False,
                mcp_server=False)


def build_server(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = 7860,
                 auth: tuple[str, str] | list[tuple[str, str]] | None = None,
                 max_file_size: str | int = DEFAULT_MAX_FILE_SIZE, api_token: str | None = None,
                 max_batch_wait_ms: float = 10.0, max_batch: int = 32, login: bool = False) -> FastAPI:
    """One FastAPI app serving the REST API, /healthz, /readyz, /metrics and /docs (`server.api`) with the page
    mounted at / (`gr.mount_gradio_app`, with everything `launch_options` gives `demo.launch`). The API uses
    the page's model cache, its auth (HTTP Basic there) plus the optional bearer token, and its upload limit.
    With `login`, page and API take the accounts of the page's rating database (`auth` is then not used); the
    raters' endpoints (`server.rating_api`) work on the page's store and display copies."""
    ctx: AppContext = demo.ctx
    ctx.login = ctx.login or login  # the page's handlers then rate as the signed-in account (page.session)
    pairs = [] if login else [auth] if isinstance(auth, tuple) else list(auth or [])
    api = create_app(ApiConfig(zoo_dir=ctx.zoo_dir, auth=pairs, api_token=api_token, store=ctx.store,
                               image_dir=ctx.image_dir, login=login, admins=tuple(ctx.admins),
                               max_batch_wait_ms=max_batch_wait_ms, max_batch=max_batch), cache=ctx.cache)
    ctx.metrics = api.state.api.metrics
    page_auth = login_check(ctx) if login else auth
    options = launch_options(ctx, host=host, port=port, auth=page_auth, max_file_size=max_file_size)
    options.pop("share")  # a mounted app has no share link either way
    gr.mount_gradio_app(api, demo, path="/", **options)
    # Gradio checks that a file input names an uploaded file (not the database, not the zoo) only once the
    # Blocks "has launched", which launch() sets and mount_gradio_app (Gradio 6.31) does not: set it here.
    demo.has_launched = True
    api.state.api.config.max_file_size = demo.max_file_size  # as Gradio parsed it: the page's limit exactly
    return api


def _address(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound now, so that a port taken meanwhile fails here (OSError)."""
    family, kind, proto, _, where = socket.getaddrinfo(_address(host), port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
    except OSError:
        sock.close()
        raise
    return sock


def port_problem(host: str, port: int) -> str | None:
    """Why the server cannot listen on host:port, as one line naming the fix; None when it can."""
    if not 1 <= port <= 65535:
        return f"--port must be between 1 and 65535, got {port}"
    try:
        listen(host, port).close()  # as the server's own socket does: a port in TIME_WAIT counts as free
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return (f"port {port} is already in use on {host} (another program, or another Caption Zoo, is "
                    f"listening there); start on a free port with --port, e.g. --port {port + 1 if port < 65535 else 7860}")
        return (f"cannot listen on {host}:{port} ({e.strerror or e}); use an address of this machine with --host "
                "(default 127.0.0.1) and a free port with --port")
    return None


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """'USER:PASS' -> ('USER', 'PASS'); the password may itself contain ':'."""
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"--auth must look like USER:PASS (both non-empty), got {value!r}")
    return user, password


def parse_admins(values: list[str] | None) -> tuple[str, ...]:
    """The --admin values ('alice', 'bob,carol', repeatable) as validated names."""
    names = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    return tuple(dict.fromkeys(validate_name(name, "--admin user name") for name in names))
