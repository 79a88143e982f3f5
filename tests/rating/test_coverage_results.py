"""Results that say how much they rest on: every model of a set is listed with its coverage, ranks and the
headline accuracy use only the images rated for every model (a barely rated set ranks nobody), the per-rater
view (progress, accuracy per model, leniency), agreement with gold scores, and the exports carrying all this.
Every expected number is worked out by hand in the comments."""
from __future__ import annotations

import csv
import io
import math

import pandas as pd
import pytest

from rating import sets
from rating.results import COVERAGE_COLUMNS, coverage_summary, gold_agreement, rater_table
from rating.store import RatingStore

MODELS6 = [f"model-{k}" for k in range(6)]


def _hash(i: int) -> str:
    return f"{i:064x}"


def _ratings(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["rater", "image_hash", "model_name", "score"])


def _captions(images: list[str], models: list[str]) -> pd.DataFrame:
    return pd.DataFrame([(image, model) for image in images for model in models], columns=["image_hash", "model_name"])


@pytest.fixture()
def store(tmp_path):
    with RatingStore(tmp_path / "ratings.sqlite") as opened:
        yield opened


def _fill(store: RatingStore, name: str, images: int, models: list[str]) -> None:
    sets.open_set(store, name, "alice")
    for i in range(images):
        store.add_image(_hash(i), f"img{i}.png", 10, 10)
        for model in models:
            store.save_caption(name, _hash(i), model, f"{model} says {i}", weights_hash=None, decoding=None)


# ----------------------------------------------------------------------------------------------------------
# The reported case: 6 models x 23 images = 138 captions, one rated


def test_one_rating_of_138_ranks_nobody_and_lists_every_model(store, tmp_path):
    _fill(store, "big", 23, MODELS6)
    store.rate("big", "alice", _hash(0), "model-2", 2)
    found = sets.set_results(store, "big")
    table = found.summary.set_index("model")

    assert sorted(table.index) == MODELS6  # all six, not only the rated one
    assert not (table["rank"] == 1).any() and table["rank"].isna().all()
    assert not (table["accuracy"] == 100.0).any() and table["accuracy"].isna().all()
    assert table["captions"].tolist() == [23] * 6
    assert table.loc["model-2", "captions_rated"] == 1 and table.loc["model-2", "coverage"] == pytest.approx(1 / 23)
    others = table.drop(index="model-2")
    assert others["captions_rated"].tolist() == [0] * 5 and others["coverage"].tolist() == [0.0] * 5
    assert table["common_images"].tolist() == [0] * 6
    # its own figure is still there, beside the empty headline: 2 x 100 / (1 x 2)
    assert table.loc["model-2", "accuracy_all"] == 100.0 and table.loc["model-2", "images_rated"] == 1
    assert table.loc["model-2", "note"] and table.loc["model-0", "note"]  # every row says why it is not ranked
    assert "rest on too few images" in found.message and "1 of 138" in found.message
    # the rated image needs the other 5 models' captions to become a common image
    assert "Rate 5 more caption(s)" in found.message and "137 remaining" in found.message


def test_no_ratings_lists_every_model_unranked():
    result = coverage_summary(_ratings([]), _captions(["i0", "i1"], ["b", "a"]))
    assert result.table["model"].tolist() == ["a", "b"] and result.table["rank"].isna().all()
    assert result.table["captions_rated"].tolist() == [0, 0] and result.table["captions"].tolist() == [2, 2]
    assert "No ratings" in result.message and result.common_images == 0
    assert list(result.table.columns) == COVERAGE_COLUMNS


# ----------------------------------------------------------------------------------------------------------
# Partial coverage: ranked on the common images


# Images i0..i3 are rated for every model (the common images); "best" also has i4, "second" i4 and i5.
COMMON = {
    "best": [2, 2, 2, 2],    # 8/8 = 100.0 -> rank 1
    "second": [2, 2, 2, 1],  # 7/8 =  87.5 -> rank 2
    "zeta": [2, 2, 1, 1],    # 6/8 =  75.0 -> rank 3 (tie)
    "alpha": [1, 1, 2, 2],   # 6/8 =  75.0 -> rank 3 (tie, listed first by name)
    "worst": [1, 0, 0, 1],   # 2/8 =  25.0 -> rank 5
}
EXTRA = [("best", "i4", 0), ("second", "i4", 2), ("second", "i5", 2)]


def _partial() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [("alice", f"i{i}", model, score) for model, scores in COMMON.items() for i, score in enumerate(scores)]
    rows += [("alice", image, model, score) for model, image, score in EXTRA]
    return _ratings(rows), _captions([f"i{i}" for i in range(6)], list(COMMON))


