"""Protects the numbers people report from the rating app: the accuracy table (totals, accuracy,
ranks with ties shared as 1, 2, 3, 3, 5, several raters averaged per image), the bootstrap interval
(contains the estimate, has the right width, is reproducible for a seed), rater agreement
(Krippendorff's alpha and Cohen's kappa against hand-computed values) and the accuracy chart."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from rating.results import SUMMARY_COLUMNS, accuracy_chart, agreement, summary_table


def _ratings(rows: list[tuple[str, str, str, int]]) -> pd.DataFrame:
    """Frame like RatingStore.ratings() from (rater, image_hash, model_name, score) tuples."""
    return pd.DataFrame(rows, columns=["rater", "image_hash", "model_name", "score"])


def _one_rater(scores_by_model: dict[str, list[int]]) -> pd.DataFrame:
    return _ratings([("alice", f"img{i}", model, score)
                     for model, scores in scores_by_model.items() for i, score in enumerate(scores)])


FIVE_MODELS = {
    "best": [2, 2, 2, 2],     # 8/8  -> 100.0, rank 1
    "second": [2, 2, 2, 1],   # 7/8  ->  87.5, rank 2
    "zeta": [2, 2, 1, 1],     # 6/8  ->  75.0, rank 3 (tie)
    "alpha": [1, 1, 2, 2],    # 6/8  ->  75.0, rank 3 (tie; listed first by name)
    "worst": [1, 0],          # 1/4  ->  25.0, rank 5, only two images rated
}


def test_summary_table_by_hand_with_ties():
    table = summary_table(_one_rater(FIVE_MODELS), n_bootstrap=200)
    assert list(table.columns) == SUMMARY_COLUMNS
    assert table["model"].tolist() == ["best", "second", "alpha", "zeta", "worst"]
    assert table["rank"].tolist() == [1, 2, 3, 3, 5]
    assert table["images_rated"].tolist() == [4, 4, 4, 4, 2]
    assert table["total"].tolist() == [8, 7, 6, 6, 1]
    assert table["accuracy"].tolist() == pytest.approx([100.0, 87.5, 75.0, 75.0, 25.0])
    assert table["rank"].dtype == "int64"


def test_several_raters_are_averaged_per_image():
    ratings = _ratings([
        ("alice", "img0", "m", 2), ("bob", "img0", "m", 1),  # mean 1.5
        ("alice", "img1", "m", 2),                            # one rater: 2
        ("alice", "img0", "n", 0), ("bob", "img0", "n", 1), ("carol", "img0", "n", 1),  # mean 2/3
        ("alice", "img1", "n", 1), ("bob", "img1", "n", 1), ("carol", "img1", "n", 2),  # mean 4/3
        ("alice", "img0", "k", 1),                            # 1/2 = 50%, same as n: a tie
    ])
    table = summary_table(ratings, n_bootstrap=100).set_index("model")
    assert table.loc["m", "images_rated"] == 2 and table.loc["m", "total"] == pytest.approx(3.5)
    assert table.loc["m", "accuracy"] == pytest.approx(87.5)
    assert table.loc["n", "total"] == pytest.approx(2.0) and table.loc["n", "accuracy"] == pytest.approx(50.0)
    # 2/3 + 4/3 is not exactly 2.0 in floating point; the tie must hold anyway
    assert table.loc["n", "rank"] == table.loc["k", "rank"] == 2


def test_bootstrap_interval_contains_estimate_and_has_the_right_width():
    # 50 images scored 0 and 50 scored 2: accuracy 50%, standard error 50 / sqrt(100) = 5 points,
    # so the 95% interval is about 50 +- 1.96 * 5 = [40.2, 59.8].
    ratings = _one_rater({"coin": [0, 2] * 50, "mixed": [0, 1, 2, 2] * 10})
    table = summary_table(ratings, n_bootstrap=2000, seed=0).set_index("model")
    coin = table.loc["coin"]
    assert coin["accuracy"] == pytest.approx(50.0)
    assert coin["ci_low"] == pytest.approx(40.2, abs=1.5) and coin["ci_high"] == pytest.approx(59.8, abs=1.5)
    for _, row in table.iterrows():
        assert row["ci_low"] < row["accuracy"] < row["ci_high"]


def test_bootstrap_is_deterministic_and_ignores_row_order():
    ratings = _one_rater({"a": [0, 1, 2, 2, 1, 0, 2], "b": [2, 2, 1, 2, 0, 2, 2]})
    first = summary_table(ratings, seed=7)
    again = summary_table(ratings.sample(frac=1.0, random_state=3), seed=7)
    pd.testing.assert_frame_equal(first, again)
    other_seed = summary_table(ratings, seed=8)
    assert not np.allclose(first[["ci_low", "ci_high"]], other_seed[["ci_low", "ci_high"]])
    # a model's interval does not move when another model is added
    only_a = summary_table(ratings[ratings.model_name == "a"], seed=7)
    assert only_a[["ci_low", "ci_high"]].values.tolist() == first.loc[first.model == "a", ["ci_low", "ci_high"]].values.tolist()


def test_bootstrap_edge_cases():
    constant = summary_table(_one_rater({"m": [2, 2, 2]}), n_bootstrap=50)
    assert (constant.loc[0, "ci_low"], constant.loc[0, "ci_high"]) == (100.0, 100.0)
    without = summary_table(_one_rater({"m": [0, 2]}), n_bootstrap=0)
    assert np.isnan(without.loc[0, "ci_low"]) and without.loc[0, "accuracy"] == 50.0
    with pytest.raises(ValueError, match="n_bootstrap must be an integer >= 0, got -1"):
        summary_table(_one_rater({"m": [0]}), n_bootstrap=-1)


def test_empty_and_malformed_ratings():
    empty = summary_table(_ratings([]))
    assert empty.empty and list(empty.columns) == SUMMARY_COLUMNS
    with pytest.raises(ValueError, match=r"missing column\(s\) \['score'\]"):
        summary_table(pd.DataFrame({"image_hash": ["a"], "model_name": ["m"]}))
    with pytest.raises(ValueError, match="scores must be 0, 1 or 2"):
        summary_table(_ratings([("alice", "img0", "m", 5)]))


def _two_raters(a: list[int], b: list[int]) -> pd.DataFrame:
    return _ratings([("alice", f"img{i}", "m", s) for i, s in enumerate(a)]
                    + [("bob", f"img{i}", "m", s) for i, s in enumerate(b)])


def test_agreement_perfect_raters():
    result = agreement(_two_raters([0, 1, 2, 2, 1, 0], [0, 1, 2, 2, 1, 0]))
    assert result["raters"] == 2 and result["items"] == 6
    assert result["krippendorff_alpha_ordinal"] == pytest.approx(1.0)
    assert result["cohen_kappa"] == pytest.approx(1.0)
    assert result["cohen_kappa_quadratic"] == pytest.approx(1.0)
    assert result["percent_agreement"] == 100.0
    assert "note" not in result


def test_agreement_disagreeing_raters_by_hand():
    # observed agreement 2/4; both raters use 0 once, 1 once, 2 twice -> chance (1 + 1 + 4) / 16;
    # kappa = (0.5 - 0.375) / (1 - 0.375) = 0.2
    result = agreement(_two_raters([0, 1, 2, 2], [0, 2, 2, 1]))
    assert result["cohen_kappa"] == pytest.approx(0.2)
    assert result["percent_agreement"] == pytest.approx(50.0)
    assert 0.2 < result["cohen_kappa_quadratic"] < 1.0  # near misses (1 vs 2) cost less when weighted
    assert result["krippendorff_alpha_ordinal"] < 1.0

    opposite = agreement(_two_raters([0, 2, 0, 2], [2, 0, 2, 0]))
    assert opposite["krippendorff_alpha_ordinal"] < 0 and opposite["cohen_kappa"] < 0


def test_agreement_three_raters_and_partial_overlap():
    ratings = _ratings([
        ("alice", "img0", "m", 2), ("bob", "img0", "m", 2), ("carol", "img0", "m", 2),
        ("alice", "img1", "m", 0), ("bob", "img1", "m", 0),
        ("alice", "img2", "m", 1),  # rated once: carries no agreement information
        ("carol", "img3", "m", 1), ("bob", "img3", "m", 1),
    ])
    result = agreement(ratings)
    assert result["raters"] == 3 and result["items"] == 3
    assert result["krippendorff_alpha_ordinal"] == pytest.approx(1.0)
    assert result["cohen_kappa"] is None and "exactly 2 raters" in result["note"]


def test_agreement_undefined_cases_say_why():
    single = agreement(_ratings([("alice", "img0", "m", 2)]))
    assert single["raters"] == 1 and single["krippendorff_alpha_ordinal"] is None
    assert "at least 2 raters" in single["note"]

    disjoint = agreement(_ratings([("alice", "img0", "m", 2), ("bob", "img1", "m", 2)]))
    assert disjoint["items"] == 0 and disjoint["krippendorff_alpha_ordinal"] is None and "no item" in disjoint["note"]

    same_score = agreement(_two_raters([2, 2, 2], [2, 2, 2]))  # no variation: chance agreement is total
    assert same_score["krippendorff_alpha_ordinal"] is None and same_score["cohen_kappa"] is None
    assert same_score["percent_agreement"] == 100.0 and "undefined" in same_score["note"]

    with pytest.raises(ValueError, match="duplicate ratings"):
        agreement(_ratings([("alice", "img0", "m", 2), ("alice", "img0", "m", 1)]))


def test_accuracy_chart_draws_one_bar_per_model():
    table = summary_table(_one_rater(FIVE_MODELS), n_bootstrap=100)
    figure = accuracy_chart(table)
    assert isinstance(figure, Figure)
    axes = figure.axes[0]
    heights = [patch.get_height() for patch in axes.patches]
    assert heights == pytest.approx(table["accuracy"].tolist())
    assert [label.get_text() for label in axes.get_xticklabels()] == table["model"].tolist()
    bars = next(c for c in axes.containers if isinstance(c, BarContainer))
    segments = bars.errorbar.lines[2][0].get_segments()  # one vertical (x, y) pair per bar
    assert [low for (_, low), _ in segments] == pytest.approx(table["ci_low"].tolist())
    assert [high for _, (_, high) in segments] == pytest.approx(table["ci_high"].tolist())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert buffer.getvalue().startswith(b"\x89PNG")

    empty = accuracy_chart(summary_table(_ratings([])))
    assert "No ratings yet" in [text.get_text() for text in empty.axes[0].texts]


def test_accuracy_chart_leaves_out_unranked_models():
    table = summary_table(_one_rater({"a": [2, 1], "b": [0, 0]}), n_bootstrap=0)
    table.loc[table["model"] == "b", "accuracy"] = float("nan")  # as coverage_summary leaves an unranked model
    axes = accuracy_chart(table).axes[0]
    assert [label.get_text() for label in axes.get_xticklabels()] == ["a"]
    assert [patch.get_height() for patch in axes.patches] == pytest.approx([75.0])
    none = accuracy_chart(table.assign(accuracy=float("nan")), empty_text="No image rated for every model yet")
    assert "No image rated for every model yet" in [text.get_text() for text in none.axes[0].texts]
