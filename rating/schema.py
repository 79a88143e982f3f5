"""The rating store's tables: one SQLAlchemy Core definition that both backends (an SQLite file, a team's
PostgreSQL) use. The queries live in `rating.store` and the modules beside it; how a database gets to this shape
(Alembic revisions, and the upgrade of a file written before Alembic) is `rating.database` and
`rating/migrations/`. A change here goes with a new revision there; a test compares the two on both backends.

Tables (timestamps are ISO-8601 text in UTC, ``2025-01-31T12:00:00.123+00:00``, so they sort as they compare)::

    evaluation_sets(name PK, created_at, blind, preset, settings_json, notes, owner, overlap, caption_key)
    images(content_hash PK, file_name, width, height, added_at)
    captions(eval_set, image_hash, model_name, caption, model_weights_hash, decoding_json, created_at,
             gold_score, PK(eval_set, image_hash, model_name))
    ratings(eval_set, rater, image_hash, model_name, score, caption, model_weights_hash, decoding_json,
            rated_at, PK(eval_set, rater, image_hash, model_name))
    image_references(eval_set, image_hash, reference, added_at, position, PK(eval_set, image_hash, reference))
    pairwise_votes(eval_set, rater, image_hash, model_low, model_high, model_a, model_b, outcome,
                   caption_a, caption_b, created_at, PK(eval_set, rater, image_hash, model_low, model_high))
    users(name PK, role, password_hash, created_at)
    api_tokens(token_hash PK, user_name -> users, label, created_at, last_used_at)
    leases(eval_set, image_hash, rater, leased_at, expires_at, PK(eval_set, image_hash, rater))
    rating_history(id PK, eval_set, rater, image_hash, model_name, old_score, new_score, changed_by, changed_at)
    reviews(eval_set, image_hash, model_name, final_score, note, reviewer, reviewed_at,
            PK(eval_set, image_hash, model_name))

A set's score scale is ``settings_json["scale"]`` ([low, high]; absent = the app's 0-2), so the store, not the
table, checks a score against its set's scale. ``overlap`` is how many raters rate each caption (NULL: everyone
rates everything). ``caption_key`` keys the opaque caption ids raters see (`rating.queue.caption_id`), so an
id of a blind set never tells which model wrote the caption. ``owner`` is who created the set (NULL for sets older than owners: only an admin owns those).
A lease holds an image for one rater until ``expires_at``; an expired lease is ignored and replaced.
``rating_history`` keeps every change of a rating (NULL old score: a new rating; NULL new score: cleared);
raw ratings are never overwritten by a review, which goes to ``reviews``.
"""

from __future__ import annotations

from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

ROLES = ("rater", "owner", "admin")  # users.role, from least to most allowed

# Names for constraints and indexes, so a revision can drop one by name on every backend.
metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

evaluation_sets = Table(
    "evaluation_sets", metadata,
    Column("name", Text, primary_key=True),
    Column("created_at", Text, nullable=False),
    Column("blind", Integer, nullable=False, server_default="0"),
    Column("preset", Text),
    Column("settings_json", Text, nullable=False, server_default="{}"),
    Column("notes", Text),
    Column("owner", Text),
    Column("overlap", Integer),  # checked by the store (>= 1); SQLite cannot add a CHECK to an existing table
    Column("caption_key", Text),  # random secret behind the set's caption ids (made on first use)
)

images = Table(
    "images", metadata,
    Column("content_hash", Text, primary_key=True),
    Column("file_name", Text),
    Column("width", Integer),
    Column("height", Integer),
    Column("added_at", Text, nullable=False),
)

