"""Team evaluation: accounts and API tokens, a set's overlap (raters per caption), leases of the rater queue,
the history of every rating change, and reviewed final scores; image_references gains its order (position), which
SQLite kept only as the rowid.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("evaluation_sets", sa.Column("overlap", sa.Integer))
    op.add_column("evaluation_sets", sa.Column("caption_key", sa.Text))
    op.add_column("image_references", sa.Column("position", sa.Integer, nullable=False, server_default="0"))
    if op.get_bind().dialect.name == "sqlite":  # the order references were added in, which SQLite kept as rowid
        op.execute("UPDATE image_references SET position = (SELECT COUNT(*) FROM image_references r2 WHERE "
                   "r2.eval_set = image_references.eval_set AND r2.image_hash = image_references.image_hash "
                   "AND r2.rowid < image_references.rowid)")
    op.create_table(
        "users",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.CheckConstraint("role IN ('rater', 'owner', 'admin')", name="role_known"),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_hash", sa.Text, primary_key=True),
        sa.Column("user_name", sa.Text, sa.ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("last_used_at", sa.Text),
    )
    op.create_table(
        "leases",
        sa.Column("eval_set", sa.Text, nullable=False),
        sa.Column("image_hash", sa.Text, nullable=False),
        sa.Column("rater", sa.Text, nullable=False),
        sa.Column("leased_at", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("eval_set", "image_hash", "rater"),
        sa.ForeignKeyConstraint(["eval_set"], ["evaluation_sets.name"], ondelete="CASCADE"),
    )
    op.create_table(
        "rating_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("eval_set", sa.Text, nullable=False),
        sa.Column("rater", sa.Text, nullable=False),
        sa.Column("image_hash", sa.Text, nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("old_score", sa.Integer),
        sa.Column("new_score", sa.Integer),
        sa.Column("changed_by", sa.Text, nullable=False),
        sa.Column("changed_at", sa.Text, nullable=False),
    )
    op.create_index("rating_history_by_rater", "rating_history", ["eval_set", "rater", "id"])
    op.create_table(
        "reviews",
        sa.Column("eval_set", sa.Text, sa.ForeignKey("evaluation_sets.name"), nullable=False),
        sa.Column("image_hash", sa.Text, nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("final_score", sa.Integer, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("reviewer", sa.Text, nullable=False),
        sa.Column("reviewed_at", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("eval_set", "image_hash", "model_name"),
    )
