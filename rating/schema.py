"""The rating store's database schema: the tables (DDL), SCHEMA_VERSION, and the upgrade steps that bring a
file written by older code up to date. `rating.store.RatingStore` runs `create_or_upgrade` when it opens a file;
the queries live there, the table definitions only here.

Schema (``PRAGMA user_version`` holds ``SCHEMA_VERSION``)::

    evaluation_sets(name PK, created_at, blind, preset, settings_json, notes, owner)
    images(content_hash PK, file_name, width, height, added_at)
    captions(eval_set, image_hash, model_name, caption, model_weights_hash, decoding_json, created_at,
             PK(eval_set, image_hash, model_name))
    ratings(eval_set, rater, image_hash, model_name, score INTEGER, caption, model_weights_hash,
            decoding_json, rated_at, PK(eval_set, rater, image_hash, model_name))
    pairwise_votes(eval_set, rater, image_hash, model_low, model_high, model_a, model_b,
                   outcome IN ('a','b','both_good','both_bad'), caption_a, caption_b, created_at,
                   PK(eval_set, rater, image_hash, model_low, model_high))

``evaluation_sets.owner`` (who created the set: the only one, with the app's admins, who may see a blind
set's model names) is added on open when missing (``ALTER TABLE ... ADD COLUMN``); sets from such an older
file keep owner NULL, so only an admin counts as their owner.
``pairwise_votes`` is created on open when missing (``CREATE TABLE IF NOT EXISTS``), so a database written
before pairwise mode gains it without a version change. Any set can be judged both ways: pairwise votes
live in their own table and do not depend on a mode flag of the set.

Added without a version change (additive; an older file gains them when opened):
``captions.gold_score`` (NULL or 0/1/2, an imported known score) and
``image_references(eval_set, image_hash, reference, added_at, PK(eval_set, image_hash, reference))``.

A set's score scale is ``evaluation_sets.settings_json["scale"]`` ([low, high]; absent = the app's 0-2), so
the store, not the table, checks a rating against its set's scale. Numbered migrations (MIGRATIONS) change a
table in a way older code cannot read; schema 2 rebuilt ``ratings`` without its ``score IN (0, 1, 2)`` check, so
that a set on another scale (e.g. 1-4, imported human-judgment corpora) can be stored.

Each upgrade step is idempotent and runs on every open, in the order of UPGRADES; a new step goes at its end.
Timestamps are ISO-8601 in UTC (``2025-01-31T12:00:00.123+00:00``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

SCHEMA_VERSION = 2

TABLES = """
CREATE TABLE IF NOT EXISTS evaluation_sets (
    name          TEXT PRIMARY KEY,
    created_at    TEXT NOT NULL,
    blind         INTEGER NOT NULL DEFAULT 0,
    preset        TEXT,
    settings_json TEXT NOT NULL DEFAULT '{}',
    notes         TEXT,
    owner         TEXT
);
CREATE TABLE IF NOT EXISTS images (
    content_hash TEXT PRIMARY KEY,
    file_name    TEXT,
    width        INTEGER,
    height       INTEGER,
    added_at     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS captions (
    eval_set           TEXT NOT NULL REFERENCES evaluation_sets(name),
    image_hash         TEXT NOT NULL,
    model_name         TEXT NOT NULL,
    caption            TEXT NOT NULL,
    model_weights_hash TEXT,
    decoding_json      TEXT NOT NULL DEFAULT '{}',
    created_at         TEXT NOT NULL,
    PRIMARY KEY (eval_set, image_hash, model_name)
);
CREATE TABLE IF NOT EXISTS ratings (
    eval_set           TEXT NOT NULL REFERENCES evaluation_sets(name),
    rater              TEXT NOT NULL,
    image_hash         TEXT NOT NULL,
    model_name         TEXT NOT NULL,
    score              INTEGER NOT NULL,  -- within the set's scale (settings_json "scale", default 0-2)
    caption            TEXT NOT NULL,
    model_weights_hash TEXT,
    decoding_json      TEXT NOT NULL DEFAULT '{}',
    rated_at           TEXT NOT NULL,
    PRIMARY KEY (eval_set, rater, image_hash, model_name)
);
CREATE INDEX IF NOT EXISTS ratings_by_item ON ratings(eval_set, image_hash, model_name);
"""

# Imported ground truth (added after schema 1, additive: files made before it gain these when opened, and
# code without them still reads the file). captions.gold_score: a caption's known score, when the imported
# file gave one. image_references: the reference captions of an image in a set, in the order first seen.
REFERENCES_TABLE = """
CREATE TABLE IF NOT EXISTS image_references (
    eval_set   TEXT NOT NULL REFERENCES evaluation_sets(name),
    image_hash TEXT NOT NULL,
    reference  TEXT NOT NULL,
    added_at   TEXT NOT NULL,
    PRIMARY KEY (eval_set, image_hash, reference)
)
"""

# Pairwise mode (added after schema 1, additive): one vote per rater, image and unordered pair of models.
PAIRWISE_TABLE = """
CREATE TABLE IF NOT EXISTS pairwise_votes (
    eval_set   TEXT NOT NULL REFERENCES evaluation_sets(name),
    rater      TEXT NOT NULL,
    image_hash TEXT NOT NULL,
    model_low  TEXT NOT NULL,  -- the pair sorted, so one vote per unordered pair whatever side each was on
    model_high TEXT NOT NULL,
    model_a    TEXT NOT NULL,  -- as shown: left caption ("A") ...
    model_b    TEXT NOT NULL,  -- ... and right caption ("B")
    outcome    TEXT NOT NULL CHECK (outcome IN ('a', 'b', 'both_good', 'both_bad')),
    caption_a  TEXT NOT NULL,
    caption_b  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (eval_set, rater, image_hash, model_low, model_high),
    CHECK (model_low < model_high)
);
"""


def _statements(script: str) -> list[str]:
    return [statement for statement in script.split(";") if statement.strip()]


def add_owner_column(conn: sqlite3.Connection) -> None:
    """evaluation_sets.owner: sets of an older file keep NULL, so only an admin counts as their owner."""
    if "owner" not in {row[1] for row in conn.execute("PRAGMA table_info(evaluation_sets)")}:
        conn.execute("ALTER TABLE evaluation_sets ADD COLUMN owner TEXT")


def add_gold_score_column(conn: sqlite3.Connection) -> None:
    """captions.gold_score: NULL or 0/1/2, a caption's known score from an imported file."""
    if "gold_score" not in {row[1] for row in conn.execute("PRAGMA table_info(captions)")}:
        conn.execute("ALTER TABLE captions ADD COLUMN gold_score INTEGER CHECK (gold_score IN (0, 1, 2))")


def add_references_table(conn: sqlite3.Connection) -> None:
    """image_references: the reference captions of an image in a set."""
    conn.execute(REFERENCES_TABLE)


def add_pairwise_table(conn: sqlite3.Connection) -> None:
    """pairwise_votes: pairwise mode's votes."""
    for statement in _statements(PAIRWISE_TABLE):
        conn.execute(statement)


# (what it adds, the step): additive changes made after schema 1, so they kept SCHEMA_VERSION; code that
# predates a step still reads a file that has it.
UPGRADES: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("evaluation_sets.owner", add_owner_column),
    ("captions.gold_score", add_gold_score_column),
    ("image_references", add_references_table),
    ("pairwise_votes", add_pairwise_table),
)


