"""Protects `rating.copying.copy_database` and `python -m rating copy`: a database with something in every table
(blind, 1-4 and overlap sets, images, captions, ratings and their history, pairwise votes, references, gold scores,
users, tokens, leases, reviews) goes from an SQLite file to PostgreSQL and back with every row equal; the rating
history keeps its ids and PostgreSQL's next history id comes after them; users sign in on the copy; a destination
that is not empty is refused and left as it was; a copy whose counts differ is rolled back. Also `--db` given a
PostgreSQL URL: it works, and an unreachable server is one line naming host and port, never the password."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from helpers import ROOT
from rating import accounts, copying
from rating.cli import main
from rating.database import WRITE
from rating.schema import TABLES_IN_ORDER, leases, metadata, rating_history, reviews
from rating.store import RatingStore

PASSWORD = "correct horse"


def _fill(store: RatingStore) -> str:
    """Rows in every table; returns alice's API token."""
    store.create_or_open_set("blind", blind=True, preset="quick", settings={"beam_size": 3}, owner="olga",
                             notes="first round")
    store.create_or_open_set("expert", settings={"scale": [1, 4]})
    store.create_or_open_set("shared", overlap=2)
    for i in range(3):
        store.add_image(f"hash{i}", f"img{i}.jpg", 640 + i, 480)
    store.add_image_without_file("placeholder", "missing.jpg")
    for eval_set in ("blind", "expert", "shared"):
        for i in range(3):
            for model in ("mlp", "transformer"):
                store.save_caption(eval_set, f"hash{i}", model, f"{model} caption {i} ünïcode",
                                   weights_hash=f"w-{model}", decoding={"beam_size": 3, "seed": i})
    store.rate("blind", "alice", "hash0", "mlp", 2)
    store.rate("blind", "alice", "hash0", "mlp", 1)  # a change: two history rows
    store.rate("blind", "bob", "hash0", "transformer", 0, by="olga")
    store.rate("blind", "bob", "hash1", "mlp", 2)
    store.delete_rating("blind", "bob", "hash1", "mlp")  # cleared: a history row with no new score
    store.rate("expert", "expert", "hash0", "mlp", 4)
    store.rate("expert", "expert", "hash1", "transformer", 1)
    store.rate("shared", "alice", "hash2", "mlp", 1)
    store.rate("shared", "bob", "hash2", "mlp", 2)
    store.vote("blind", "alice", "hash0", "transformer", "mlp", "a")
    store.vote("blind", "bob", "hash1", "mlp", "transformer", "both_good")
    assert store.add_references("blind", "hash0", ["a dog", "a brown dog"]) == 2
    store.add_references("expert", "hash1", ["a cat"])
    store.set_gold_score("blind", "hash0", "mlp", 2)
    store.set_gold_score("blind", "hash1", "transformer", 0)
    accounts.add_user(store, "alice", "rater", PASSWORD)
    accounts.add_user(store, "olga", "owner", "olga's password")
    token = accounts.create_token(store, "alice", label="ci")
    accounts.create_token(store, "olga")
    assert accounts.user_for_token(store, token) is not None  # last_used_at set
    with store._write() as conn:  # no store method writes these yet: the queue and the review page will
        conn.execute(leases.insert().values(eval_set="shared", image_hash="hash1", rater="carol",
                                            leased_at="2025-01-31T12:00:00.000+00:00",
                                            expires_at="2025-01-31T12:30:00.000+00:00"))
        conn.execute(reviews.insert().values(eval_set="blind", image_hash="hash0", model_name="mlp", final_score=2,
                                             note="agreed", reviewer="olga",
                                             reviewed_at="2025-02-01T09:00:00.000+00:00"))
    return token


def _tables(db: str) -> dict[str, list[tuple]]:
    """Every row of every table, in primary-key order."""
    with RatingStore(db) as store, store._read() as conn:
        return {table.name: [tuple(row) for row in conn.execute(
            select(table).order_by(*table.primary_key.columns))] for table in TABLES_IN_ORDER}


@pytest.fixture
def filled(tmp_path) -> tuple[str, str]:
    """An SQLite file with rows in every table, and alice's token."""
    path = str(tmp_path / "source.sqlite")
    with RatingStore(path) as store:
        token = _fill(store)
    return path, token


def test_the_copy_order_covers_every_table_after_what_it_refers_to():
    assert {t.name for t in TABLES_IN_ORDER} == set(metadata.tables)
    assert len(TABLES_IN_ORDER) == len(metadata.tables)
    for position, table in enumerate(TABLES_IN_ORDER):
        earlier = {t.name for t in TABLES_IN_ORDER[:position]}
        for key in table.foreign_keys:
            assert key.column.table.name in earlier, (table.name, key.target_fullname)


