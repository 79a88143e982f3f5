"""Persistent storage of evaluation sets, captions and human ratings: an SQLite file or a team's PostgreSQL.

A rater scores each caption 0 (unrelated to the image), 1 (partly right) or 2 (fully accurate), or on the set's
own scale. Ratings must survive restarts and many raters at once (one server with many threads, or several
processes on one database), so the store:

- keeps one SQLAlchemy engine (a connection pool) per process, reopened after a fork, and opens a connection
  per call; the backend rules (SQLite's WAL and write lock, PostgreSQL's row locks) are `rating.database`;
- writes with upserts (``INSERT ... ON CONFLICT DO UPDATE``), so re-rating a caption replaces the old score
  and saving a caption again replaces the old caption;
- copies the caption text, model weights hash and decoding settings into each rating, so a rating still says
  what was rated after the caption is regenerated;
- keeps every change of a rating in ``rating_history`` (who, when, old, new), in the same transaction;
- with a set's overlap R, never lets a caption end with more than R ratings (`OverlapFullError`), counting the
  slots that other raters' leases hold (`rating.queue`).

The tables are `rating.schema`; the checks of what comes in are `rating.validation`.
"""
from __future__ import annotations

import numbers
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, and_, exists, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from rating.database import current_revision, database_url, describe, open_engine, writing
from rating.schema import (
    captions,
    evaluation_sets,
    image_references,
    images,
    leases,
    pairwise_votes,
    rating_history,
    ratings,
)
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

RATING_COLUMNS = [
    "eval_set", "rater", "image_hash", "file_name", "model_name", "caption", "score",
    "model_weights_hash", "decoding", "rated_at",
]
VOTE_COLUMNS = [
    "eval_set", "rater", "image_hash", "file_name", "model_a", "model_b", "outcome",
    "caption_a", "caption_b", "created_at",
]


class CaptionNotFoundError(ValueError):
    """Raised when rating a caption that was never saved in that evaluation set."""


class EvaluationSetNotFoundError(ValueError):
    """Raised when an evaluation set name is not in the store."""


class OverlapFullError(ValueError):
    """Raised when a caption already has the ratings its set's overlap asks for (or the rest are leased to
    other raters); the rating is not stored."""


