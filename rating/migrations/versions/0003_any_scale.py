"""Schema 2: ratings on any scale. ``ratings`` loses its ``CHECK (score IN (0, 1, 2))``, so a set on another
scale (1-4, an imported human-judgment corpus) can be stored; the store checks each score against its set's scale.

SQLite cannot drop a constraint, and a file written before Alembic has it unnamed: the table is rebuilt (rows and
index kept), as schema 2 did. PostgreSQL drops the named constraint. A file written before Alembic at
``PRAGMA user_version = 2`` is stamped with this revision when opened.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        op.drop_constraint(op.f("ck_ratings_score_0_2"), "ratings", type_="check")
        return
    had_ratings = "ratings" in sa.inspect(bind).get_table_names()  # a hand-made schema-1 file may lack it
    if had_ratings:
        op.execute("ALTER TABLE ratings RENAME TO ratings_schema1")
        op.execute("DROP INDEX IF EXISTS ratings_by_item")
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
    )
    if had_ratings:
        columns = ", ".join(column["name"] for column in sa.inspect(bind).get_columns("ratings_schema1"))
        op.execute(f"INSERT INTO ratings({columns}) SELECT {columns} FROM ratings_schema1")
        op.execute("DROP TABLE ratings_schema1")
    op.create_index("ratings_by_item", "ratings", ["eval_set", "image_hash", "model_name"])
