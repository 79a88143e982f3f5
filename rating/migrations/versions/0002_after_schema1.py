"""What schema 1 gained without a version change (the hand-written ``ALTER TABLE``s of the store before Alembic):
evaluation_sets.owner, captions.gold_score, image_references and pairwise_votes.

Each step checks first, because a file written before Alembic may have any of them already (they were added
on open, one release at a time).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    tables = set(inspector.get_table_names())
    if "images" not in tables:  # the store made every schema-1 table on open; a hand-made file may lack one
        op.create_table(
            "images",
            sa.Column("content_hash", sa.Text, primary_key=True),
            sa.Column("file_name", sa.Text),
            sa.Column("width", sa.Integer),
            sa.Column("height", sa.Integer),
            sa.Column("added_at", sa.Text, nullable=False),
        )
    if "captions" not in tables:
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
    if "owner" not in {column["name"] for column in inspector.get_columns("evaluation_sets")}:
        op.add_column("evaluation_sets", sa.Column("owner", sa.Text))
    if "gold_score" not in {column["name"] for column in inspector.get_columns("captions")}:
        # ALTER TABLE ... ADD COLUMN with its CHECK (SQLite takes a column constraint, not a table one)
        op.execute("ALTER TABLE captions ADD COLUMN gold_score INTEGER CHECK (gold_score IN (0, 1, 2))")
    if "image_references" not in tables:
        op.create_table(
            "image_references",
            sa.Column("eval_set", sa.Text, sa.ForeignKey("evaluation_sets.name"), nullable=False),
            sa.Column("image_hash", sa.Text, nullable=False),
            sa.Column("reference", sa.Text, nullable=False),
            sa.Column("added_at", sa.Text, nullable=False),
            sa.PrimaryKeyConstraint("eval_set", "image_hash", "reference"),
        )
    if "pairwise_votes" not in tables:
        op.create_table(
            "pairwise_votes",
            sa.Column("eval_set", sa.Text, sa.ForeignKey("evaluation_sets.name"), nullable=False),
            sa.Column("rater", sa.Text, nullable=False),
            sa.Column("image_hash", sa.Text, nullable=False),
            sa.Column("model_low", sa.Text, nullable=False),
            sa.Column("model_high", sa.Text, nullable=False),
            sa.Column("model_a", sa.Text, nullable=False),
            sa.Column("model_b", sa.Text, nullable=False),
            sa.Column("outcome", sa.Text, nullable=False),
            sa.Column("caption_a", sa.Text, nullable=False),
            sa.Column("caption_b", sa.Text, nullable=False),
            sa.Column("created_at", sa.Text, nullable=False),
            sa.PrimaryKeyConstraint("eval_set", "rater", "image_hash", "model_low", "model_high"),
            sa.CheckConstraint("outcome IN ('a', 'b', 'both_good', 'both_bad')", name="outcome_known"),
            sa.CheckConstraint("model_low < model_high", name="pair_sorted"),
        )
