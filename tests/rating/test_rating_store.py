"""Protects the rating store: ratings persist in SQLite (WAL), re-rating replaces rather than
duplicates, one rater's score of a caption can be read and cleared (what undo needs), a rating keeps a copy of
the caption it scored, bad input fails with a clear message, and many threads plus several processes can write
at once without losing a single rating."""
from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import threading

import pandas as pd
import pytest

from helpers import LEGACY_DB
from rating.database import HEAD_REVISION, LEGACY_USER_VERSION
from rating.store import (
    RATING_COLUMNS,
    CaptionNotFoundError,
    EvaluationSetNotFoundError,
    RatingStore,
)

SET = "coco-val"


def _fill(store: RatingStore, eval_set: str = SET, images: int = 2, models: tuple[str, ...] = ("mlp", "transformer")):
    """A set with `images` images, each captioned by every model."""
    store.create_or_open_set(eval_set, blind=True, preset="quick", settings={"beam_size": 3})
    for i in range(images):
        store.add_image(f"hash{i}", f"img{i}.jpg", 640, 480)
        for model in models:
            store.save_caption(eval_set, f"hash{i}", model, f"{model} caption {i}",
                               weights_hash=f"w-{model}", decoding={"beam_size": 3, "seed": i})


def test_schema_wal_and_version(tmp_path):
    store = RatingStore(tmp_path / "ratings.sqlite")
    assert store.journal_mode == "wal"
    assert store.schema_version == HEAD_REVISION
    # look at the file with a plain connection, not through the class
    raw = sqlite3.connect(tmp_path / "ratings.sqlite")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # older Caption Zoo (schema 2, before Alembic) refuses a file with a higher user_version
        assert raw.execute("PRAGMA user_version").fetchone()[0] == LEGACY_USER_VERSION
        columns = {table: [row[1] for row in raw.execute(f"PRAGMA table_info({table})")]
                   for table in ("evaluation_sets", "images", "captions", "ratings")}
        # schema 2: a score is checked against its set's scale by the store (tests/rating/test_score_scale.py),
        # so the table takes any integer (a 1-4 set's 3 and 4)
        raw.execute("INSERT INTO ratings VALUES ('s', 'r', 'h', 'm', 3, 'c', NULL, '{}', 't')")
        raw.rollback()
    finally:
        raw.close()
    assert columns["evaluation_sets"] == ["name", "created_at", "blind", "preset", "settings_json", "notes", "owner",
                                          "overlap", "caption_key"]
    assert columns["images"] == ["content_hash", "file_name", "width", "height", "added_at"]
    assert columns["captions"] == ["eval_set", "image_hash", "model_name", "caption", "model_weights_hash",
                                   "decoding_json", "created_at", "gold_score"]  # gold_score: imported known score
    assert columns["ratings"] == ["eval_set", "rater", "image_hash", "model_name", "score", "caption",
                                  "model_weights_hash", "decoding_json", "rated_at"]


def test_round_trip_copies_caption_into_rating(store):
    created = store.create_or_open_set(SET, blind=True, preset="quick", settings={"beam_size": 3})
    assert created["name"] == SET and created["blind"] is True and created["settings"] == {"beam_size": 3}
    assert created["created_at"].endswith("+00:00")  # ISO-8601 UTC
    store.add_image("hash0", "dog.jpg", 640, 480)
    store.save_caption(SET, "hash0", "mlp", "a dog on grass", weights_hash="abc123", decoding={"beam_size": 3})

    captions = store.get_captions(SET)
    assert len(captions) == 1
    assert captions[0]["caption"] == "a dog on grass" and captions[0]["file_name"] == "dog.jpg"
    assert captions[0]["decoding"] == {"beam_size": 3}

    store.rate(SET, "alice", "hash0", "mlp", 2)
    frame = store.ratings(SET)
    assert list(frame.columns) == RATING_COLUMNS
    row = frame.iloc[0].to_dict()
    assert row["eval_set"] == SET and row["rater"] == "alice" and row["score"] == 2
    assert row["file_name"] == "dog.jpg" and row["caption"] == "a dog on grass"
    assert row["model_weights_hash"] == "abc123" and row["decoding"] == {"beam_size": 3}
    assert pd.Timestamp(row["rated_at"]).tzinfo is not None
    assert frame["score"].dtype == "int64"