def test_sqlite_to_postgresql_and_back(filled, postgres_url, tmp_path):
    source, token = filled
    rows = _tables(source)
    assert all(rows.values()), [name for name, found in rows.items() if not found]  # every table has rows
    expected = {name: (len(found), len(found)) for name, found in rows.items()}

    assert copying.copy_database(source, postgres_url, batch=2) == expected  # batch 2: many batches per table
    assert _tables(postgres_url) == rows
    back = str(tmp_path / "back.sqlite")
    assert copying.copy_database(postgres_url, back) == expected
    assert _tables(back) == rows

    with RatingStore(postgres_url) as copy:
        # the copy works as the original did: sign-in, tokens, scales, overlap, history
        assert accounts.authenticate(copy, "alice", PASSWORD) == accounts.User("alice", "rater")
        assert accounts.user_for_token(copy, token) == accounts.User("alice", "rater")
        assert copy.set_scale("expert") == (1, 4)
        assert copy.get_set("shared")["overlap"] == 2 and copy.get_set("blind")["blind"] is True
        last = max(row[0] for row in rows["rating_history"])
        copy.rate("blind", "carol", "hash2", "mlp", 1)  # a fresh id from the moved sequence, no clash
        with copy._read() as conn:
            newest = conn.execute(select(rating_history).order_by(rating_history.c.id.desc())).first()
        assert (newest.id, newest.rater, newest.new_score) == (last + 1, "carol", 1)
    with RatingStore(back) as copy:
        copy.rate("blind", "carol", "hash2", "mlp", 1)
        with copy._read() as conn:
            assert conn.execute(select(func.max(rating_history.c.id))).scalar_one() == last + 1


def test_a_database_that_is_not_empty_is_refused_and_left_alone(filled, db):
    source, _ = filled
    with RatingStore(db) as store:
        accounts.add_user(store, "admin", "admin", PASSWORD)
    before = _tables(db)
    with pytest.raises(ValueError, match=r"is not empty \(table users has rows\); copy into a new, empty database"):
        copying.copy_database(source, db)
    assert _tables(db) == before
    with pytest.raises(ValueError, match="not empty"):  # copying a database into itself: refused as well
        copying.copy_database(source, source)
    with pytest.raises(ValueError, match="batch must be"):
        copying.copy_database(source, db, batch=0)


def test_counts_that_differ_roll_the_copy_back(filled, db, monkeypatch):
    source, _ = filled
    count = copying._count

    def miscount(conn, table):  # the destination seems to miss a rating
        return count(conn, table) - (table.name == "ratings" and bool(conn.get_execution_options().get(WRITE)))

    monkeypatch.setattr(copying, "_count", miscount)
    n = len(_tables(source)["ratings"])
    with pytest.raises(ValueError, match=f"does not match its source: ratings {n} in the source, {n - 1} in the "
                                         "copy; nothing was written"):
        copying.copy_database(source, db)
    assert not any(_tables(db).values())


def test_cli_copy(filled, db, tmp_path, capsys):
    source, _ = filled
    rows = {name: len(found) for name, found in _tables(source).items()}
    assert main(["copy", source, db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:-1] == [f"{name}: {n} rows" for name, n in rows.items()]
    assert lines[-1].startswith(f"copied {sum(rows.values())} rows from ") and lines[-1].endswith("; counts match")

    assert main(["copy", source, db]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "copy into a new, empty database" in err
    missing = tmp_path / "missing.sqlite"
    assert main(["copy", str(missing), str(tmp_path / "new.sqlite")]) == 2
    assert "no rating database at" in capsys.readouterr().err
    assert not missing.exists() and not (tmp_path / "new.sqlite").exists()  # nothing made for a mistake


def test_db_takes_a_postgresql_url(filled, postgres_url, capsys):
    assert main(["sets", "--db", postgres_url]) == 0
    assert capsys.readouterr().out == f"no evaluation sets in {postgres_url}\n"
    copying.copy_database(filled[0], postgres_url)
    assert main(["sets", "--db", postgres_url]) == 0
    assert capsys.readouterr().out.count("\n") == 3
    assert main(["sets", "--db", "mysql://u:sekret@127.0.0.1/db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unsupported database") and "sekret" not in err and len(err.splitlines()) == 1


def test_an_unreachable_server_is_one_line_without_the_password():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "rating", "sets", "--db", "postgresql://u:sekret@127.0.0.1:1/db"],
                          capture_output=True, text=True, env=env, cwd=Path(ROOT), timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
    assert "127.0.0.1:1" in done.stderr and "sekret" not in done.stderr and "Traceback" not in done.stderr
