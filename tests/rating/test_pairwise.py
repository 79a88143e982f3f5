"""Protects pairwise mode: votes are stored one per rater, image and unordered pair (re-voting replaces), the
schedule offers every pair of models on every image (3 images x 3 models -> 9 pairs) unless limited, compares
every pair equally often (+-1) however far a rater gets, and is the same for every rater; a pair whose captions
are identical (up to whitespace and case) is never shown but stored as a tie and counted in the progress; A/B
sides are random but fixed, and the results are right: Bradley-Terry strengths equal the maximum likelihood (checked
against a closed form and scikit-learn's logistic regression), ties count half, bootstrap intervals are
seeded and contain the estimate, overlapping intervals share a rank, and the win-rate matrix and the export
hold the hand-computed values."""

from __future__ import annotations

import math
import shutil
import sqlite3
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from helpers import LEGACY_DB
from rating import pairwise
from rating.exports import export_pairwise
from rating.store import VOTE_COLUMNS, CaptionNotFoundError, RatingStore

SET = "pairs"
ELO_PER_NAT = 400 / math.log(10)


def votes_frame(spec: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    """(model_a, model_b, outcome, how many times) -> a votes frame as RatingStore.votes gives."""
    rows = [(a, b, outcome) for a, b, outcome, n in spec for _ in range(n)]
    return pd.DataFrame(rows, columns=["model_a", "model_b", "outcome"])


THREE = votes_frame([("A", "B", "a", 8), ("A", "B", "b", 2), ("B", "C", "a", 8), ("C", "B", "a", 2),
                     ("A", "C", "a", 9), ("C", "A", "a", 1)])


@pytest.fixture
def store(db):
    store = RatingStore(db)
    store.create_or_open_set(SET)
    for i in range(4):
        store.add_image(f"h{i}", f"img{i}.jpg", 64, 64)
        for model in ("m1", "m2", "m3"):
            store.save_caption(SET, f"h{i}", model, f"{model} says {i}", weights_hash=None, decoding=None)
    yield store
    store.close()


# ----------------------------------------------------------------------------------------------------------
# Storage


def test_vote_is_stored_and_revote_replaces_whatever_side(store):
    store.vote(SET, "alice", "h0", "m1", "m2", "a")
    store.vote(SET, "alice", "h0", "m2", "m1", "both_bad")  # same unordered pair, sides swapped: replaces
    store.vote(SET, "bob", "h0", "m1", "m2", "b")
    votes = store.votes(SET)
    assert list(votes.columns) == VOTE_COLUMNS and len(votes) == 2
    alice = votes[votes["rater"] == "alice"].iloc[0]
    assert (alice["model_a"], alice["model_b"], alice["outcome"]) == ("m2", "m1", "both_bad")
    assert (alice["caption_a"], alice["caption_b"], alice["file_name"]) == ("m2 says 0", "m1 says 0", "img0.jpg")
    assert list(store.votes(SET, "bob")["outcome"]) == ["b"]
    with RatingStore(store.url) as reopened:  # survives a restart
        assert reopened.votes(SET).equals(votes)


def test_bad_votes_are_refused_with_clear_messages(store):
    with pytest.raises(ValueError, match=r"outcome must be one of \['a', 'b', 'both_good', 'both_bad'\], got 'c'"):
        store.vote(SET, "alice", "h0", "m1", "m2", "c")
    with pytest.raises(ValueError, match="two different models"):
        store.vote(SET, "alice", "h0", "m1", "m1", "a")
    with pytest.raises(CaptionNotFoundError, match=r"model\(s\) \['zz'\].*\['m1', 'm2', 'm3'\]"):
        store.vote(SET, "alice", "h0", "m1", "zz", "a")
    assert store.votes(SET).empty


def test_database_from_before_pairwise_mode_gains_the_votes_table(tmp_path):
    path = tmp_path / "old.sqlite"
    shutil.copy(LEGACY_DB, path)  # a file written by Caption Zoo before Alembic (schema 2)
    conn = sqlite3.connect(path)
    conn.executescript(  # as a file written before pairwise mode looks
        "DROP TABLE pairwise_votes; INSERT INTO evaluation_sets(name, created_at) VALUES ('pairs', 't');"
        "INSERT INTO captions(eval_set, image_hash, model_name, caption, created_at) VALUES "
        "('pairs', 'h0', 'm1', 'x', 't'), ('pairs', 'h0', 'm2', 'y', 't');"
        "INSERT INTO ratings(eval_set, rater, image_hash, model_name, score, caption, rated_at) VALUES "
        "('pairs', 'alice', 'h0', 'm1', 2, 'x', 't'); PRAGMA user_version = 1;")  # pairwise came before schema 2
    conn.close()
    with RatingStore(path) as reopened:
        assert reopened.ratings(SET)["score"].tolist() == [2]
        reopened.vote(SET, "alice", "h0", "m1", "m2", "a")
        assert len(reopened.votes(SET)) == 1


# ----------------------------------------------------------------------------------------------------------
# Scheduling


def pair_counts(schedule, names) -> pd.Series:
    """How often each pair of `names` is in `schedule` (0 for a pair never in it)."""
    counts = pd.Series([(p.model_x, p.model_y) for p in schedule], dtype=object).value_counts()
    return counts.reindex(list(combinations(names, 2)), fill_value=0)


@pytest.mark.parametrize("models, images", [(3, 3), (3, 10), (4, 17), (2, 5), (6, 7)])
def test_default_schedule_is_every_pair_on_every_image(models, images):
    names = [f"model{i}" for i in range(models)]
    schedule = pairwise.pair_schedule([f"img{i}" for i in range(images)], names, seed="s")
    expected = {(f"img{i}", *pair) for i in range(images) for pair in combinations(names, 2)}
    assert len(schedule) == images * math.comb(models, 2)  # 3 images x 3 models -> 9 items
    assert {(p.image_hash, p.model_x, p.model_y) for p in schedule} == expected  # each exactly once
    for n in range(1, len(schedule) + 1):  # a rater who stops anywhere has compared every pair equally (+-1)
        counts = pair_counts(schedule[:n], names)
        assert counts.max() - counts.min() <= 1, n
    # image by image, each image's pairs starting one pair later in the rotation than the previous image's
    firsts = [p for i, p in enumerate(schedule) if i % math.comb(models, 2) == 0]
    if images >= math.comb(models, 2) > 1:
        assert len({(p.model_x, p.model_y) for p in firsts}) == math.comb(models, 2)


@pytest.mark.parametrize("models, images, per_image", [(3, 10, 1), (4, 17, 1), (5, 23, 2), (6, 7, 3), (2, 5, 1),
                                                        (3, 4, 3), (3, 4, 99)])
def test_limited_schedule_compares_every_pair_equally_often(models, images, per_image):
    names = [f"model{i}" for i in range(models)]
    schedule = pairwise.pair_schedule([f"img{i}" for i in range(images)], names, seed="s", pairs_per_image=per_image)
    per_image = min(per_image, math.comb(models, 2))
    assert len(schedule) == images * per_image
    for n in range(1, len(schedule) + 1):
        counts = pair_counts(schedule[:n], names)
        assert counts.max() - counts.min() <= 1, n
    per = pd.Series([p.image_hash for p in schedule]).value_counts()
    assert (per == per_image).all()  # and no image gets the same pair twice
    assert len({(p.image_hash, p.model_x, p.model_y) for p in schedule}) == len(schedule)


def test_bad_limit_is_refused():
    with pytest.raises(ValueError, match="pairs_per_image must be >= 1, or None for every pair on every image; got 0"):
        pairwise.pair_schedule(["i"], ["a", "b"], 1, pairs_per_image=0)


def test_schedule_is_seeded_and_skips_missing_captions():
    images, models = [f"i{k}" for k in range(12)], ["a", "b", "c", "d"]
    assert pairwise.pair_schedule(images, models, 1) == pairwise.pair_schedule(list(reversed(images)), models, 1)
    assert pairwise.pair_schedule(images, models, 1) != pairwise.pair_schedule(images, models, 2)
    available = {image: set(models) for image in images} | {"i0": {"a", "b"}, "i1": {"c"}}
    schedule = pairwise.pair_schedule(images, models, 1, available=available)
    assert [(p.model_x, p.model_y) for p in schedule if p.image_hash == "i0"] == [("a", "b")]
    assert not [p for p in schedule if p.image_hash == "i1"]  # one caption: nothing to compare
    assert len(schedule) == 10 * 6 + 1
    limited = pairwise.pair_schedule(images, models, 1, available=available, pairs_per_image=1)
    assert [(p.model_x, p.model_y) for p in limited if p.image_hash == "i0"] == [("a", "b")]
    assert len(limited) == 11


def test_display_order_is_fixed_per_item_and_mixes_sides():
    first = [pairwise.display_order("set", f"img{i}", "m1", "m2") for i in range(40)]
    assert first == [pairwise.display_order("set", f"img{i}", "m2", "m1") for i in range(40)]
    assert 5 < sum(a == "m1" for a, _ in first) < 35  # both sides occur


def test_next_pair_same_schedule_for_every_rater_skips_voted(store):
    schedule = pairwise.set_schedule(store, SET)
    assert len(schedule) == 4 * 3 and store.votes(SET).empty  # 4 images x 3 models: every pair on every image
    assert len(pairwise.set_schedule(store, SET, pairs_per_image=1)) == 4
    alice = pairwise.next_pair(store, SET, "alice")
    assert pairwise.next_pair(store, SET, "bob") == alice
    assert (alice.done, alice.total, alice.identical) == (0, 12, 0)
    assert {alice.model_a, alice.model_b} == {schedule[0].model_x, schedule[0].model_y}
    assert alice.caption_a == f"{alice.model_a} says {alice.image_hash[1]}"
    shown = []
    for i in range(12):
        item = pairwise.next_pair(store, SET, "alice")
        assert (item.done, item.total) == (i, 12) and pairwise.pair_progress(store, SET, "alice") == (i, 12)
        shown.append((item.image_hash, *sorted((item.model_a, item.model_b))))
        store.vote(SET, "alice", item.image_hash, item.model_a, item.model_b, "a")
    assert shown == [(p.image_hash, p.model_x, p.model_y) for p in schedule]  # in schedule order, each once
    assert pairwise.next_pair(store, SET, "alice") is None
    assert pairwise.pair_progress(store, SET, "alice") == (12, 12)
    assert pairwise.pair_status(store, SET, "alice") == pairwise.PairProgress(done=12, total=12, identical=0)
    assert pairwise.pair_status(store, SET, "alice").finished
    assert not pairwise.pair_status(store, SET, "bob").finished
    assert pairwise.next_pair(store, SET, "bob") == alice  # bob's schedule is untouched by alice's votes


def test_a_limit_is_honoured_by_next_pair_and_progress(store):
    for _ in range(4):
        item = pairwise.next_pair(store, SET, "alice", pairs_per_image=1)
        assert item.total == 4
        store.vote(SET, "alice", item.image_hash, item.model_a, item.model_b, "b")
    assert pairwise.next_pair(store, SET, "alice", pairs_per_image=1) is None
    assert pairwise.pair_progress(store, SET, "alice", pairs_per_image=1) == (4, 4)
    assert pairwise.pair_progress(store, SET, "alice") == (4, 12)  # the full schedule still has 8 to go


def test_three_images_three_models_nine_pairs_identical_captions_are_ties_never_shown(tmp_path):
    """The issue: 3 images x 3 models offered 3 pairs and showed two identical captions as a pair."""
    with RatingStore(tmp_path / "ratings.sqlite") as store:
        store.create_or_open_set(SET)
        for i in range(3):
            store.add_image(f"h{i}", f"img{i}.jpg", 64, 64)
            for model in ("m1", "m2", "m3"):
                store.save_caption(SET, f"h{i}", model, f"{model} sees {i}", weights_hash=None, decoding=None)
        # m1 and m2 agree on h0 up to case and spacing; on h1 all three write the same words
        store.save_caption(SET, "h0", "m2", "  M1 SEES\t0 ", weights_hash=None, decoding=None)
        for model in ("m1", "m2", "m3"):
            store.save_caption(SET, "h1", model, "a red square", weights_hash=None, decoding=None)
        identical = {("h0", "m1", "m2"), ("h1", "m1", "m2"), ("h1", "m1", "m3"), ("h1", "m2", "m3")}

        assert len(pairwise.set_schedule(store, SET)) == 9
        # progress counts the identical pairs as done before any vote, so it never goes backwards
        assert pairwise.pair_status(store, SET, "alice") == pairwise.PairProgress(done=4, total=9, identical=4)
        shown = []
        while (item := pairwise.next_pair(store, SET, "alice")) is not None:
            assert not pairwise.identical_captions(item.caption_a, item.caption_b)
            assert (item.done, item.total, item.identical) == (4 + len(shown), 9, 4)
            shown.append((item.image_hash, *sorted((item.model_a, item.model_b))))
            store.vote(SET, "alice", item.image_hash, item.model_a, item.model_b, "a")
        assert len(shown) == 5 and not identical & set(shown)

        votes = store.votes(SET, "alice")
        assert len(votes) == 9
        ties = votes[[(h, *sorted((a, b))) in identical
                      for h, a, b in zip(votes["image_hash"], votes["model_a"], votes["model_b"])]]
        assert len(ties) == 4 and set(ties["outcome"]) == {pairwise.AUTO_TIE_OUTCOME} == {"both_good"}
        assert all(map(pairwise.identical_captions, ties["caption_a"], ties["caption_b"]))
        status = pairwise.pair_status(store, SET, "alice")
        assert status.finished and (status.done, status.total, status.identical) == (9, 9, 4)
        assert pairwise.pair_progress(store, SET, "alice") == (9, 9)
        assert pairwise.record_identical_pairs(store, SET, "alice") == 0  # nothing left to store
        # ties count half a win each: m1 vs m2 on h0 and h1 are two ties, so their shares of those are equal
        names, wins = pairwise.win_counts(ties)
        assert wins[names.index("m1"), names.index("m2")] == wins[names.index("m2"), names.index("m1")] == 1.0

        # another rater gets the same ties on their first next_pair; a vote already cast is never replaced
        store.vote(SET, "bob", "h1", "m1", "m2", "b")
        first = pairwise.next_pair(store, SET, "bob")
        assert (first.image_hash, *sorted((first.model_a, first.model_b))) == shown[0]
        bob = store.votes(SET, "bob").set_index(["image_hash", "model_a", "model_b"])["outcome"]
        assert len(bob) == 4 and bob.loc[("h1", "m1", "m2")] == "b"
        assert (bob.drop(("h1", "m1", "m2")) == "both_good").all()


def test_caption_normalisation():
    assert pairwise.normalise_caption("  A  Dog\n on\tGRASS ") == "a dog on grass"
    assert pairwise.identical_captions("A dog.", "a  dog.") and not pairwise.identical_captions("a dog", "a dog.")


# ----------------------------------------------------------------------------------------------------------
# Bradley-Terry


def test_two_models_match_the_closed_form():
    votes = votes_frame([("A", "B", "a", 8), ("B", "A", "a", 2)])  # A wins 8 of 10, sides mixed
    ratings = pairwise.bt_ratings(votes, ridge=0)
    assert ratings["A"] - ratings["B"] == pytest.approx(ELO_PER_NAT * math.log(0.8 / 0.2), abs=1e-3)
    assert ratings.mean() == pytest.approx(1000)
    assert pairwise.win_probability(ratings["A"], ratings["B"]) == pytest.approx(0.8, abs=1e-6)


def test_three_models_order_and_match_logistic_regression():
    ratings = pairwise.bt_ratings(THREE, ridge=0)
    assert list(ratings.sort_values(ascending=False).index) == ["A", "B", "C"]
    # Reference: FastChat's formulation, logistic regression without intercept on +1 / -1 indicators.
    names = ["A", "B", "C"]
    x = np.zeros((len(THREE), 3))
    x[np.arange(len(THREE)), [names.index(m) for m in THREE["model_a"]]] = 1
    x[np.arange(len(THREE)), [names.index(m) for m in THREE["model_b"]]] = -1
    y = (THREE["outcome"] == "a").to_numpy(int)
    coef = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-10, max_iter=10_000).fit(x, y).coef_[0]
    reference = 1000 + ELO_PER_NAT * (coef - coef.mean())
    assert ratings.to_numpy() == pytest.approx(reference, abs=1e-2)
    assert pairwise.bt_ratings(THREE).to_numpy() == pytest.approx(reference, abs=1.0)  # the default prior is weak