def test_upserts_replace_instead_of_duplicating(store):
    _fill(store, images=1)
    store.rate(SET, "alice", "hash0", "mlp", 0)
    store.rate(SET, "alice", "hash0", "mlp", 2)
    frame = store.ratings(SET)
    assert len(frame) == 1 and frame.loc[0, "score"] == 2

    # a regenerated caption replaces the old one, but the rating keeps what alice actually saw...
    store.save_caption(SET, "hash0", "mlp", "a new caption", weights_hash="w2", decoding={"beam_size": 5})
    assert [c["caption"] for c in store.get_captions(SET) if c["model_name"] == "mlp"] == ["a new caption"]
    assert store.ratings(SET).loc[0, "caption"] == "mlp caption 0"
    # ...until she rates again
    store.rate(SET, "alice", "hash0", "mlp", 1)
    row = store.ratings(SET).iloc[0]
    assert (row["caption"], row["model_weights_hash"], row["decoding"], row["score"]) == (
        "a new caption", "w2", {"beam_size": 5}, 1)
    assert len(store.get_captions(SET)) == 2  # one per model, not one per save


def test_add_references_counts_only_new_ones(store):
    # the count comes from the INSERT's rowcount, which psycopg reports only when asked to keep it (`upsert`)
    _fill(store, images=1)
    assert store.add_references(SET, "hash0", ["a dog", "a brown dog"]) == 2
    assert store.add_references(SET, "hash0", ["a dog", " a grey dog "]) == 1
    assert store.references(SET) == {"hash0": ["a dog", "a brown dog", "a grey dog"]}


def test_persists_across_reopen(db, tmp_path):
    path = tmp_path / "sub" / "ratings.sqlite" if db.endswith(".sqlite") else db  # missing folders are made
    first = RatingStore(path)
    _fill(first)
    first.rate(SET, "alice", "hash1", "transformer", 1)
    first.close()

    second = RatingStore(path)
    try:
        frame = second.ratings(SET)
        assert frame[["rater", "image_hash", "model_name", "score"]].values.tolist() == [
            ["alice", "hash1", "transformer", 1]]
        # opening an existing set keeps the settings it was created with
        reopened = second.create_or_open_set(SET, blind=False, settings={"beam_size": 9})
        assert reopened["blind"] is True and reopened["settings"] == {"beam_size": 3}
        assert reopened["preset"] == "quick"
    finally:
        second.close()


def test_list_sets_raters_unrated_and_delete(store):
    _fill(store, images=2)
    store.create_or_open_set("empty-set")
    store.rate(SET, "bob", "hash0", "mlp", 1)
    store.rate(SET, "alice", "hash0", "mlp", 2)
    store.rate(SET, "alice", "hash1", "mlp", 0)

    sets = {entry["name"]: entry for entry in store.list_sets()}
    assert set(sets) == {SET, "empty-set"}
    assert (sets[SET]["images"], sets[SET]["captions"], sets[SET]["ratings"], sets[SET]["raters"]) == (2, 4, 3, 2)
    assert (sets["empty-set"]["captions"], sets["empty-set"]["ratings"]) == (0, 0)

    assert store.raters(SET) == ["alice", "bob"]
    assert list(store.ratings(SET, rater="bob")["score"]) == [1]
    assert store.ratings("empty-set").empty and list(store.ratings("empty-set").columns) == RATING_COLUMNS
    unrated = store.unrated_captions(SET, "alice")
    assert [(c["image_hash"], c["model_name"]) for c in unrated] == [("hash0", "transformer"), ("hash1", "transformer")]

    assert store.delete_rating(SET, "bob", "hash0", "mlp") is True
    assert store.delete_rating(SET, "bob", "hash0", "mlp") is False
    assert store.raters(SET) == ["alice"]


def test_a_raters_score_of_one_caption_can_be_read_cleared_and_put_back(store):
    # What a page's "clear" and "undo last rating" rest on: read the score before changing it, then put it
    # back (rate) or clear it (delete_rating) when there was none.
    _fill(store, images=1)
    assert store.score(SET, "alice", "hash0", "mlp") is None
    store.rate(SET, "alice", "hash0", "mlp", 2)
    store.rate(SET, "bob", "hash0", "mlp", 0)
    previous = store.score(SET, " alice ", "hash0", "mlp")
    store.rate(SET, "alice", "hash0", "mlp", 1)
    assert (previous, store.score(SET, "alice", "hash0", "mlp")) == (2, 1)
    store.rate(SET, "alice", "hash0", "mlp", previous)  # undo: the previous score is back
    assert store.score(SET, "alice", "hash0", "mlp") == 2
    assert store.delete_rating(SET, "alice", "hash0", "mlp") is True  # clear
    assert store.score(SET, "alice", "hash0", "mlp") is None and store.delete_rating(SET, "alice", "hash0", "mlp") is False
    assert store.score(SET, "bob", "hash0", "mlp") == 0  # another rater's score is untouched
    with pytest.raises(EvaluationSetNotFoundError):
        store.score("nope", "alice", "hash0", "mlp")
    with pytest.raises(ValueError, match="rater name must not be empty"):
        store.score(SET, "", "hash0", "mlp")


