"""Test-wide settings: offline, one torch thread, and small shared fixtures (one headless Chromium per browser
test module; one real PostgreSQL server per test session, a fresh database on it per test).

The machine is shared and has two cores; torch with two threads oversubscribes badly when anything else
runs, so every test process uses one thread. Nothing is ever downloaded.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import re
import secrets

import pytest
import torch

from helpers import CHROMIUM, CHROMIUM_ARGS
from postgres_server import PostgresServer, find_pg_bin

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, for one test module (Playwright drives it; it cannot download its own)."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


POSTGRES_MISSING = "PostgreSQL binaries not found (install Debian's postgresql, `make postgres`)"


@pytest.fixture(scope="session")
def postgres_server():
    """One PostgreSQL server on 127.0.0.1 for the whole session, started by the first test that asks for it (a
    session that runs no PostgreSQL test starts none). Skipped only when the binaries are missing; any other
    failure is an error. Stopped at the session's end; PostgresServer's atexit hook and watchdog stop it when
    pytest does not get that far (Ctrl+C, killed)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        pytest.skip(POSTGRES_MISSING)
    with PostgresServer(bin_dir) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server, request):
    """postgresql://postgres@127.0.0.1:PORT/NAME of a fresh, empty database of this test's own (named after the
    test), dropped afterwards even if connections to it are still open. For SQLAlchemy, replace the scheme with
    postgresql+psycopg://."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"test_{slug}_{secrets.token_hex(4)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """A fresh rating database on each backend, as `--db` names it: an SQLite file, and a PostgreSQL database of
    this test's own on the session's server. A test that takes `db` runs once per backend."""
    if request.param == "sqlite":
        return str(tmp_path / "ratings.sqlite")
    return request.getfixturevalue("postgres_url")