def test_ties_count_half_a_win_each():
    with_ties = votes_frame([("A", "B", "a", 3), ("A", "B", "both_good", 1), ("B", "A", "both_bad", 1)])
    names, wins = pairwise.win_counts(with_ties)
    assert names == ["A", "B"] and wins.tolist() == [[0, 4], [1, 0]]
    ratings = pairwise.bt_ratings(with_ties, ridge=0)
    assert ratings["A"] - ratings["B"] == pytest.approx(ELO_PER_NAT * math.log(4 / 1), abs=1e-3)
    only_ties = pairwise.bt_ratings(votes_frame([("A", "B", "both_good", 3), ("B", "A", "both_bad", 2)]), ridge=0)
    assert only_ties.to_numpy() == pytest.approx([1000, 1000], abs=1e-6)


def test_bad_votes_frame_is_refused():
    with pytest.raises(ValueError, match="unknown pairwise outcome"):
        pairwise.bt_ratings(votes_frame([("A", "B", "tie", 1)]))
    with pytest.raises(ValueError, match="missing \\['outcome'\\]"):
        pairwise.bt_ratings(pd.DataFrame({"model_a": ["A"], "model_b": ["B"]}))


# ----------------------------------------------------------------------------------------------------------
# Bootstrap, ranks, leaderboard, win rates, export


