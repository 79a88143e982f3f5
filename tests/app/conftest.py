"""Shared fixtures of the page's tests: a tiny zoo (once per module) and a fresh AppContext on it per test.
The browser fixture is the test-wide one (tests/conftest.py)."""

import pytest

from helpers import build_tiny_zoo
from page import context as page_context


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_tiny_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture()
def ctx(zoo, tmp_path):
    context = page_context.make_context(zoo, tmp_path / "ratings.sqlite", samples_dir=tmp_path / "samples",
                                        image_dir=tmp_path / "display")
    yield context
    context.store.close()