def test_partial_coverage_ranks_on_common_images_with_ties():
    ratings, captions = _partial()
    result = coverage_summary(ratings, captions, n_bootstrap=200)
    table = result.table
    assert table["model"].tolist() == ["best", "second", "alpha", "zeta", "worst"]
    assert table["rank"].tolist() == [1, 2, 3, 3, 5]
    assert table["accuracy"].tolist() == pytest.approx([100.0, 87.5, 75.0, 75.0, 25.0])
    assert table["common_images"].tolist() == [4] * 5 and table["common_total"].tolist() == [8, 7, 6, 6, 2]
    # all rated images: best 8/10 = 80 %, second (7 + 4)/12 = 91.67 % -- it would have come first
    assert table["images_rated"].tolist() == [5, 6, 4, 4, 4]
    assert table["total"].tolist() == [8, 11, 6, 6, 2]
    assert table["accuracy_all"].tolist() == pytest.approx([80.0, 1100 / 12, 75.0, 75.0, 25.0])
    assert table["captions"].tolist() == [6] * 5 and table["captions_rated"].tolist() == [5, 6, 4, 4, 4]
    assert table["coverage"].tolist() == pytest.approx([5 / 6, 1.0, 4 / 6, 4 / 6, 4 / 6])
    assert table.loc[1, "note"] == "" and all(table.loc[[0, 2, 3, 4], "note"].str.startswith("partial"))
    # "best" scored 2 on every common image: a resample cannot move it
    assert (table.loc[0, "ci_low"], table.loc[0, "ci_high"]) == (100.0, 100.0)
    assert (table["ci_low"] <= table["accuracy"]).all() and (table["accuracy"] <= table["ci_high"]).all()
    # 20 common ratings + 3 extra = 23 of 30 captions
    assert result.captions == 30 and result.captions_rated == 23 and result.images == 6
    assert "incomplete" in result.message and "23 of 30" in result.message and "4 image(s)" in result.message


def test_complete_coverage_matches_the_plain_summary():
    ratings = _ratings([("alice", f"i{i}", m, s) for m, scores in COMMON.items() for i, s in enumerate(scores)])
    result = coverage_summary(ratings, _captions([f"i{i}" for i in range(4)], list(COMMON)), n_bootstrap=0)
    assert result.table["accuracy"].tolist() == pytest.approx(result.table["accuracy_all"].tolist())
    assert (result.table["note"] == "").all() and "Every caption is rated" in result.message


def test_captions_must_name_image_and_model():
    with pytest.raises(ValueError, match="missing column"):
        coverage_summary(_ratings([]), pd.DataFrame({"picture": ["x"]}))


# ----------------------------------------------------------------------------------------------------------
# Per rater and gold


# Captions: images a, b x models m, n (4 captions).
PER_RATER = _ratings([
    ("alice", "a", "m", 2), ("alice", "a", "n", 1), ("alice", "b", "m", 2),
    ("bob", "a", "m", 1), ("bob", "a", "n", 1),
    ("carol", "a", "m", 0),
])


def test_rater_progress_accuracy_and_leniency_by_hand():
    table = rater_table(PER_RATER, _captions(["a", "b"], ["m", "n"])).set_index("rater")
    assert table["captions_rated"].tolist() == [3, 2, 1] and table["captions"].tolist() == [4, 4, 4]
    assert table["progress"].tolist() == pytest.approx([0.75, 0.5, 0.25])
    assert table["mean_score"].tolist() == pytest.approx([5 / 3, 1.0, 0.0])
    # alice: (a,m) 2 - mean(1, 0) = 1.5; (a,n) 1 - 1 = 0; (b,m) nobody else -> (1.5 + 0) / 2
    # bob:   (a,m) 1 - mean(2, 0) = 0;   (a,n) 1 - 1 = 0
    # carol: (a,m) 0 - mean(2, 1) = -1.5
    assert table["leniency"].tolist() == pytest.approx([0.75, 0.0, -1.5])
    assert table["shared_captions"].tolist() == [2, 2, 1]
    # alice m: (2 + 2) x 100 / (2 x 2) = 100, n: 1 x 100 / 2 = 50; bob 50 / 50; carol m 0, n none
    assert table["accuracy m"].tolist() == pytest.approx([100.0, 50.0, 0.0])
    assert table.loc["alice", "accuracy n"] == 50.0 and table.loc["bob", "accuracy n"] == 50.0
    assert math.isnan(table.loc["carol", "accuracy n"])


def test_a_lone_rater_has_no_leniency():
    table = rater_table(_ratings([("alice", "a", "m", 2)]), _captions(["a"], ["m"]))
    assert math.isnan(table.loc[0, "leniency"]) and table.loc[0, "shared_captions"] == 0


GOLD = pd.DataFrame({"image_hash": ["a", "a", "b", "b"], "model_name": ["m", "n", "n", "m"],
                     "gold_score": [2, 1, 0, None]})  # (b, m) has no gold score: not a gold item