def test_bootstrap_is_seeded_and_intervals_contain_the_estimate():
    first = pairwise.bootstrap_ratings(THREE, rounds=200, seed=7)
    assert first.shape == (200, 3) and first.equals(pairwise.bootstrap_ratings(THREE, rounds=200, seed=7))
    assert not first.equals(pairwise.bootstrap_ratings(THREE, rounds=200, seed=8))
    board = pairwise.leaderboard(THREE, rounds=200, seed=7)
    assert list(board["model"]) == ["A", "B", "C"]
    assert ((board["ci_low"] <= board["rating"]) & (board["rating"] <= board["ci_high"])).all()
    assert board.equals(pairwise.leaderboard(THREE, rounds=200, seed=7))
    assert board[["votes", "wins", "ties", "losses"]].values.tolist() == [[20, 17, 0, 3], [20, 10, 0, 10],
                                                                            [20, 3, 0, 17]]
    assert board["win_rate"].tolist() == pytest.approx([0.85, 0.5, 0.15])


def test_overlapping_intervals_share_a_rank():
    assert pairwise.tied_ranks([10, 5, -20], [20, 15, -10]) == [1, 1, 3]  # A, B overlap; C below both
    assert pairwise.tied_ranks([10, 0, -5], [20, 11, 1]) == [1, 1, 2]  # B overlaps A and C; C is below A only
    close = votes_frame([("A", "B", "a", 6), ("A", "B", "b", 4)])
    assert pairwise.leaderboard(close, rounds=200)["rank"].tolist() == [1, 1]
    clear = votes_frame([("A", "B", "a", 90), ("A", "B", "b", 10)])
    assert pairwise.leaderboard(clear, rounds=200)["rank"].tolist() == [1, 2]


