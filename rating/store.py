"""Persistent storage of evaluation sets, captions and human ratings, in one SQLite file.

A rater scores each caption 0 (unrelated to the image), 1 (partly right) or 2 (fully accurate).
Ratings must survive restarts and several raters working at once (one Gradio server with many
threads, or several processes on one shared file), so the store:

- runs SQLite in WAL journal mode (readers never block the writer) with a busy timeout, so a writer
  waits for the lock instead of failing with "database is locked";
- opens one connection per thread (and reopens after a fork), because an SQLite connection must not
  be shared between threads or processes while in use;
- writes with upserts (``INSERT ... ON CONFLICT DO UPDATE``), so re-rating a caption replaces the
  old score and saving a caption again replaces the old caption;
- copies the caption text, model weights hash and decoding settings into each rating, so a rating
  still says what was rated after the caption is regenerated.

The tables, SCHEMA_VERSION and the upgrade steps for files written by older code are `rating.schema`; the
checks of what comes in are `rating.validation`.

Timestamps are ISO-8601 in UTC (``2025-01-31T12:00:00.123+00:00``).
"""
from __future__ import annotations

import numbers
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from rating.schema import create_or_upgrade
from rating.validation import (
    DEFAULT_SCALE,
    from_json,
    parse_scale,
    require_hash,
    to_json,
    utc_now,
    validate_name,
    validate_outcome,
    validate_score,
)

BUSY_TIMEOUT_MS = 10_000  # a writer waits up to 10 s for another writer before giving up

RATING_COLUMNS = [
    "eval_set", "rater", "image_hash", "file_name", "model_name", "caption", "score",
    "model_weights_hash", "decoding", "rated_at",
]


class CaptionNotFoundError(ValueError):
    """Raised when rating a caption that was never saved in that evaluation set."""


class EvaluationSetNotFoundError(ValueError):
    """Raised when an evaluation set name is not in the store."""


# ---------------------------------------------------------------------------------------------------------
# Pairwise votes: two models' captions of one image side by side, the rater says which is better.
# Kept apart from the 0/1/2 ratings above (own table, own methods) so the two modes never mix.

VOTE_COLUMNS = [
    "eval_set", "rater", "image_hash", "file_name", "model_a", "model_b", "outcome",
    "caption_a", "caption_b", "created_at",
]


class PairwiseVotes:
    """RatingStore's pairwise-vote methods (a mixin: it uses the store's connections and checks)."""

    def vote(self, eval_set: str, rater: str, image_hash: str, model_a: str, model_b: str,
             outcome: str) -> None:
        """Store ``rater``'s pairwise vote on one image: ``model_a``'s caption was shown as A, ``model_b``'s as B.

        ``outcome`` is "a" (A better), "b" (B better), "both_good" or "both_bad". One vote per rater, image and
        unordered pair of models: voting again on the same pair replaces the vote (and the A/B sides recorded).
        Both captions must be in the set; their texts are copied into the vote, as rate() does.
        """
        outcome = validate_outcome(outcome)
        eval_set = validate_name(eval_set, "evaluation set name")
        rater = validate_name(rater, "rater name")
        model_a = validate_name(model_a, "model name")
        model_b = validate_name(model_b, "model name")
        image_hash = require_hash(image_hash)
        if model_a == model_b:
            raise ValueError(f"a pairwise vote needs two different models, got {model_a!r} twice")
        with self._write() as conn:
            self._require_set(conn, eval_set)
            rows = dict(conn.execute(
                "SELECT model_name, caption FROM captions WHERE eval_set = ? AND image_hash = ? AND model_name IN (?, ?)",
                (eval_set, image_hash, model_a, model_b)).fetchall())
            missing = [m for m in (model_a, model_b) if m not in rows]
            if missing:
                models = [row[0] for row in conn.execute(
                    "SELECT model_name FROM captions WHERE eval_set = ? AND image_hash = ? ORDER BY model_name",
                    (eval_set, image_hash))]
                raise CaptionNotFoundError(
                    f"No caption by model(s) {missing} for image {image_hash!r} in evaluation set {eval_set!r} "
                    f"(models with a caption for this image: {models}); both captions must be saved before a vote"
                )
            low, high = sorted((model_a, model_b))
            conn.execute(
                "INSERT INTO pairwise_votes(eval_set, rater, image_hash, model_low, model_high, model_a, model_b, "
                "outcome, caption_a, caption_b, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(eval_set, rater, image_hash, model_low, model_high) DO UPDATE SET "
                "model_a = excluded.model_a, model_b = excluded.model_b, outcome = excluded.outcome, "
                "caption_a = excluded.caption_a, caption_b = excluded.caption_b, created_at = excluded.created_at",
                (eval_set, rater, image_hash, low, high, model_a, model_b, outcome, rows[model_a], rows[model_b],
                 utc_now()),
            )

    def votes(self, eval_set: str, rater: str | None = None) -> pd.DataFrame:
        """The pairwise votes of ``eval_set`` (of one rater if given), one row per vote.

        Columns: VOTE_COLUMNS (model_a / model_b as shown on screen, outcome in PAIRWISE_OUTCOMES). Ordered by
        rater, image hash, pair. An empty set gives an empty frame with the same columns.
        """
        eval_set = validate_name(eval_set, "evaluation set name")
        conn = self._connection()
        self._require_set(conn, eval_set)
        sql = (
            "SELECT v.eval_set, v.rater, v.image_hash, i.file_name, v.model_a, v.model_b, v.outcome, v.caption_a, "
            "v.caption_b, v.created_at FROM pairwise_votes v LEFT JOIN images i ON i.content_hash = v.image_hash "
            "WHERE v.eval_set = ?"
        )
        params: tuple = (eval_set,)
        if rater is not None:
            sql += " AND v.rater = ?"
            params += (validate_name(rater, "rater name"),)
        rows = conn.execute(sql + " ORDER BY v.rater, v.image_hash, v.model_low, v.model_high", params).fetchall()
        return pd.DataFrame.from_records([tuple(row) for row in rows], columns=VOTE_COLUMNS)