def ratings_on_any_scale(conn: sqlite3.Connection) -> None:
    """Schema 2: rebuild ``ratings`` without ``CHECK (score IN (0, 1, 2))`` (SQLite cannot drop a constraint), rows
    and index kept; the store checks each score against its set's scale instead."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'ratings'").fetchone():
        return  # nothing to rebuild: the table is created fresh below
    conn.execute("ALTER TABLE ratings RENAME TO ratings_schema1")
    conn.execute("DROP INDEX IF EXISTS ratings_by_item")
    for statement in _statements(TABLES):
        if "ratings" in statement.split("(")[0]:
            conn.execute(statement)
    columns = ", ".join(row[1] for row in conn.execute("PRAGMA table_info(ratings_schema1)"))
    conn.execute(f"INSERT INTO ratings({columns}) SELECT {columns} FROM ratings_schema1")
    conn.execute("DROP TABLE ratings_schema1")


# (schema version it brings a file to, the step): run in order on a file with a lower PRAGMA user_version.
MIGRATIONS: tuple[tuple[int, Callable[[sqlite3.Connection], None]], ...] = (
    (2, ratings_on_any_scale),
)


def create_or_upgrade(conn: sqlite3.Connection, path: str | Path) -> None:
    """Create the tables of a new file, or bring an older one up to date, inside the caller's write transaction.
    A file written by newer code (a higher ``PRAGMA user_version``) is refused with RuntimeError naming `path`."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path} has rating schema version {version}, newer than this code's "
            f"{SCHEMA_VERSION}; update Caption Zoo to open it"
        )
    if version >= 1:
        for target, migrate in MIGRATIONS:
            if version < target:
                migrate(conn)
    for statement in _statements(TABLES):
        conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    for _, step in UPGRADES:
        step(conn)
