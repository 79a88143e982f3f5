"""Protects the real-PostgreSQL test infrastructure (tests/postgres_server.py and conftest's `postgres_server` and
`postgres_url` fixtures) that the rating store's PostgreSQL tests stand on: each test gets a fresh, empty database
of its own that psycopg and SQLAlchemy (postgresql+psycopg://) both open, dropped afterwards even with
connections still open; the server listens on 127.0.0.1 only and trusts nothing but the socket and 127.0.0.1;
a failing initdb or server start raises with its log and leaves no folder behind."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

import postgres_server
from postgres_server import PostgresServer, find_pg_bin

SEEN_URLS: list[str] = []  # the databases of test_each_test_gets_a_fresh_database_of_its_own's earlier runs


def sqlalchemy_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://")


def server_folders() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("caption-zoo-pg-*"))


def database_exists(server: PostgresServer, name: str) -> bool:
    with psycopg.connect(server.url()) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def test_psycopg_writes_and_reads_back(postgres_url, postgres_server):
    assert postgres_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres_server.port}/test_")
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE caption (id serial PRIMARY KEY, text text NOT NULL)")
        conn.execute("INSERT INTO caption (text) VALUES (%s), (%s)", ("a red square", "un carré rouge — ✓"))
    with psycopg.connect(postgres_url) as conn:  # committed: a new connection sees it
        assert conn.execute("SELECT text FROM caption ORDER BY id").fetchall() == [("a red square",),
                                                                                   ("un carré rouge — ✓",)]
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_sqlalchemy_core_writes_and_reads_back(postgres_url):
    engine = sa.create_engine(sqlalchemy_url(postgres_url))
    try:
        metadata = sa.MetaData()
        rating = sa.Table("rating", metadata, sa.Column("id", sa.Integer, primary_key=True),
                          sa.Column("rater", sa.String(64), nullable=False), sa.Column("score", sa.Integer))
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.insert(rating), [{"rater": "ann", "score": 4}, {"rater": "bob", "score": 2}])
        with engine.connect() as conn:
            rows = conn.execute(sa.select(rating.c.rater, rating.c.score).order_by(rating.c.rater)).all()
        assert [tuple(row) for row in rows] == [("ann", 4), ("bob", 2)]
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_a_fresh_database_of_its_own(postgres_url, postgres_server, run):
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        assert tables == []  # nothing from an earlier test
        conn.execute("CREATE TABLE mine (run integer)")
        conn.execute("INSERT INTO mine VALUES (%s)", (run,))
    for earlier in SEEN_URLS:  # the first run's database: another one, and dropped after that test
        assert earlier != postgres_url
        assert not database_exists(postgres_server, earlier.rsplit("/", 1)[1])
    assert database_exists(postgres_server, postgres_url.rsplit("/", 1)[1])
    SEEN_URLS.append(postgres_url)


def test_drop_database_closes_open_connections(postgres_server):
    url = postgres_server.create_database("drop_me_while_open")
    conn = psycopg.connect(url)
    try:
        postgres_server.drop_database("drop_me_while_open")  # WITH (FORCE): does not wait for conn
        assert not database_exists(postgres_server, "drop_me_while_open")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()
    postgres_server.drop_database("drop_me_while_open")  # already gone: no error


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.partition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                if table == "tcp":
                    found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
                else:
                    found.add(f"ipv6:{address}")
    return found


def test_server_listens_on_loopback_only(postgres_server):
    assert listening_addresses(postgres_server.port) == {"127.0.0.1"}
    with psycopg.connect(postgres_server.url()) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        rules = conn.execute("SELECT type, address, auth_method FROM pg_hba_file_rules ORDER BY line_number")
        assert rules.fetchall() == [("local", None, "trust"), ("host", "127.0.0.1", "trust")]
        socket_dir = conn.execute("SHOW unix_socket_directories").fetchone()[0]
    assert Path(socket_dir) == postgres_server.socket_dir
    assert stat.S_ISSOCK(os.stat(Path(socket_dir) / f".s.PGSQL.{postgres_server.port}").st_mode)


def test_a_failing_initdb_raises_with_its_output():
    fake = Path(tempfile.mkdtemp(prefix="caption-zoo-fake-pg-"))  # not tmp_path: the postgres user runs these
    try:
        fake.chmod(0o755)
        for name in ("initdb", "pg_ctl", "postgres"):
            (fake / name).write_text("#!/bin/sh\necho 'initdb: error: no such luck' >&2\nexit 1\n")
            (fake / name).chmod(0o755)
        server, before = PostgresServer(fake), server_folders()
        with pytest.raises(RuntimeError, match=r"initdb failed \(exit 1\):\n.*no such luck"):
            server.start()
        assert server.root is None and server.port is None and server_folders() == before
    finally:
        for path in fake.iterdir():
            path.unlink()
        fake.rmdir()


@pytest.mark.skipif(find_pg_bin() is None, reason="PostgreSQL binaries not found (install Debian's postgresql, "
                                                  "`make postgres`)")
def test_a_server_that_fails_to_start_raises_with_its_log(monkeypatch):
    monkeypatch.setitem(postgres_server.SETTINGS, "no_such_setting", "1")
    server, before = PostgresServer(), server_folders()
    with pytest.raises(RuntimeError, match=r"(?s)pg_ctl start failed.*no_such_setting"):
        server.start()
    assert server.root is None and server_folders() == before
