"""Fixtures of the rating tests (the `db` fixture, one database per backend, is in tests/conftest.py)."""

import pytest

from rating.store import RatingStore


@pytest.fixture
def store(db):
    """A RatingStore on a fresh database of each backend, closed after the test. A test file that needs another
    store (a prepared set, an SQLite-only file) defines its own `store`, which takes precedence."""
    store = RatingStore(db)
    yield store
    store.close()