captions = Table(
    "captions", metadata,
    Column("eval_set", Text, ForeignKey("evaluation_sets.name"), nullable=False),
    Column("image_hash", Text, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("caption", Text, nullable=False),
    Column("model_weights_hash", Text),
    Column("decoding_json", Text, nullable=False, server_default="{}"),
    Column("created_at", Text, nullable=False),
    Column("gold_score", Integer),
    PrimaryKeyConstraint("eval_set", "image_hash", "model_name"),
    CheckConstraint("gold_score IN (0, 1, 2)", name="gold_score_0_2"),
)

ratings = Table(
    "ratings", metadata,
    Column("eval_set", Text, ForeignKey("evaluation_sets.name"), nullable=False),
    Column("rater", Text, nullable=False),
    Column("image_hash", Text, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("score", Integer, nullable=False),
    Column("caption", Text, nullable=False),
    Column("model_weights_hash", Text),
    Column("decoding_json", Text, nullable=False, server_default="{}"),
    Column("rated_at", Text, nullable=False),
    PrimaryKeyConstraint("eval_set", "rater", "image_hash", "model_name"),
    Index("ratings_by_item", "eval_set", "image_hash", "model_name"),
)

image_references = Table(
    "image_references", metadata,
    Column("eval_set", Text, ForeignKey("evaluation_sets.name"), nullable=False),
    Column("image_hash", Text, nullable=False),
    Column("reference", Text, nullable=False),
    Column("added_at", Text, nullable=False),
    Column("position", Integer, nullable=False, server_default="0"),  # order within the image, first added 0
    PrimaryKeyConstraint("eval_set", "image_hash", "reference"),
)

pairwise_votes = Table(
    "pairwise_votes", metadata,
    Column("eval_set", Text, ForeignKey("evaluation_sets.name"), nullable=False),
    Column("rater", Text, nullable=False),
    Column("image_hash", Text, nullable=False),
    Column("model_low", Text, nullable=False),  # the pair sorted: one vote per unordered pair
    Column("model_high", Text, nullable=False),
    Column("model_a", Text, nullable=False),  # as shown: left caption ("A") ...
    Column("model_b", Text, nullable=False),  # ... and right caption ("B")
    Column("outcome", Text, nullable=False),
    Column("caption_a", Text, nullable=False),
    Column("caption_b", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    PrimaryKeyConstraint("eval_set", "rater", "image_hash", "model_low", "model_high"),
    CheckConstraint("outcome IN ('a', 'b', 'both_good', 'both_bad')", name="outcome_known"),
    CheckConstraint("model_low < model_high", name="pair_sorted"),
)

users = Table(
    "users", metadata,
    Column("name", Text, primary_key=True),
    Column("role", Text, nullable=False),
    Column("password_hash", Text, nullable=False),  # argon2id, with its parameters and salt
    Column("created_at", Text, nullable=False),
    CheckConstraint("role IN ('rater', 'owner', 'admin')", name="role_known"),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("token_hash", Text, primary_key=True),  # SHA-256 of the token; the token itself is shown once
    Column("user_name", Text, ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("label", Text),
    Column("created_at", Text, nullable=False),
    Column("last_used_at", Text),
)

leases = Table(
    "leases", metadata,
    Column("eval_set", Text, nullable=False),
    Column("image_hash", Text, nullable=False),
    Column("rater", Text, nullable=False),
    Column("leased_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    PrimaryKeyConstraint("eval_set", "image_hash", "rater"),
    ForeignKeyConstraint(["eval_set"], ["evaluation_sets.name"], ondelete="CASCADE"),
)

rating_history = Table(
    "rating_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("eval_set", Text, nullable=False),
    Column("rater", Text, nullable=False),
    Column("image_hash", Text, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("old_score", Integer),  # NULL: the caption had no rating before
    Column("new_score", Integer),  # NULL: the rating was cleared
    Column("changed_by", Text, nullable=False),  # the rater, or an admin acting for them
    Column("changed_at", Text, nullable=False),
    Index("rating_history_by_rater", "eval_set", "rater", "id"),
)

reviews = Table(
    "reviews", metadata,
    Column("eval_set", Text, ForeignKey("evaluation_sets.name"), nullable=False),
    Column("image_hash", Text, nullable=False),
    Column("model_name", Text, nullable=False),
    Column("final_score", Integer, nullable=False),
    Column("note", Text),
    Column("reviewer", Text, nullable=False),
    Column("reviewed_at", Text, nullable=False),
    PrimaryKeyConstraint("eval_set", "image_hash", "model_name"),
)

# Copy order for `python -m rating copy`: a table after the tables it refers to.
TABLES_IN_ORDER = (evaluation_sets, images, captions, ratings, image_references, pairwise_votes, users,
                   api_tokens, leases, rating_history, reviews)
