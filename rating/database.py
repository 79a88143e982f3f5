"""Where the ratings are kept: an SQLite file (the embedded default) or a team's PostgreSQL, named the same way
everywhere a database is asked for (`app.py --db`, `python -m rating --db`, the server):

    runs/ratings.sqlite                          a file (made on first use)
    sqlite:///runs/ratings.sqlite                the same, as a URL
    postgresql://USER:PASSWORD@HOST:PORT/DB      a PostgreSQL database (psycopg 3); create the database first

`open_engine` gives a SQLAlchemy engine with each backend's rules for many raters at once, and brings the database
to the current schema (`upgrade`): Alembic revisions in `rating/migrations/versions`, run when the store opens a
database, under a lock so that several processes opening one database at once upgrade it once. A file written
before Alembic (``PRAGMA user_version`` 1 or 2, no ``alembic_version`` table) is stamped with the revision it
matches and upgraded from there, nothing lost. A database written by newer code is refused.

SQLite rules: WAL journal mode (readers never block the writer), a busy timeout (a writer waits for the lock
instead of failing), foreign keys on, and write transactions that take the write lock up front (``BEGIN
IMMEDIATE``), so a transaction that reads and then writes never fails half-way. PostgreSQL: the default READ
COMMITTED, with the rows a decision rests on locked (``SELECT ... FOR UPDATE``) by the queries that need it.

A URL's password never appears in a message or log: `describe` renders a URL with it masked.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

HEAD_REVISION = "0004"  # the newest revision in migrations/versions (a test checks they agree)
LEGACY_REVISIONS = {0: "0001", 1: "0001", 2: "0003"}  # PRAGMA user_version of a file from before Alembic -> revision
LEGACY_USER_VERSION = 3  # written to an SQLite file once upgraded, so that older Caption Zoo refuses to open it
BUSY_TIMEOUT_MS = 10_000  # an SQLite writer waits up to 10 s for another writer before giving up
CONNECT_TIMEOUT_S = 5  # how long to wait for a PostgreSQL server to answer
MIGRATION_LOCK = 5_148_170_001  # PostgreSQL advisory lock held while a database is upgraded
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
WRITE = "caption_zoo_write"  # execution option: this connection's transactions write (SQLite: BEGIN IMMEDIATE)


class DatabaseError(RuntimeError):
    """A database that cannot be used as given: unreachable, refused, or written by newer code. The message
    says what is wrong and what to do, in one line, and never contains a password."""


def database_url(db: str | os.PathLike[str] | URL) -> URL:
    """The SQLAlchemy URL of `db`: a file path, an ``sqlite:///`` URL or a ``postgresql://`` URL (psycopg 3).
    Raises ValueError for anything else (naming what is accepted)."""
    if isinstance(db, URL):
        return db
    text_db = os.fspath(db)
    if "://" not in text_db:
        path = Path(text_db).expanduser()
        if path.is_dir():
            raise ValueError(f"Rating store path {path} is a folder; give a file path such as {path / 'ratings.sqlite'}")
        return URL.create("sqlite", database=str(path))
    try:
        url = make_url(text_db)
    except ArgumentError:
        raise ValueError(f"{mask(text_db)} is not a database URL; give a file path or "
                         "postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    if backend == "sqlite":
        return url
    raise ValueError(f"Unsupported database {url.drivername!r} in {describe(url)}: use an SQLite file path or a "
                     "postgresql:// URL")


def describe(url: URL | str) -> str:
    """`url` for messages and logs: the password masked, a file given as its path."""
    url = make_url(url) if isinstance(url, str) else url
    if url.get_backend_name() == "sqlite":
        return url.database or ":memory:"
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def mask(text_url: str) -> str:
    """A URL given as text, password masked even when SQLAlchemy cannot parse it."""
    scheme, sep, rest = text_url.partition("://")
    if not sep or "@" not in rest:
        return text_url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else text_url


def open_engine(db: str | os.PathLike[str] | URL) -> Engine:
    """An engine on `db` (see `database_url`), checked to answer and upgraded to the current schema.
    Raises DatabaseError with one line a user can act on when the database cannot be used."""
    url = database_url(db)
    if url.get_backend_name() == "sqlite":
        engine = _sqlite_engine(url)
    else:
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                               connect_args={"connect_timeout": CONNECT_TIMEOUT_S})
    try:
        upgrade(engine)
    except OperationalError as error:
        engine.dispose()
        raise DatabaseError(_unreachable(url, error)) from None
    except BaseException:
        engine.dispose()
        raise
    return engine


def _sqlite_engine(url: URL) -> Engine:
    if url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal" and url.database:
            raise DatabaseError(f"Could not switch {url.database} to WAL journal mode (got {mode!r}); "
                                "WAL needs a local file system, not a network share")
        cursor.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across app crashes, fast
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

    return engine


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction: commits, or rolls back on error. On SQLite it holds the write lock from its start."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE: True})
        with conn.begin():
            yield conn


def alembic_config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> None:
    """Bring the database to HEAD_REVISION in one transaction, holding the migration lock (SQLite's write lock,
    PostgreSQL's advisory lock), so concurrent openers upgrade it once. Refuses a database of newer code."""
    where = describe(engine.url)
    with writing(engine) as conn:
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        revision = current_revision(conn)
        if revision == HEAD_REVISION:
            return
        config = alembic_config(conn)
        if revision is None and "evaluation_sets" in inspect(conn).get_table_names():
            legacy = conn.exec_driver_sql("PRAGMA user_version").scalar() if sqlite else 1
            if legacy not in LEGACY_REVISIONS:
                raise DatabaseError(f"{where} has rating schema version {legacy}, newer than this code's; "
                                    "update Caption Zoo to open it")
            command.stamp(config, LEGACY_REVISIONS[legacy])
        elif revision is not None and not _known(config, revision):
            raise DatabaseError(f"{where} has rating schema revision {revision}, newer than this code's "
                                f"{HEAD_REVISION}; update Caption Zoo to open it")
        command.upgrade(config, "head")
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA user_version = {LEGACY_USER_VERSION}")


def _known(config: Config, revision: str) -> bool:
    try:
        ScriptDirectory.from_config(config).get_revision(revision)
    except Exception:  # alembic raises its own ResolutionError / CommandError for an unknown id
        return False
    return True


def _unreachable(url: URL, error: OperationalError) -> str:
    """One line for a database that does not answer or refuses us: host and port, never the password."""
    reason = str(error.orig or error).strip().splitlines()[0] if (error.orig or error) else ""
    if url.password:
        reason = reason.replace(str(url.password), "***")
    if url.get_backend_name() == "sqlite":
        return f"Cannot open the rating database {describe(url)}: {reason}"
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    lowered = reason.lower()
    if "password" in lowered or "authentication" in lowered:
        return (f"PostgreSQL at {where} refused user {url.username!r} (wrong user or password); check the "
                f"credentials in {describe(url)}")
    if "does not exist" in lowered:
        return (f"PostgreSQL at {where} has no database {url.database!r}; create it first "
                f"(createdb -h {url.host or 'localhost'} -p {url.port or 5432} {url.database})")
    hint = ("; a password with @, : or / in it must be percent-encoded in the URL (@ as %40)"
            if "@" in (url.host or "") else "")
    return f"No PostgreSQL server answers at {where} ({describe(url)}): {reason}{hint}"
