"""Alembic's environment for the rating store: runs the revisions in versions/ on the connection that
`rating.database.upgrade` hands over (inside its transaction, holding the database's migration lock). There is no
alembic.ini: the store upgrades a database itself when it opens it, and nothing here opens a connection."""

from alembic import context

from rating.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite changes a table by copying it
)
with context.begin_transaction():
    context.run_migrations()
