"""Schema 1: evaluation sets, images, captions and 0/1/2 ratings, as the first rating store created them.

A file written before Alembic at ``PRAGMA user_version = 1`` is stamped with this revision when opened
(`rating.database`), then brought up to date by the revisions after it.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluation_sets",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("blind", sa.Integer, nullable=False, server_default="0"),
        sa.Column("preset", sa.Text),
        sa.Column("settings_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("notes", sa.Text),
    )
    op.create_table(
        "images",
        sa.Column("content_hash", sa.Text, primary_key=True),
        sa.Column("file_name", sa.Text),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("added_at", sa.Text, nullable=False),
    )
    op.create_table(
        "captions",
        sa.Column("eval_set", sa.Text, sa.ForeignKey("evaluation_sets.name"), nullable=False),
        sa.Column("image_hash", sa.Text, nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("caption", sa.Text, nullable=False),
        sa.Column("model_weights_hash", sa.Text),
        sa.Column("decoding_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("eval_set", "image_hash", "model_name"),
    )
    op.create_table(
        "ratings",
        sa.Column("eval_set", sa.Text, sa.ForeignKey("evaluation_sets.name"), nullable=False),
        sa.Column("rater", sa.Text, nullable=False),
        sa.Column("image_hash", sa.Text, nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("caption", sa.Text, nullable=False),
        sa.Column("model_weights_hash", sa.Text),
        sa.Column("decoding_json", sa.Text, nullable=False, server_default="{}"),
        sa.Column("rated_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("eval_set", "rater", "image_hash", "model_name"),
        sa.CheckConstraint("score IN (0, 1, 2)", name="score_0_2"),
    )
    op.create_index("ratings_by_item", "ratings", ["eval_set", "image_hash", "model_name"])