def test_win_rate_matrix_hand_computed():
    votes = votes_frame([("A", "B", "a", 3), ("B", "A", "both_good", 2), ("C", "A", "a", 1)])
    matrix = pairwise.win_rate_matrix(votes)
    # A vs B: A has 3 + 2 * 0.5 = 4 of 5; A vs C: 0 of 1; B and C never met
    assert matrix.loc["A", "B"] == pytest.approx(0.8) and matrix.loc["B", "A"] == pytest.approx(0.2)
    assert matrix.loc["A", "C"] == 0 and matrix.loc["C", "A"] == 1
    assert np.isnan(matrix.loc["B", "C"]) and np.isnan(matrix.loc["A", "A"])


def test_empty_votes_give_empty_results(store):
    assert pairwise.leaderboard(store.votes(SET)).empty
    results = pairwise.set_pairwise_results(store, SET, rounds=10)
    assert results.leaderboard.empty and results.raters == []


def test_export_writes_safe_csv_and_workbook(store, tmp_path):
    store.save_caption(SET, "h0", "=evil", "=HYPERLINK(\"x\")", weights_hash=None, decoding=None)
    store.vote(SET, "alice", "h0", "=evil", "m1", "a")
    store.vote(SET, "alice", "h1", "m2", "m1", "b")
    paths = pairwise.export_set_pairwise(store, SET, tmp_path / "out", rounds=20)
    assert [p.name for p in paths] == ["pairs_pairwise.csv", "pairs_win_rates.csv", "pairs_votes.csv",
                                       "pairs_pairwise.xlsx"]
    board = pd.read_csv(paths[0], encoding="utf-8-sig")
    assert set(board["model"]) == {"'=evil", "m1", "m2"} and list(board.columns) == pairwise.LEADERBOARD_COLUMNS
    assert "'=HYPERLINK" in paths[2].read_text(encoding="utf-8-sig")
    book = pd.read_excel(paths[3], sheet_name=None)
    assert list(book) == ["Pairwise", "Win rates", "Votes"] and len(book["Votes"]) == 2
    assert book["Win rates"].columns[0] == "model"
    folder = export_pairwise(board, pd.DataFrame(), store.votes(SET), tmp_path / "plain")
    assert [p.name for p in folder] == ["pairwise.csv", "win_rates.csv", "votes.csv", "pairwise.xlsx"]