class RatingStore(PairwiseVotes):
    """Evaluation sets, captions and ratings in one SQLite file; safe to share between threads.

    Open it once per process (``RatingStore("runs/ratings.sqlite")``) and call it from any thread;
    each thread gets its own connection. Several processes may open the same file at once.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise ValueError(f"Rating store path {self.path} is a folder; give a file path such as {self.path / 'ratings.sqlite'}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all_connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._write() as conn:  # a new file gets the tables, an older one the upgrade steps
            create_or_upgrade(conn, self.path)

    # ------------------------------------------------------------------ connections

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (and again in a forked child process)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        # isolation_level=None: we issue BEGIN ourselves, so a write transaction takes the write lock
        # up front (BEGIN IMMEDIATE) instead of failing when it upgrades from a read lock.
        # check_same_thread=False only so close() may close every thread's connection; each
        # connection is still used by the one thread that opened it.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(
                f"Could not switch {self.path} to WAL journal mode (got {mode!r}); "
                "WAL needs a local file system, not a network share"
            )
        conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across app crashes, fast
        conn.execute("PRAGMA foreign_keys = ON")
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._all_connections.append(conn)
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding the database write lock; commits, or rolls back on error."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _read(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        return self._connection().execute(sql, params).fetchall()

    @property
    def schema_version(self) -> int:
        """The schema version stored in the file (``PRAGMA user_version``)."""
        return int(self._read("PRAGMA user_version")[0][0])

    @property
    def journal_mode(self) -> str:
        """The file's journal mode; "wal" once opened by this class."""
        return str(self._read("PRAGMA journal_mode")[0][0]).lower()

    def close(self) -> None:
        """Close every connection this object opened (from any thread). Later calls reopen."""
        with self._lock:
            connections, self._all_connections = self._all_connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def __enter__(self) -> RatingStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RatingStore({str(self.path)!r})"

    # ------------------------------------------------------------------ evaluation sets

    def _require_set(self, conn: sqlite3.Connection, name: str) -> None:
        if conn.execute("SELECT 1 FROM evaluation_sets WHERE name = ?", (name,)).fetchone() is None:
            known = [row[0] for row in conn.execute("SELECT name FROM evaluation_sets ORDER BY name")]
            raise EvaluationSetNotFoundError(
                f"Evaluation set {name!r} not found; available sets = {known}. "
                "Create it first with create_or_open_set()."
            )

    @staticmethod
    def _set_row_to_dict(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "name": row["name"],
            "created_at": row["created_at"],
            "blind": bool(row["blind"]),
            "preset": row["preset"],
            "settings": from_json(row["settings_json"]),
            "notes": row["notes"],
            "owner": row["owner"],
        }

    def create_or_open_set(
        self,
        name: str,
        *,
        blind: bool = False,
        preset: str | None = None,
        settings: dict | None = None,
        notes: str | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """Create the evaluation set ``name``, or return it unchanged if it exists.

        An existing set keeps the blind flag, preset and settings it was created with, so that every
        rater of a set rates under the same conditions; the returned dict shows the stored values
        (keys: name, created_at, blind, preset, settings, notes, owner). ``owner`` is stored when the set is
        created and never changed afterwards (opening an existing set with another owner keeps the first).
        """
        name = validate_name(name, "evaluation set name")
        settings_json = to_json(settings, "settings")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO evaluation_sets(name, created_at, blind, preset, settings_json, notes, owner) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO NOTHING",
                (name, utc_now(), int(bool(blind)), preset, settings_json, notes, owner),
            )
            row = conn.execute("SELECT * FROM evaluation_sets WHERE name = ?", (name,)).fetchone()
        return self._set_row_to_dict(row)

    def delete_set_if_empty(self, name: str) -> bool:
        """Remove the evaluation set ``name`` if nothing was saved in it yet (no caption, rating, vote or
        reference); True if it was removed. A front end calls it when the action that created the set failed,
        so a failed first attempt leaves no empty set behind. A set with anything in it is never touched."""
        name = validate_name(name, "evaluation set name")
        with self._write() as conn:
            used = conn.execute(
                "SELECT (SELECT COUNT(*) FROM captions WHERE eval_set = ?) + (SELECT COUNT(*) FROM ratings WHERE "
                "eval_set = ?) + (SELECT COUNT(*) FROM pairwise_votes WHERE eval_set = ?) + (SELECT COUNT(*) FROM "
                "image_references WHERE eval_set = ?)", (name, name, name, name)).fetchone()[0]
            if used:
                return False
            return conn.execute("DELETE FROM evaluation_sets WHERE name = ?", (name,)).rowcount > 0

    def get_set(self, name: str) -> dict[str, Any]:
        """The stored evaluation set ``name`` (see create_or_open_set); raises if it does not exist."""
        name = validate_name(name, "evaluation set name")
        conn = self._connection()
        self._require_set(conn, name)
        row = conn.execute("SELECT * FROM evaluation_sets WHERE name = ?", (name,)).fetchone()
        return self._set_row_to_dict(row)

    def list_sets(self) -> list[dict[str, Any]]:
        """All evaluation sets, newest first, each with counts: images, captions, ratings, raters."""
        rows = self._read(
            """
            SELECT s.*,
                (SELECT COUNT(DISTINCT image_hash) FROM captions c WHERE c.eval_set = s.name) AS images,
                (SELECT COUNT(*) FROM captions c WHERE c.eval_set = s.name) AS captions,
                (SELECT COUNT(*) FROM ratings r WHERE r.eval_set = s.name) AS ratings,
                (SELECT COUNT(DISTINCT rater) FROM ratings r WHERE r.eval_set = s.name) AS raters
            FROM evaluation_sets s
            ORDER BY s.created_at DESC, s.name
            """
        )
        result = []
        for row in rows:
            entry = self._set_row_to_dict(row)
            entry.update(images=row["images"], captions=row["captions"], ratings=row["ratings"], raters=row["raters"])
            result.append(entry)
        return result

    # ------------------------------------------------------------------ images and captions

    def add_image(self, content_hash: str, file_name: str, width: int, height: int) -> None:
        """Record an image by the hash of its content; adding it again updates name and size."""
        content_hash = require_hash(content_hash, "image content hash")
        for label, size in (("width", width), ("height", height)):
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= 0:
                raise ValueError(f"image {label} must be a positive integer, got {size!r}")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO images(content_hash, file_name, width, height, added_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(content_hash) DO UPDATE SET file_name = excluded.file_name, "
                "width = excluded.width, height = excluded.height",
                (content_hash, str(file_name), int(width), int(height), utc_now()),
            )

    def save_caption(
        self,
        eval_set: str,
        image_hash: str,
        model_name: str,
        caption: str,
        *,
        weights_hash: str | None,
        decoding: dict | None,
    ) -> None:
        """Store (or replace) the caption ``model_name`` wrote for an image in ``eval_set``.

        ``weights_hash`` identifies the exact weights and ``decoding`` the generation settings
        (beam size, temperature, seed...), so a rating can be traced to what produced the caption.
        Existing ratings keep their own copy of the caption they rated.
        """
        eval_set = validate_name(eval_set, "evaluation set name")
        model_name = validate_name(model_name, "model name")
        image_hash = require_hash(image_hash)
        if not isinstance(caption, str):
            raise ValueError(f"caption must be a string, got {type(caption).__name__}")
        decoding_json = to_json(decoding, "decoding")
        with self._write() as conn:
            self._require_set(conn, eval_set)
            conn.execute(
                "INSERT INTO captions(eval_set, image_hash, model_name, caption, model_weights_hash, "
                "decoding_json, created_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(eval_set, image_hash, model_name) DO UPDATE SET caption = excluded.caption, "
                "model_weights_hash = excluded.model_weights_hash, decoding_json = excluded.decoding_json, "
                "created_at = excluded.created_at",
                (eval_set, image_hash, model_name, caption, weights_hash, decoding_json, utc_now()),
            )

    def get_captions(self, eval_set: str) -> list[dict[str, Any]]:
        """Every caption of ``eval_set``, ordered by image hash then model name.

        Keys: eval_set, image_hash, file_name (None if add_image was never called for it),
        model_name, caption, model_weights_hash, decoding (dict), created_at.
        """
        eval_set = validate_name(eval_set, "evaluation set name")
        conn = self._connection()
        self._require_set(conn, eval_set)
        rows = conn.execute(
            "SELECT c.*, i.file_name FROM captions c LEFT JOIN images i ON i.content_hash = c.image_hash "
            "WHERE c.eval_set = ? ORDER BY c.image_hash, c.model_name",
            (eval_set,),
        ).fetchall()
        return [self._caption_row_to_dict(row) for row in rows]

    def unrated_captions(self, eval_set: str, rater: str) -> list[dict[str, Any]]:
        """The captions of ``eval_set`` that ``rater`` has not rated yet (same keys as get_captions)."""
        eval_set = validate_name(eval_set, "evaluation set name")
        rater = validate_name(rater, "rater name")
        conn = self._connection()
        self._require_set(conn, eval_set)
        rows = conn.execute(
            "SELECT c.*, i.file_name FROM captions c LEFT JOIN images i ON i.content_hash = c.image_hash "
            "WHERE c.eval_set = ? AND NOT EXISTS (SELECT 1 FROM ratings r WHERE r.eval_set = c.eval_set "
            "AND r.rater = ? AND r.image_hash = c.image_hash AND r.model_name = c.model_name) "
            "ORDER BY c.image_hash, c.model_name",
            (eval_set, rater),
        ).fetchall()
        return [self._caption_row_to_dict(row) for row in rows]

    @staticmethod
    def _caption_row_to_dict(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "eval_set": row["eval_set"],
            "image_hash": row["image_hash"],
            "file_name": row["file_name"],
            "model_name": row["model_name"],
            "caption": row["caption"],
            "model_weights_hash": row["model_weights_hash"],
            "decoding": from_json(row["decoding_json"]),
            "created_at": row["created_at"],
        }

    # ------------------------------------------------------------------ ratings

    def set_scale(self, name: str) -> tuple[int, int]:
        """The score scale of set ``name``: (low, high), (0, 2) unless the set was created with another."""
        scale = self.get_set(name)["settings"].get("scale")
        return parse_scale(scale) if scale is not None else DEFAULT_SCALE

    def rate(self, eval_set: str, rater: str, image_hash: str, model_name: str, score: int) -> None:
        """Store ``rater``'s score (0, 1 or 2, or on the set's own scale) for a saved caption; rating again
        replaces the score.

        The caption text, weights hash and decoding settings are copied from the captions table in
        the same transaction, so the rating records exactly what was on screen.
        """
        eval_set = validate_name(eval_set, "evaluation set name")
        score = validate_score(score, self.set_scale(eval_set))
        rater = validate_name(rater, "rater name")
        model_name = validate_name(model_name, "model name")
        image_hash = require_hash(image_hash)
        with self._write() as conn:
            self._require_set(conn, eval_set)
            caption = conn.execute(
                "SELECT caption, model_weights_hash, decoding_json FROM captions "
                "WHERE eval_set = ? AND image_hash = ? AND model_name = ?",
                (eval_set, image_hash, model_name),
            ).fetchone()
            if caption is None:
                models = [row[0] for row in conn.execute(
                    "SELECT model_name FROM captions WHERE eval_set = ? AND image_hash = ? ORDER BY model_name",
                    (eval_set, image_hash),
                )]
                raise CaptionNotFoundError(
                    f"No caption by model {model_name!r} for image {image_hash!r} in evaluation set "
                    f"{eval_set!r} (models with a caption for this image: {models}); "
                    "caption the image with save_caption() before rating it"
                )
            conn.execute(
                "INSERT INTO ratings(eval_set, rater, image_hash, model_name, score, caption, "
                "model_weights_hash, decoding_json, rated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(eval_set, rater, image_hash, model_name) DO UPDATE SET score = excluded.score, "
                "caption = excluded.caption, model_weights_hash = excluded.model_weights_hash, "
                "decoding_json = excluded.decoding_json, rated_at = excluded.rated_at",
                (eval_set, rater, image_hash, model_name, score, caption["caption"],
                 caption["model_weights_hash"], caption["decoding_json"], utc_now()),
            )

    def delete_rating(self, eval_set: str, rater: str, image_hash: str, model_name: str) -> bool:
        """Clear ``rater``'s score of one caption; returns True if a rating was removed, False if there was none.
        (With `score`, what a page needs to undo a rating: put the previous score back, or clear it.)"""
        eval_set = validate_name(eval_set, "evaluation set name")
        rater = validate_name(rater, "rater name")
        model_name = validate_name(model_name, "model name")
        image_hash = require_hash(image_hash)
        with self._write() as conn:
            cursor = conn.execute(
                "DELETE FROM ratings WHERE eval_set = ? AND rater = ? AND image_hash = ? AND model_name = ?",
                (eval_set, rater, image_hash, model_name),
            )
            return cursor.rowcount > 0

    def score(self, eval_set: str, rater: str, image_hash: str, model_name: str) -> int | None:
        """``rater``'s current score (0, 1 or 2) of one caption, or None if they have not rated it."""
        eval_set = validate_name(eval_set, "evaluation set name")
        rater = validate_name(rater, "rater name")
        model_name = validate_name(model_name, "model name")
        image_hash = require_hash(image_hash)
        conn = self._connection()
        self._require_set(conn, eval_set)
        row = conn.execute(
            "SELECT score FROM ratings WHERE eval_set = ? AND rater = ? AND image_hash = ? AND model_name = ?",
            (eval_set, rater, image_hash, model_name),
        ).fetchone()
        return None if row is None else int(row[0])

    def ratings(self, eval_set: str, rater: str | None = None) -> pd.DataFrame:
        """The ratings of ``eval_set`` (of one rater if given), one row per rating.

        Columns: eval_set, rater, image_hash, file_name, model_name, caption, score (int),
        model_weights_hash, decoding (dict), rated_at. Ordered by rater, image hash, model name.
        An empty set gives an empty frame with the same columns.
        """
        eval_set = validate_name(eval_set, "evaluation set name")
        conn = self._connection()
        self._require_set(conn, eval_set)
        sql = (
            "SELECT r.eval_set, r.rater, r.image_hash, i.file_name, r.model_name, r.caption, r.score, "
            "r.model_weights_hash, r.decoding_json, r.rated_at FROM ratings r "
            "LEFT JOIN images i ON i.content_hash = r.image_hash WHERE r.eval_set = ?"
        )
        params: tuple = (eval_set,)
        if rater is not None:
            sql += " AND r.rater = ?"
            params += (validate_name(rater, "rater name"),)
        rows = conn.execute(sql + " ORDER BY r.rater, r.image_hash, r.model_name", params).fetchall()
        records = [
            {**{key: row[key] for key in row.keys() if key != "decoding_json"}, "decoding": from_json(row["decoding_json"])}
            for row in rows
        ]
        frame = pd.DataFrame.from_records(records, columns=RATING_COLUMNS)
        frame["score"] = frame["score"].astype("int64")
        return frame

    def raters(self, eval_set: str) -> list[str]:
        """The names of everyone who rated something in ``eval_set``, sorted."""
        eval_set = validate_name(eval_set, "evaluation set name")
        conn = self._connection()
        self._require_set(conn, eval_set)
        rows = conn.execute("SELECT DISTINCT rater FROM ratings WHERE eval_set = ? ORDER BY rater", (eval_set,))
        return [row[0] for row in rows]

    # ------------------------------------------------------------------ imported ground truth

    def add_image_without_file(self, image_hash: str, file_name: str) -> None:
        """Record an image known only by its name (an imported caption whose picture was not given): no size,
        no display copy. Adding it again keeps it; an image already recorded from its file is left as it is."""
        image_hash = require_hash(image_hash)
        with self._write() as conn:
            conn.execute(
                "INSERT INTO images(content_hash, file_name, width, height, added_at) VALUES (?, ?, NULL, NULL, ?) "
                "ON CONFLICT(content_hash) DO NOTHING",
                (image_hash, str(file_name), utc_now()),
            )

    def attach_file(self, eval_set: str, placeholder_hash: str, content_hash: str) -> tuple[int, int]:
        """An image first imported by name only (`placeholder_hash`) has now come with its file: move its
        captions, ratings and references in ``eval_set`` onto the file's `content_hash`, so it is one image.
        A row the file's image already has (same model, same rater, same reference) is left under the
        placeholder rather than overwritten, so nothing is lost. Returns (rows moved, rows left)."""
        eval_set = validate_name(eval_set, "evaluation set name")
        old, new = require_hash(placeholder_hash), require_hash(content_hash)
        if old == new:
            return 0, 0
        moved = left = 0
        with self._write() as conn:
            self._require_set(conn, eval_set)
            for table in ("captions", "ratings", "image_references"):
                moved += conn.execute(f"UPDATE OR IGNORE {table} SET image_hash = ? WHERE eval_set = ? AND "
                                      "image_hash = ?", (new, eval_set, old)).rowcount
                left += conn.execute(f"SELECT COUNT(*) FROM {table} WHERE eval_set = ? AND image_hash = ?",
                                     (eval_set, old)).fetchone()[0]
        return moved, left

    def set_gold_score(self, eval_set: str, image_hash: str, model_name: str, gold_score: int | None) -> bool:
        """Store the known score (0, 1, 2, or None to clear it) of a saved caption; True if it changed."""
        eval_set = validate_name(eval_set, "evaluation set name")
        model_name = validate_name(model_name, "model name")
        image_hash = require_hash(image_hash)
        gold = None if gold_score is None else validate_score(gold_score)
        with self._write() as conn:
            self._require_set(conn, eval_set)
            cursor = conn.execute(
                "UPDATE captions SET gold_score = ? WHERE eval_set = ? AND image_hash = ? AND model_name = ? "
                "AND gold_score IS NOT ?",
                (gold, eval_set, image_hash, model_name, gold),
            )
            return cursor.rowcount > 0

    def gold_scores(self, set_name: str) -> pd.DataFrame:
        """The captions of ``set_name`` that have a known score: columns image_hash, model_name, gold_score (int)."""
        set_name = validate_name(set_name, "evaluation set name")
        conn = self._connection()
        self._require_set(conn, set_name)
        rows = conn.execute(
            "SELECT image_hash, model_name, gold_score FROM captions WHERE eval_set = ? AND gold_score IS NOT NULL "
            "ORDER BY image_hash, model_name",
            (set_name,),
        ).fetchall()
        frame = pd.DataFrame([tuple(row) for row in rows], columns=["image_hash", "model_name", "gold_score"])
        frame["gold_score"] = frame["gold_score"].astype("int64")
        return frame

    def add_references(self, eval_set: str, image_hash: str, references: list[str]) -> int:
        """Add reference captions of an image in ``eval_set`` (ones it has already are kept once); returns
        how many were new."""
        eval_set = validate_name(eval_set, "evaluation set name")
        image_hash = require_hash(image_hash)
        added = 0
        with self._write() as conn:
            self._require_set(conn, eval_set)
            for reference in references:
                if not isinstance(reference, str) or not reference.strip():
                    raise ValueError(f"a reference caption must be non-empty text, got {reference!r}")
                cursor = conn.execute(
                    "INSERT INTO image_references(eval_set, image_hash, reference, added_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(eval_set, image_hash, reference) DO NOTHING",
                    (eval_set, image_hash, reference.strip(), utc_now()),
                )
                added += cursor.rowcount
        return added

    def references(self, set_name: str) -> dict[str, list[str]]:
        """image hash -> its reference captions in ``set_name``, in the order they were added."""
        set_name = validate_name(set_name, "evaluation set name")
        conn = self._connection()
        self._require_set(conn, set_name)
        found: dict[str, list[str]] = {}
        for row in conn.execute(
            "SELECT image_hash, reference FROM image_references WHERE eval_set = ? ORDER BY image_hash, rowid",
            (set_name,),
        ):
            found.setdefault(row[0], []).append(row[1])
        return found