def test_gold_agreement_by_hand():
    ratings = pd.concat([PER_RATER, _ratings([("dave", "b", "m", 1)])])
    table = gold_agreement(ratings, GOLD).set_index("rater")
    # alice: (a,m) 2 vs 2, (a,n) 1 vs 1 -> 2 rated, all exact, |diff| 0; kappa: po 1, pe 1/2 -> 1
    # bob:   (a,m) 1 vs 2, (a,n) 1 vs 1 -> exact 1/2, |diff| 1/2; kappa: po 1/2, pe 1 x 1/2 -> 0
    # carol: (a,m) 0 vs 2 -> exact 0, |diff| 2; kappa: po 0, pe 0 -> 0
    # dave rated no gold item
    assert table["gold_rated"].tolist() == [2, 2, 1, 0]
    assert table["gold_exact_match"].tolist()[:3] == pytest.approx([1.0, 0.5, 0.0])
    assert table["gold_mean_abs_diff"].tolist()[:3] == pytest.approx([0.0, 0.5, 2.0])
    assert table["gold_cohen_kappa"].tolist()[:3] == pytest.approx([1.0, 0.0, 0.0])
    assert table.loc["dave"].drop("gold_rated").isna().all()


def test_gold_kappa_is_undefined_with_one_score_throughout():
    table = gold_agreement(_ratings([("alice", "a", "m", 2)]), GOLD)
    assert table.loc[0, "gold_exact_match"] == 1.0 and math.isnan(table.loc[0, "gold_cohen_kappa"])


def test_bad_gold_is_explained():
    with pytest.raises(ValueError, match="gold scores must be 0, 1 or 2"):
        gold_agreement(PER_RATER, GOLD.assign(gold_score=[2, 1, 5, None]))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['gold_score'\]"):
        gold_agreement(PER_RATER, GOLD.drop(columns="gold_score"))


def test_rater_table_with_gold_puts_gold_columns_first():
    table = rater_table(PER_RATER, _captions(["a", "b"], ["m", "n"]), GOLD)
    assert list(table.columns[:5]) == ["rater", "gold_rated", "gold_exact_match", "gold_mean_abs_diff",
                                       "gold_cohen_kappa"]
    assert table["gold_rated"].tolist() == [2, 2, 1] and table["leniency"].tolist() == pytest.approx([0.75, 0, -1.5])


# ----------------------------------------------------------------------------------------------------------
# set_results with gold scores, and the exports


def test_set_results_uses_the_stores_gold_scores_and_exports_coverage(store, tmp_path, monkeypatch):
    _fill(store, "gold set", 2, ["m", "n"])
    for rater, image, model, score in [("alice", 0, "m", 2), ("alice", 0, "n", 1), ("bob", 0, "m", 1)]:
        store.rate("gold set", rater, _hash(image), model, score)
    assert sets.set_results(store, "gold set").gold is None  # no gold_scores method yet: no gold columns
    gold = pd.DataFrame({"image_hash": [_hash(0)], "model_name": ["m"], "gold_score": [2]})
    monkeypatch.setattr(store, "gold_scores", lambda name: gold, raising=False)
    found = sets.set_results(store, "gold set")
    raters = found.rater_table.set_index("rater")
    assert raters["gold_rated"].tolist() == [1, 1] and raters["gold_exact_match"].tolist() == [1.0, 0.0]
    # image 0 is rated for both models, image 1 for none: 1 common image, 2 of 4 captions rated
    assert found.summary["common_images"].tolist() == [1, 1] and "2 of 4" in found.message

    summary_csv, _, workbook_path, *_ = sets.export_set(store, "gold set", tmp_path)
    rows = list(csv.DictReader(io.StringIO(summary_csv.read_text(encoding="utf-8-sig"))))
    assert {"captions", "captions_rated", "coverage", "common_images", "accuracy_all", "note"} <= set(rows[0])
    by_model = {r["model"]: r for r in rows}
    # m: image 0 only, mean(2, 1) = 1.5 -> 75 %; n: 1 -> 50 %
    assert (by_model["m"]["captions_rated"], by_model["m"]["captions"], by_model["m"]["accuracy"]) == ("1", "2", "75.0")
    assert by_model["n"]["rank"] == "2" and by_model["n"]["coverage"] == "0.5"
    workbook = pd.read_excel(workbook_path, sheet_name=None)
    assert set(workbook) == {"Summary", "Ratings", "Raters", "Agreement"}
    assert workbook["Summary"]["captions_rated"].tolist() == [1, 1]
    assert workbook["Raters"]["rater"].tolist() == ["alice", "bob"] and "gold_rated" in workbook["Raters"]


def test_export_of_a_barely_rated_set_keeps_every_model(store, tmp_path):
    _fill(store, "big", 23, MODELS6)
    store.rate("big", "alice", _hash(0), "model-2", 2)
    summary_csv, _, workbook_path, *_ = sets.export_set(store, "big", tmp_path)
    rows = list(csv.DictReader(io.StringIO(summary_csv.read_text(encoding="utf-8-sig"))))
    assert sorted(r["model"] for r in rows) == MODELS6 and {r["rank"] for r in rows} == {""}
    assert sorted(r["captions_rated"] for r in rows) == ["0"] * 5 + ["1"]
    workbook = pd.read_excel(workbook_path, sheet_name=None)
    assert set(workbook) == {"Summary", "Ratings"}  # one rater, no gold: the per-rater sheet would repeat it
    assert len(workbook["Summary"]) == 6 and workbook["Summary"]["rank"].isna().all()