def test_names_are_stripped(store):
    _fill(store, images=1)
    store.rate("  " + SET + " ", "  alice  ", "hash0", " mlp ", "2")  # radio widgets send strings
    assert store.ratings(SET)[["rater", "model_name", "score"]].values.tolist() == [["alice", "mlp", 2]]


@pytest.mark.parametrize("score", [3, -1, 1.5, "two", True, None])
def test_bad_score_is_refused(store, score):
    _fill(store, images=1)
    with pytest.raises(ValueError, match=f"score must be 0, 1 or 2, got {score!r}"):
        store.rate(SET, "alice", "hash0", "mlp", score)
    assert store.ratings(SET).empty


def test_score_message_is_exact(store):
    _fill(store, images=1)
    with pytest.raises(ValueError) as error:
        store.rate(SET, "alice", "hash0", "mlp", 3)
    assert str(error.value) == "score must be 0, 1 or 2, got 3"


def test_bad_names_and_missing_things_are_explained(store):
    _fill(store, images=1)
    with pytest.raises(ValueError, match="rater name must not be empty"):
        store.rate(SET, "   ", "hash0", "mlp", 1)
    with pytest.raises(ValueError, match="evaluation set name must not be empty"):
        store.create_or_open_set("")
    with pytest.raises(ValueError, match="at most 100"):
        store.rate(SET, "x" * 101, "hash0", "mlp", 1)
    store.rate(SET, "y" * 100, "hash0", "mlp", 1)  # 100 is allowed
    with pytest.raises(CaptionNotFoundError, match=r"No caption by model 'cnn'.*\['mlp', 'transformer'\]"):
        store.rate(SET, "alice", "hash0", "cnn", 1)
    with pytest.raises(EvaluationSetNotFoundError, match=r"'nope' not found; available sets = \['coco-val'\]"):
        store.rate("nope", "alice", "hash0", "mlp", 1)
    with pytest.raises(EvaluationSetNotFoundError):
        store.save_caption("nope", "hash0", "mlp", "c", weights_hash=None, decoding={})
    with pytest.raises(ValueError, match="decoding must hold only JSON values"):
        store.save_caption(SET, "hash0", "mlp", "c", weights_hash=None, decoding={"x": object()})
    with pytest.raises(ValueError, match="width must be a positive integer"):
        store.add_image("h", "a.jpg", 0, 10)
    assert len(store.ratings(SET)) == 1  # only the valid rating went in


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "ratings.sqlite"
    RatingStore(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE alembic_version SET version_num = '9999'")  # a revision this code does not have
    raw.commit()
    raw.close()
    with pytest.raises(RuntimeError, match="revision 9999, newer than this code's"):
        RatingStore(path)
    legacy = tmp_path / "legacy.sqlite"  # before Alembic: a user_version above the ones this code knows
    raw = sqlite3.connect(legacy)
    raw.executescript("CREATE TABLE evaluation_sets (name TEXT PRIMARY KEY); PRAGMA user_version = 7;")
    raw.close()
    with pytest.raises(RuntimeError, match="schema version 7, newer than this code's"):
        RatingStore(legacy)


# ---------------------------------------------------------------------------- concurrency

IMAGES = 50


def _process_writer(path: str, rater: str, barrier) -> None:
    """Runs in a separate process: open the store there and write IMAGES ratings."""
    store = RatingStore(path)
    barrier.wait()
    for i in range(IMAGES):
        store.rate(SET, rater, f"hash{i}", "mlp", i % 3)
    store.close()


def test_threads_and_processes_write_at_once(db):
    path = db
    store = RatingStore(path)
    _fill(store, images=IMAGES, models=("mlp",))

    # spawn, not fork: a clean child, as a second app process would be
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(3)  # both processes and this one start writing together
    processes = [context.Process(target=_process_writer, args=(str(path), f"process{p}", barrier)) for p in range(2)]
    for process in processes:
        process.start()

    errors: list[BaseException] = []

    def thread_writer(rater: str) -> None:
        try:
            for i in range(IMAGES):
                store.rate(SET, rater, f"hash{i}", "mlp", (i + len(rater)) % 3)
        except BaseException as error:  # surfaced below; a thread's exception is otherwise lost
            errors.append(error)

    threads = [threading.Thread(target=thread_writer, args=(f"thread{t}",)) for t in range(8)]
    barrier.wait(timeout=60)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for process in processes:
        process.join(timeout=60)

    assert not errors, errors
    assert [process.exitcode for process in processes] == [0, 0]
    frame = store.ratings(SET)
    assert len(frame) == 10 * IMAGES
    assert frame.groupby("rater").size().to_dict() == {
        **{f"thread{t}": IMAGES for t in range(8)}, **{f"process{p}": IMAGES for p in range(2)}}
    expected = {f"hash{i}": i % 3 for i in range(IMAGES)}
    assert dict(zip(frame.loc[frame.rater == "process1", "image_hash"], frame.loc[frame.rater == "process1", "score"])) == expected
    store.close()


def test_a_set_is_deleted_only_while_nothing_was_saved_in_it(store):
    store.create_or_open_set("empty")
    assert store.delete_set_if_empty("empty") is True
    assert "empty" not in [s["name"] for s in store.list_sets()]
    assert store.delete_set_if_empty("empty") is False  # already gone: nothing to do
    store.create_or_open_set("used")
    store.add_image("h1", "a.png", 10, 10)
    store.save_caption("used", "h1", "m", "a cat", weights_hash=None, decoding=None)
    assert store.delete_set_if_empty("used") is False
    assert [c["caption"] for c in store.get_captions("used")] == ["a cat"]


def test_owner_is_stored_once_and_an_old_database_gains_the_column(tmp_path):
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path)  # evaluation_sets as written before owners existed
    raw.execute("CREATE TABLE evaluation_sets (name TEXT PRIMARY KEY, created_at TEXT NOT NULL, "
                "blind INTEGER NOT NULL DEFAULT 0, preset TEXT, settings_json TEXT NOT NULL DEFAULT '{}', notes TEXT)")
    raw.execute("INSERT INTO evaluation_sets VALUES ('legacy', '2025-01-01T00:00:00Z', 1, NULL, '{}', NULL)")
    raw.commit()
    raw.close()
    with RatingStore(path) as store:
        with store.engine.connect() as conn:
            columns = [row[1] for row in conn.exec_driver_sql("PRAGMA table_info(evaluation_sets)")]
        assert columns[6] == "owner"
        assert store.get_set("legacy")["owner"] is None and store.get_set("legacy")["blind"] is True
        assert store.create_or_open_set("new", blind=True, owner="alice")["owner"] == "alice"
        assert store.create_or_open_set("new", owner="bob")["owner"] == "alice"  # never changed afterwards
        assert store.create_or_open_set("legacy", owner="bob")["owner"] is None
        assert {s["name"]: s["owner"] for s in store.list_sets()} == {"legacy": None, "new": "alice"}
    with RatingStore(path) as again:  # opening the migrated file again changes nothing
        assert again.get_set("new")["owner"] == "alice"


