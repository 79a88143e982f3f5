"""The Alembic revisions and the table definition agree: a database upgraded from nothing has exactly the tables,
columns, keys and indexes of `rating.schema` (Alembic's autogenerate comparison finds nothing to change), on both
backends; HEAD_REVISION is the newest revision; and an upgraded file from before Alembic agrees too."""
from __future__ import annotations

import shutil

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from helpers import LEGACY_DB
from rating.database import HEAD_REVISION, alembic_config
from rating.schema import metadata
from rating.store import RatingStore


def differences(store: RatingStore) -> list:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return [d for d in compare_metadata(context, metadata)
                if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]


def test_revisions_build_exactly_the_schema(db):
    with RatingStore(db) as store:
        assert differences(store) == []
        with store.engine.connect() as conn:
            assert ScriptDirectory.from_config(alembic_config(conn)).get_current_head() == HEAD_REVISION


def test_a_file_from_before_alembic_ends_with_the_same_schema(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copy(LEGACY_DB, path)
    with RatingStore(path) as store:
        found = [[change[:4] for change in d] if isinstance(d, list) else d for d in differences(store)]
    # The one difference: the old DDL's `name TEXT PRIMARY KEY` lacks NOT NULL, which SQLite (unlike every other
    # database) does not imply for a primary key; the store never writes NULL there, so the tables are not rebuilt.
    assert found == [[("modify_nullable", None, "evaluation_sets", "name")],
                     [("modify_nullable", None, "images", "content_hash")]]