def upsert(conn: Connection, table: Any, values: dict[str, Any], keys: list[str],
           update: list[str] | None = None) -> int:
    """INSERT ``values`` into ``table``; on a conflict on ``keys`` update the ``update`` columns (or do nothing).
    The same statement on SQLite and PostgreSQL; returns the rows inserted or updated."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table).values(**values)
    if update:
        insert = insert.on_conflict_do_update(index_elements=keys, set_={c: insert.excluded[c] for c in update})
    else:
        insert = insert.on_conflict_do_nothing(index_elements=keys)
    return conn.execute(insert.execution_options(preserve_rowcount=True)).rowcount  # INSERT rowcount on psycopg too


def _key(table: Any, eval_set: str, image_hash: str, model_name: str, rater: str | None = None) -> Any:
    clause = and_(table.c.eval_set == eval_set, table.c.image_hash == image_hash, table.c.model_name == model_name)
    return clause if rater is None else and_(clause, table.c.rater == rater)


class PairwiseVotes:
    """RatingStore's pairwise-vote methods (a mixin: it uses the store's connections and checks).
    Kept apart from the ratings (own table, own methods) so the two modes never mix."""

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
                select(captions.c.model_name, captions.c.caption).where(
                    captions.c.eval_set == eval_set, captions.c.image_hash == image_hash,
                    captions.c.model_name.in_([model_a, model_b]))).all())
            missing = [m for m in (model_a, model_b) if m not in rows]
            if missing:
                raise CaptionNotFoundError(
                    f"No caption by model(s) {missing} for image {image_hash!r} in evaluation set {eval_set!r} "
                    f"(models with a caption for this image: {self._models_of(conn, eval_set, image_hash)}); "
                    "both captions must be saved before a vote"
                )
            low, high = sorted((model_a, model_b))
            upsert(conn, pairwise_votes, dict(
                eval_set=eval_set, rater=rater, image_hash=image_hash, model_low=low, model_high=high,
                model_a=model_a, model_b=model_b, outcome=outcome, caption_a=rows[model_a],
                caption_b=rows[model_b], created_at=utc_now()),
                ["eval_set", "rater", "image_hash", "model_low", "model_high"],
                ["model_a", "model_b", "outcome", "caption_a", "caption_b", "created_at"])

    def votes(self, eval_set: str, rater: str | None = None) -> pd.DataFrame:
        """The pairwise votes of ``eval_set`` (of one rater if given), one row per vote.

        Columns: VOTE_COLUMNS (model_a / model_b as shown on screen, outcome in PAIRWISE_OUTCOMES). Ordered by
        rater, image hash, pair. An empty set gives an empty frame with the same columns.
        """
        eval_set = validate_name(eval_set, "evaluation set name")
        v = pairwise_votes.c
        query = (select(v.eval_set, v.rater, v.image_hash, images.c.file_name, v.model_a, v.model_b, v.outcome,
                        v.caption_a, v.caption_b, v.created_at)
                 .select_from(pairwise_votes.outerjoin(images, images.c.content_hash == v.image_hash))
                 .where(v.eval_set == eval_set))
        if rater is not None:
            query = query.where(v.rater == validate_name(rater, "rater name"))
        with self._read() as conn:
            self._require_set(conn, eval_set)
            rows = conn.execute(query.order_by(v.rater, v.image_hash, v.model_low, v.model_high)).all()
        return pd.DataFrame.from_records([tuple(row) for row in rows], columns=VOTE_COLUMNS)


class RatingStore(PairwiseVotes):
    """Evaluation sets, captions and ratings in one database; safe to share between threads.

    Open it once per process (``RatingStore("runs/ratings.sqlite")`` or ``RatingStore("postgresql://...")``)
    and call it from any thread. Several processes may open the same database at once.
    """

    def __init__(self, db: str | os.PathLike[str]) -> None:
        self.url = database_url(db)
        self.backend = self.url.get_backend_name()
        # `path`: the SQLite file (None for a server database); `location`: what messages call the database
        self.path = Path(self.url.database) if self.backend == "sqlite" and self.url.database else None
        self.location = str(self.path.resolve()) if self.path is not None else describe(self.url)
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self._pid = os.getpid()
        self._open()  # open (and create or upgrade) now, so a bad database fails here

    @property
    def engine(self) -> Engine:
        """The connection pool, opened on first use (again after close(), and in a forked child)."""
        return self._open()

    def _open(self) -> Engine:
        with self._lock:
            if self._engine is not None and self._pid != os.getpid():
                self._engine.dispose(close=False)  # the parent's connections stay the parent's
                self._engine = None
            if self._engine is None:
                self._engine, self._pid = open_engine(self.url), os.getpid()
            return self._engine

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: holding the write lock); commits, or rolls back on error."""
        with writing(self.engine) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reading: one snapshot-consistent transaction, rolled back at the end."""
        with self.engine.connect() as conn:
            yield conn

    @property
    def schema_version(self) -> str:
        """The database's schema revision (Alembic's, e.g. "0004")."""
        with self._read() as conn:
            return str(current_revision(conn))

    @property
    def journal_mode(self) -> str | None:
        """An SQLite file's journal mode ("wal" once opened by this class); None for a server database."""
        if self.backend != "sqlite":
            return None
        with self._read() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).lower()

    def close(self) -> None:
        """Close every pooled connection. Later calls reopen."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def __enter__(self) -> RatingStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RatingStore({self.location!r})"

    # ------------------------------------------------------------------ evaluation sets

    def _require_set(self, conn: Connection, name: str, *, lock: bool = False) -> Any:
        """The set's row; `lock`: held until the transaction ends (PostgreSQL), so decisions on the set's
        counts are taken one at a time."""
        query = select(evaluation_sets).where(evaluation_sets.c.name == name)
        row = conn.execute(query.with_for_update() if lock else query).first()
        if row is None:
            known = list(conn.execute(select(evaluation_sets.c.name).order_by(evaluation_sets.c.name)).scalars())
            raise EvaluationSetNotFoundError(
                f"Evaluation set {name!r} not found; available sets = {known}. "
                "Create it first with create_or_open_set()."
            )
        return row

    @staticmethod
    def _models_of(conn: Connection, eval_set: str, image_hash: str) -> list[str]:
        return list(conn.execute(select(captions.c.model_name).where(
            captions.c.eval_set == eval_set, captions.c.image_hash == image_hash).order_by(
            captions.c.model_name)).scalars())

    def models_of(self, eval_set: str, image_hash: str) -> list[str]:
        """The models with a caption of `image_hash` in `eval_set`, sorted (empty: the image is not in the set)."""
        with self._read() as conn:
            return self._models_of(conn, validate_name(eval_set, "evaluation set name"), require_hash(image_hash))

    @staticmethod
    def _set_row_to_dict(row: Any) -> dict[str, Any]:
        return {
            "name": row.name,
            "created_at": row.created_at,
            "blind": bool(row.blind),
            "preset": row.preset,
            "settings": from_json(row.settings_json),
            "notes": row.notes,
            "owner": row.owner,
            "overlap": row.overlap,
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
        overlap: int | None = None,
    ) -> dict[str, Any]:
        """Create the evaluation set ``name``, or return it unchanged if it exists.

        An existing set keeps the blind flag, preset, settings and overlap it was created with, so that every
        rater of a set rates under the same conditions; the returned dict shows the stored values (keys: name,
        created_at, blind, preset, settings, notes, owner, overlap). ``owner`` is stored when the set is created
        and never changed afterwards. ``overlap``: how many raters rate each caption (None: everyone).
        """
        name = validate_name(name, "evaluation set name")
        settings_json = to_json(settings, "settings")
        if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, numbers.Integral)
                                    or overlap < 1):
            raise ValueError(f"overlap (raters per caption) must be a whole number of at least 1, got {overlap!r}")
        with self._write() as conn:
            upsert(conn, evaluation_sets, dict(
                name=name, created_at=utc_now(), blind=int(bool(blind)), preset=preset, settings_json=settings_json,
                notes=notes, owner=owner, overlap=None if overlap is None else int(overlap)), ["name"])
            row = conn.execute(select(evaluation_sets).where(evaluation_sets.c.name == name)).one()
        return self._set_row_to_dict(row)

    def delete_set_if_empty(self, name: str) -> bool:
        """Remove the evaluation set ``name`` if nothing was saved in it yet (no caption, rating, vote or
        reference); True if it was removed. A front end calls it when the action that created the set failed,
        so a failed first attempt leaves no empty set behind. A set with anything in it is never touched."""
        name = validate_name(name, "evaluation set name")
        with self._write() as conn:
            for table in (captions, ratings, pairwise_votes, image_references):
                if conn.execute(select(literal(1)).where(table.c.eval_set == name).limit(1)).first():
                    return False
            conn.execute(leases.delete().where(leases.c.eval_set == name))
            return conn.execute(evaluation_sets.delete().where(evaluation_sets.c.name == name)).rowcount > 0

    def get_set(self, name: str) -> dict[str, Any]:
        """The stored evaluation set ``name`` (see create_or_open_set); raises if it does not exist."""
        name = validate_name(name, "evaluation set name")
        with self._read() as conn:
            return self._set_row_to_dict(self._require_set(conn, name))

    def list_sets(self) -> list[dict[str, Any]]:
        """All evaluation sets, newest first, each with counts: images, captions, ratings, raters."""
        s = evaluation_sets

        def count(table: Any, what: Any) -> Any:
            return select(what).where(table.c.eval_set == s.c.name).scalar_subquery()

        query = select(
            s,
            count(captions, func.count(captions.c.image_hash.distinct())).label("images"),
            count(captions, func.count()).label("captions"),
            count(ratings, func.count()).label("ratings"),
            count(ratings, func.count(ratings.c.rater.distinct())).label("raters"),
        ).order_by(s.c.created_at.desc(), s.c.name)
        with self._read() as conn:
            rows = conn.execute(query).all()
        result = []
        for row in rows:
            entry = self._set_row_to_dict(row)
            entry.update(images=row.images, captions=row.captions, ratings=row.ratings, raters=row.raters)
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
            upsert(conn, images, dict(content_hash=content_hash, file_name=str(file_name), width=int(width),
                                      height=int(height), added_at=utc_now()),
                   ["content_hash"], ["file_name", "width", "height"])

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
            upsert(conn, captions, dict(eval_set=eval_set, image_hash=image_hash, model_name=model_name,
                                        caption=caption, model_weights_hash=weights_hash,
                                        decoding_json=decoding_json, created_at=utc_now()),
                   ["eval_set", "image_hash", "model_name"],
                   ["caption", "model_weights_hash", "decoding_json", "created_at"])

    def _captions_query(self, eval_set: str) -> Any:
        return (select(captions, images.c.file_name)
                .select_from(captions.outerjoin(images, images.c.content_hash == captions.c.image_hash))
                .where(captions.c.eval_set == eval_set)
                .order_by(captions.c.image_hash, captions.c.model_name))

    def get_captions(self, eval_set: str) -> list[dict[str, Any]]:
        """Every caption of ``eval_set``, ordered by image hash then model name.

        Keys: eval_set, image_hash, file_name (None if add_image was never called for it),
        model_name, caption, model_weights_hash, decoding (dict), created_at.
        """
        eval_set = validate_name(eval_set, "evaluation set name")
        with self._read() as conn:
            self._require_set(conn, eval_set)
            rows = conn.execute(self._captions_query(eval_set)).all()
        return [self._caption_row_to_dict(row) for row in rows]

    def unrated_captions(self, eval_set: str, rater: str) -> list[dict[str, Any]]:
        """The captions of ``eval_set`` that ``rater`` has not rated yet (same keys as get_captions)."""
        eval_set = validate_name(eval_set, "evaluation set name")
        rater = validate_name(rater, "rater name")
        rated = exists().where(_key(ratings, captions.c.eval_set, captions.c.image_hash, captions.c.model_name,
                                    rater))
        with self._read() as conn:
            self._require_set(conn, eval_set)
            rows = conn.execute(self._captions_query(eval_set).where(~rated)).all()
        return [self._caption_row_to_dict(row) for row in rows]

    @staticmethod
    def _caption_row_to_dict(row: Any) -> dict[str, Any]:
        return {
            "eval_set": row.eval_set,
            "image_hash": row.image_hash,
            "file_name": row.file_name,
            "model_name": row.model_name,
            "caption": row.caption,
            "model_weights_hash": row.model_weights_hash,
            "decoding": from_json(row.decoding_json),
            "created_at": row.created_at,
        }

    # ------------------------------------------------------------------ ratings

    def set_scale(self, name: str) -> tuple[int, int]:
        """The score scale of set ``name``: (low, high), (0, 2) unless the set was created with another."""
        scale = self.get_set(name)["settings"].get("scale")
        return parse_scale(scale) if scale is not None else DEFAULT_SCALE

    def rate(self, eval_set: str, rater: str, image_hash: str, model_name: str, score: int, *,
             by: str | None = None) -> int | None:
        """Store ``rater``'s score (0, 1 or 2, or on the set's own scale) for a saved caption; rating again
        replaces the score. Returns the score it replaced (None for a first rating).

        The caption text, weights hash and decoding settings are copied from the captions table in the same
        transaction, so the rating records exactly what was on screen; the change goes into the rating history
        (``by``: who made it, default the rater). With a set's overlap R, a first rating of a caption that has R
        ratings already, or whose free slots other raters' leases hold, raises OverlapFullError.
        """
        eval_set = validate_name(eval_set, "evaluation set name")
        score = validate_score(score, self.set_scale(eval_set))
        rater = validate_name(rater, "rater name")
        model_name = validate_name(model_name, "model name")
        image_hash = require_hash(image_hash)
        by = rater if by is None else validate_name(by, "user name")
        with self._write() as conn:
            info = self._require_set(conn, eval_set, lock=True)
            caption = conn.execute(select(captions.c.caption, captions.c.model_weights_hash,
                                          captions.c.decoding_json).where(
                _key(captions, eval_set, image_hash, model_name))).first()
            if caption is None:
                raise CaptionNotFoundError(
                    f"No caption by model {model_name!r} for image {image_hash!r} in evaluation set "
                    f"{eval_set!r} (models with a caption for this image: "
                    f"{self._models_of(conn, eval_set, image_hash)}); "
                    "caption the image with save_caption() before rating it"
                )
            old = conn.execute(select(ratings.c.score).where(
                _key(ratings, eval_set, image_hash, model_name, rater))).scalar()
            if old is None and info.overlap is not None:
                self._check_overlap(conn, eval_set, rater, image_hash, model_name, int(info.overlap))
            upsert(conn, ratings, dict(
                eval_set=eval_set, rater=rater, image_hash=image_hash, model_name=model_name, score=score,
                caption=caption.caption, model_weights_hash=caption.model_weights_hash,
                decoding_json=caption.decoding_json, rated_at=utc_now()),
                ["eval_set", "rater", "image_hash", "model_name"],
                ["score", "caption", "model_weights_hash", "decoding_json", "rated_at"])
            if old != score:
                self._record(conn, eval_set, rater, image_hash, model_name, old, score, by)
        return None if old is None else int(old)

    @staticmethod
    def _check_overlap(conn: Connection, eval_set: str, rater: str, image_hash: str, model_name: str,
                       overlap: int) -> None:
        """Refuse a first rating beyond the overlap: R ratings there already, or the free slots leased to others
        (raters with an unexpired lease on the image who have not rated this caption). A rater holding a lease
        on the image may always take a slot that is still free."""
        done = conn.execute(select(func.count()).select_from(ratings).where(
            _key(ratings, eval_set, image_hash, model_name))).scalar_one()
        now = utc_now()
        mine = conn.execute(select(literal(1)).where(
            leases.c.eval_set == eval_set, leases.c.image_hash == image_hash, leases.c.rater == rater,
            leases.c.expires_at > now)).first() is not None
        held = 0 if mine else conn.execute(select(func.count()).select_from(leases).where(
            leases.c.eval_set == eval_set, leases.c.image_hash == image_hash, leases.c.rater != rater,
            leases.c.expires_at > now,
            ~exists().where(_key(ratings, eval_set, image_hash, model_name), ratings.c.rater == leases.c.rater),
        )).scalar_one()
        if done >= overlap or done + held >= overlap:
            what = (f"already has {done} rating(s)" if done >= overlap
                    else f"has {done} rating(s) and the other {overlap - done} slot(s) are leased to other raters")
            raise OverlapFullError(
                f"This caption {what}; set {eval_set!r} asks for {overlap} per caption, so this rating was not "
                "stored. Ask for the next image in your queue instead.")

    @staticmethod
    def _record(conn: Connection, eval_set: str, rater: str, image_hash: str, model_name: str,
                old: int | None, new: int | None, by: str) -> None:
        conn.execute(rating_history.insert().values(
            eval_set=eval_set, rater=rater, image_hash=image_hash, model_name=model_name, old_score=old,
            new_score=new, changed_by=by, changed_at=utc_now()))

    def delete_rating(self, eval_set: str, rater: str, image_hash: str, model_name: str, *,
                      by: str | None = None) -> bool:
        """Clear ``rater``'s score of one caption; returns True if a rating was removed, False if there was none.
        The change goes into the rating history. (With `score`, what a page needs to undo a rating: put the
        previous score back, or clear it.)"""
        eval_set = validate_name(eval_set, "evaluation set name")
        rater = validate_name(rater, "rater name")
        model_name = validate_name(model_name, "model name")
        image_hash = require_hash(image_hash)
        by = rater if by is None else validate_name(by, "user name")
        with self._write() as conn:
            key = _key(ratings, eval_set, image_hash, model_name, rater)
            old = conn.execute(select(ratings.c.score).where(key)).scalar()
            if old is None:
                return False
            conn.execute(ratings.delete().where(key))
            self._record(conn, eval_set, rater, image_hash, model_name, int(old), None, by)
            return True

    def score(self, eval_set: str, rater: str, image_hash: str, model_name: str) -> int | None:
        """``rater``'s current score of one caption, or None if they have not rated it."""
        eval_set = validate_name(eval_set, "evaluation set name")
        rater = validate_name(rater, "rater name")
        model_name = validate_name(model_name, "model name")
        image_hash = require_hash(image_hash)
        with self._read() as conn:
            self._require_set(conn, eval_set)
            value = conn.execute(select(ratings.c.score).where(
                _key(ratings, eval_set, image_hash, model_name, rater))).scalar()
        return None if value is None else int(value)

    def ratings(self, eval_set: str, rater: str | None = None) -> pd.DataFrame:
        """The ratings of ``eval_set`` (of one rater if given), one row per rating.

        Columns: eval_set, rater, image_hash, file_name, model_name, caption, score (int),
        model_weights_hash, decoding (dict), rated_at. Ordered by rater, image hash, model name.
        An empty set gives an empty frame with the same columns.
        """
        eval_set = validate_name(eval_set, "evaluation set name")
        r = ratings.c
        query = (select(r.eval_set, r.rater, r.image_hash, images.c.file_name, r.model_name, r.caption, r.score,
                        r.model_weights_hash, r.decoding_json, r.rated_at)
                 .select_from(ratings.outerjoin(images, images.c.content_hash == r.image_hash))
                 .where(r.eval_set == eval_set))
        if rater is not None:
            query = query.where(r.rater == validate_name(rater, "rater name"))
        with self._read() as conn:
            self._require_set(conn, eval_set)
            rows = conn.execute(query.order_by(r.rater, r.image_hash, r.model_name)).mappings().all()
        records = [{**{k: v for k, v in row.items() if k != "decoding_json"}, "decoding": from_json(row["decoding_json"])}
                   for row in rows]
        frame = pd.DataFrame.from_records(records, columns=RATING_COLUMNS)
        frame["score"] = frame["score"].astype("int64")
        return frame

    def history(self, eval_set: str, rater: str | None = None) -> pd.DataFrame:
        """Every change of a rating in ``eval_set`` (of one rater if given), oldest first: columns eval_set,
        rater, image_hash, model_name, old_score, new_score (NULL old: a new rating; NULL new: cleared),
        changed_by, changed_at."""
        eval_set = validate_name(eval_set, "evaluation set name")
        h = rating_history.c
        query = select(h.eval_set, h.rater, h.image_hash, h.model_name, h.old_score, h.new_score, h.changed_by,
                       h.changed_at).where(h.eval_set == eval_set)
        if rater is not None:
            query = query.where(h.rater == validate_name(rater, "rater name"))
        with self._read() as conn:
            self._require_set(conn, eval_set)
            rows = conn.execute(query.order_by(h.id)).all()
        columns = ["eval_set", "rater", "image_hash", "model_name", "old_score", "new_score", "changed_by",
                   "changed_at"]
        frame = pd.DataFrame.from_records([tuple(row) for row in rows], columns=columns)
        for column in ("old_score", "new_score"):
            frame[column] = frame[column].astype("Int64")
        return frame

    def raters(self, eval_set: str) -> list[str]:
        """The names of everyone who rated something in ``eval_set``, sorted."""
        eval_set = validate_name(eval_set, "evaluation set name")
        with self._read() as conn:
            self._require_set(conn, eval_set)
            return list(conn.execute(select(ratings.c.rater).distinct().where(
                ratings.c.eval_set == eval_set).order_by(ratings.c.rater)).scalars())

    # ------------------------------------------------------------------ imported ground truth

    def add_image_without_file(self, image_hash: str, file_name: str) -> None:
        """Record an image known only by its name (an imported caption whose picture was not given): no size,
        no display copy. Adding it again keeps it; an image already recorded from its file is left as it is."""
        image_hash = require_hash(image_hash)
        with self._write() as conn:
            upsert(conn, images, dict(content_hash=image_hash, file_name=str(file_name), width=None, height=None,
                                      added_at=utc_now()), ["content_hash"])

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
            for table, keys in ((captions, ("model_name",)), (ratings, ("rater", "model_name")),
                                (image_references, ("reference",))):
                twin = table.alias("twin")
                clash = exists().where(twin.c.eval_set == table.c.eval_set, twin.c.image_hash == new,
                                       *[twin.c[k] == table.c[k] for k in keys])
                moved += conn.execute(table.update().where(
                    table.c.eval_set == eval_set, table.c.image_hash == old, ~clash).values(image_hash=new)).rowcount
                left += conn.execute(select(func.count()).select_from(table).where(
                    table.c.eval_set == eval_set, table.c.image_hash == old)).scalar_one()
        return moved, left

    def set_gold_score(self, eval_set: str, image_hash: str, model_name: str, gold_score: int | None) -> bool:
        """Store the known score (0, 1, 2, or None to clear it) of a saved caption; True if it changed."""
        eval_set = validate_name(eval_set, "evaluation set name")
        model_name = validate_name(model_name, "model name")
        image_hash = require_hash(image_hash)
        gold = None if gold_score is None else validate_score(gold_score)
        with self._write() as conn:
            self._require_set(conn, eval_set)
            return conn.execute(captions.update().where(
                _key(captions, eval_set, image_hash, model_name),
                captions.c.gold_score.is_distinct_from(gold)).values(gold_score=gold)).rowcount > 0

    def gold_scores(self, set_name: str) -> pd.DataFrame:
        """The captions of ``set_name`` that have a known score: columns image_hash, model_name, gold_score (int)."""
        set_name = validate_name(set_name, "evaluation set name")
        c = captions.c
        with self._read() as conn:
            self._require_set(conn, set_name)
            rows = conn.execute(select(c.image_hash, c.model_name, c.gold_score).where(
                c.eval_set == set_name, c.gold_score.is_not(None)).order_by(c.image_hash, c.model_name)).all()
        frame = pd.DataFrame([tuple(row) for row in rows], columns=["image_hash", "model_name", "gold_score"])
        frame["gold_score"] = frame["gold_score"].astype("int64")
        return frame

    def add_references(self, eval_set: str, image_hash: str, references: list[str]) -> int:
        """Add reference captions of an image in ``eval_set`` (ones it has already are kept once); returns
        how many were new."""
        eval_set = validate_name(eval_set, "evaluation set name")
        image_hash = require_hash(image_hash)
        for reference in references:
            if not isinstance(reference, str) or not reference.strip():
                raise ValueError(f"a reference caption must be non-empty text, got {reference!r}")
        added = 0
        with self._write() as conn:
            self._require_set(conn, eval_set)
            position = conn.execute(select(func.coalesce(func.max(image_references.c.position) + 1, 0)).where(
                image_references.c.eval_set == eval_set, image_references.c.image_hash == image_hash)).scalar_one()
            for reference in references:
                new = upsert(conn, image_references, dict(eval_set=eval_set, image_hash=image_hash,
                                                          reference=reference.strip(), added_at=utc_now(),
                                                          position=position + added),
                             ["eval_set", "image_hash", "reference"])
                added += max(new, 0)
        return added

    def references(self, set_name: str) -> dict[str, list[str]]:
        """image hash -> its reference captions in ``set_name``, in the order they were added."""
        set_name = validate_name(set_name, "evaluation set name")
        r = image_references.c
        found: dict[str, list[str]] = {}
        with self._read() as conn:
            self._require_set(conn, set_name)
            for image_hash, reference in conn.execute(select(r.image_hash, r.reference).where(
                    r.eval_set == set_name).order_by(r.image_hash, r.position, r.reference)):
                found.setdefault(image_hash, []).append(reference)
        return found