def test_a_file_in_the_schema_before_alembic_upgrades_with_nothing_lost(tmp_path):
    """tests/rating/data/ratings_schema2.sqlite was written by Caption Zoo at commit dafac72 (schema 2, before
    Alembic): opening it stamps and upgrades it in place, every row is still there, and the new features work."""
    path = tmp_path / "ratings.sqlite"
    shutil.copy(LEGACY_DB, path)
    raw = sqlite3.connect(path)
    before = {table: raw.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
              for table in ("evaluation_sets", "images", "captions", "ratings", "pairwise_votes")}
    raw.close()
    assert raw and len(before["ratings"]) == 9 and before["evaluation_sets"][0][-1] == "olga"
    with RatingStore(path) as store:
        assert store.schema_version == HEAD_REVISION
        blind = store.get_set("shapes-val")
        assert blind["blind"] is True and blind["owner"] == "olga" and blind["overlap"] is None
        assert store.set_scale("judgments") == (1, 4)
        assert store.ratings("shapes-val")["score"].tolist() == [0, 1, 2, 2, 2, 2]
        assert store.ratings("judgments")["score"].tolist() == [4, 3, 2]
        assert len(store.votes("shapes-val")) == 3
        assert store.gold_scores("shapes-val").values.tolist() == [["0" * 64, "mlp", 2]]
        refs = store.references("shapes-val")  # the order they were added in (SQLite's rowid) is kept
        assert refs[f"{1:064x}"] == ["ref b 1", "ref a 1"]
        store.rate("shapes-val", "alice", "0" * 64, "mlp", 1)
        assert store.history("shapes-val")[["rater", "old_score", "new_score"]].values.tolist() == [["alice", 0, 1]]
    raw = sqlite3.connect(path)
    after = {table: raw.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall() for table in before}
    raw.close()
    for table in ("images", "captions", "pairwise_votes"):
        assert after[table] == before[table], table
    assert [row[:7] for row in after["evaluation_sets"]] == before["evaluation_sets"]
