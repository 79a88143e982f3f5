"""Tests for rating/metric_agreement.py and its place in rating.sets.set_results.

Protects: Kendall's tau between each automatic metric and the mean human score per caption is +1 when the
metric orders the captions as the raters do, -1 when reversed, and the hand-computed tau-b otherwise; that
captions without references (or without a rating) are left out; that the per-model table reports the corpus
BLEU-4 / CIDEr-D of captioning.metrics and the human accuracy on the same images; that BERTScore runs offline
from the bundled MiniLM; and that set_results adds the tables only when the store has reference captions.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy.stats import kendalltau

from captioning.metrics import bertscore, bleu, caption_scores, cider, tokenize
from rating import intake, sets
from rating.metric_agreement import METRICS, PER_MODEL_COLUMNS, TAU_COLUMNS, metric_agreement
from rating.store import RatingStore

IMAGES = [f"{i:064x}" for i in range(5)]
REFERENCES = {
    # the first caption below is this image's first reference, so it is scored against the others
    IMAGES[0]: ["a brown dog runs across the green grass", "a dog running on a lawn",
                "a brown dog runs across the green lawn", "a brown dog runs on the green grass"],
    IMAGES[1]: ["a red car is parked on the side of the street", "a red car parked by the road"],
    IMAGES[2]: ["two people ride horses along the sandy beach", "two riders on horses at the beach"],
    IMAGES[3]: ["a plate of pasta with tomato sauce on a table", "a dish of spaghetti on a wooden table"],
}
# Best to worst on every metric (checked: BLEU-4 1.0 > 0.60 > 0.09 > 0.0, CIDEr-D and BERTScore F1 likewise).
CAPTIONS = [
    "a brown dog runs across the green grass",
    "a red car parked on the side of a road",
    "two people on a beach",
    "an old clock tower at night",
]


def refs_without(texts, images=IMAGES):
    """Each caption's references less the caption itself (a candidate among its references is scored against
    the others)."""
    return [[r for r in REFERENCES[image] if tokenize(r) != tokenize(text)] for image, text in zip(images, texts)]


def make_inputs(scores_per_image, model="alpha", captions=CAPTIONS, images=IMAGES):
    """ratings (one row per rater and caption) and captions for one model; scores_per_image[i] lists the
    raters' scores of image i (empty: not rated)."""
    ratings, caption_rows = [], []
    for image, caption, scores in zip(images, captions, scores_per_image):
        caption_rows.append({"image_hash": image, "model_name": model, "caption": caption})
        for r, score in enumerate(scores):
            ratings.append({"rater": f"rater{r}", "image_hash": image, "model_name": model, "score": score})
    return pd.DataFrame(ratings, columns=["rater", "image_hash", "model_name", "score"]), caption_rows


def tau_of(tau_table, metric):
    return float(tau_table.set_index("metric").loc[metric, "kendall_tau"])


def test_metric_order_agreeing_with_raters_gives_tau_one():
    ratings, captions = make_inputs([[2, 2], [2, 1], [1], [0, 0]])  # means 2, 1.5, 1, 0
    per_model, tau = metric_agreement(ratings, captions, REFERENCES, bertscore=False)
    assert list(tau.columns) == TAU_COLUMNS and list(tau["metric"]) == list(METRICS)
    assert tau_of(tau, "bleu4") == pytest.approx(1.0)
    assert tau_of(tau, "cider") == pytest.approx(1.0)
    assert math.isnan(tau_of(tau, "bertscore_f1"))  # turned off
    assert list(tau["n_captions"]) == [4] * len(METRICS)
    assert list(per_model.columns) == PER_MODEL_COLUMNS


def test_reversed_order_gives_tau_minus_one():
    ratings, captions = make_inputs([[0], [0, 1], [1], [2, 2]])  # means 0, 0.5, 1, 2
    _per_model, tau = metric_agreement(ratings, captions, REFERENCES, bertscore=False)
    assert tau_of(tau, "bleu4") == pytest.approx(-1.0)
    assert tau_of(tau, "cider") == pytest.approx(-1.0)


def test_one_swapped_pair_gives_the_hand_computed_tau():
    # Human means 2, 1.5, 0.5, 1 against a metric order 0 > 1 > 2 > 3: of the 6 pairs only (2, 3) is
    # discordant, no ties, so tau-b = (5 - 1) / 6.
    ratings, captions = make_inputs([[2], [2, 1], [1, 0], [1]])
    _per_model, tau = metric_agreement(ratings, captions, REFERENCES, bertscore=False)
    assert tau_of(tau, "bleu4") == pytest.approx(2 / 3)
    assert tau_of(tau, "cider") == pytest.approx(2 / 3)
    assert 0.0 < float(tau["p_value"].iloc[0]) <= 1.0


def test_captions_without_references_or_ratings_are_left_out():
    # Image 4 has no references and image 3 no rating; both would break the perfect order if counted.
    images = IMAGES[:3] + [IMAGES[4], IMAGES[3]]
    captions_text = CAPTIONS[:3] + ["an old clock tower at night", "a plate of pasta with tomato sauce"]
    ratings, captions = make_inputs([[2], [1, 2], [1], [2], []], captions=captions_text, images=images)
    references = dict(REFERENCES) | {IMAGES[4]: ["   ", "..."]}  # references without words count as none
    per_model, tau = metric_agreement(ratings, captions, references, bertscore=False)
    assert list(tau["n_captions"]) == [3] * len(METRICS)
    assert tau_of(tau, "bleu4") == pytest.approx(1.0)
    assert per_model["images_with_references"].tolist() == [3]
    # Human accuracy on those three images only: means 2, 1.5, 1 -> 4.5 * 100 / (3 * 2).
    assert per_model["human_accuracy"].tolist() == [pytest.approx(75.0)]


def test_per_model_table_reports_corpus_metrics_and_human_accuracy_on_the_same_images():
    good_ratings, good_captions = make_inputs([[2], [2], [1], [1]], model="good")
    bad_text = ["a cat sleeping on a sofa", "a red bus", "a city street at night", "a plate on a table"]
    bad_ratings, bad_captions = make_inputs([[0], [1], [0], [0]], model="bad", captions=bad_text)
    ratings = pd.concat([good_ratings, bad_ratings], ignore_index=True)
    per_model, tau = metric_agreement(ratings, good_captions + bad_captions, REFERENCES, bertscore=False)
    table = per_model.set_index("model")
    assert list(table.index) == ["bad", "good"]
    for model, texts in (("good", CAPTIONS), ("bad", bad_text)):
        refs = refs_without(texts)
        assert table.loc[model, "images_with_references"] == 4
        assert table.loc[model, "bleu4"] == pytest.approx(bleu(texts, refs)["bleu4"])
        assert table.loc[model, "cider"] == pytest.approx(cider(texts, refs)["cider"])
        assert math.isnan(table.loc[model, "bertscore_f1"])
    assert table.loc["good", "human_accuracy"] == pytest.approx(6 * 100 / 8)
    assert table.loc["bad", "human_accuracy"] == pytest.approx(1 * 100 / 8)
    assert table.loc["good", "bleu4"] > table.loc["bad", "bleu4"]
    assert list(tau["n_captions"]) == [8] * len(METRICS)  # pooled over both models
    # Pooled: both models' per-caption scores (one call: CIDEr's IDF over every caption's references) against
    # their captions' human means, in one tau.
    pooled = caption_scores(bad_text + CAPTIONS, refs_without(bad_text) + refs_without(CAPTIONS), use_bertscore=False)
    human = [0, 1, 0, 0, 2, 2, 1, 1]
    for key in ("bleu4", "cider"):
        assert tau_of(tau, key) == pytest.approx(kendalltau(pooled[key], human).statistic)


def test_no_caption_with_references_gives_empty_tables():
    ratings, captions = make_inputs([[2], [1], [1], [0]])
    per_model, tau = metric_agreement(ratings, captions, {IMAGES[4]: ["a dog"]}, bertscore=False)
    assert per_model.empty and list(per_model.columns) == PER_MODEL_COLUMNS
    assert tau.empty and list(tau.columns) == TAU_COLUMNS


def test_references_must_be_lists_of_captions():
    ratings, captions = make_inputs([[2], [1], [1], [0]])
    with pytest.raises(ValueError, match=r"is a str .*expected a list of captions"):
        metric_agreement(ratings, captions, {IMAGES[0]: "a dog"}, bertscore=False)


def test_bertscore_from_the_offline_minilm_agrees_with_the_raters(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ratings, captions = make_inputs([[2, 2], [2, 1], [1], [0, 0]])
    per_model, tau = metric_agreement(ratings, captions, REFERENCES, device="cpu")
    assert tau_of(tau, "bertscore_f1") == pytest.approx(1.0)
    expected = bertscore(CAPTIONS, refs_without(CAPTIONS), device="cpu")["bertscore_f1"]
    assert per_model["bertscore_f1"].tolist() == [pytest.approx(expected, abs=1e-6)]


# ------------------------------------------------------------------------------------------------
# set_results
# ------------------------------------------------------------------------------------------------

class StoreWithReferences:
    """A RatingStore plus the `references(set_name)` method reference captions add to the store."""

    def __init__(self, store: RatingStore, references: dict[str, list[str]]):
        self._store, self._references = store, references

    def __getattr__(self, name):
        return getattr(self._store, name)

    def references(self, set_name: str) -> dict[str, list[str]]:
        return self._references


@pytest.fixture()
def rated_store(tmp_path):
    with RatingStore(tmp_path / "ratings.sqlite") as store:
        store.create_or_open_set("s")
        for image, caption, score in zip(IMAGES, CAPTIONS, [2, 1, 1, 0]):
            store.save_caption("s", image, "alpha", caption, weights_hash=None, decoding=None)
            store.rate("s", "alice", image, "alpha", score)
        yield store


def test_set_results_adds_metric_tables_when_the_store_has_references(rated_store):
    found = sets.set_results(StoreWithReferences(rated_store, REFERENCES), "s", metric_bertscore=False)
    assert list(found.summary["model"]) == ["alpha"]  # the existing fields are unchanged
    assert found.metric_models["images_with_references"].tolist() == [4]
    assert found.metric_models["human_accuracy"].tolist() == [pytest.approx(50.0)]
    # Scores 2, 1, 1, 0 against a strict metric order: 5 concordant pairs, 0 discordant, one tie in the human
    # scores, so tau-b = 5 / sqrt(6 * (6 - 1)).
    assert tau_of(found.metric_tau, "bleu4") == pytest.approx(5 / math.sqrt(30))
    assert tau_of(found.metric_tau, "cider") == pytest.approx(5 / math.sqrt(30))


def test_set_results_without_references_has_no_metric_tables(rated_store):
    plain = sets.set_results(rated_store, "s")
    empty = sets.set_results(StoreWithReferences(rated_store, {}), "s")
    for found in (plain, empty):
        assert found.metric_models is None and found.metric_tau is None
        assert list(found.summary["model"]) == ["alpha"]


def test_references_imported_into_the_real_store_reach_the_results(tmp_path):
    # A captions file with scores by alice and a reference caption per image, imported without pictures:
    # set_results scores each model against the references and relates the metric to alice's scores.
    from rating import sets
    from rating.store import RatingStore

    rows = ["image_id,model_name,caption,score,reference",
            "a.png,good,a red circle on the left,2,a red circle on the left",
            "a.png,bad,two green triangles,0,one red circle on the left",
            "b.png,good,a blue square in the middle,2,a blue square in the middle",
            "b.png,bad,a yellow circle,0,one blue square in the middle"]
    csv_path = tmp_path / "scored.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    with RatingStore(tmp_path / "r.sqlite") as store:
        sets.open_set(store, "s", "alice")
        run = intake.import_captions_file(store, "s", csv_path, rater="alice")
        assert run.saved == 4
        assert sorted(len(v) for v in store.references("s").values()) == [2, 2]
        found = sets.set_results(store, "s", metric_bertscore=False)
    per_model = found.metric_models.set_index("model")
    assert per_model.loc["good", "human_accuracy"] == 100.0 and per_model.loc["bad", "human_accuracy"] == 0.0
    assert per_model.loc["good", "bleu4"] > per_model.loc["bad", "bleu4"]
    tau = found.metric_tau.set_index("metric")
    # The good captions are references of their image, so each is scored against the other reference ("one red
    # circle on the left": BLEU-4 below 1), as the literature's protocol does.
    texts = ["two green triangles", "a red circle on the left", "a yellow circle", "a blue square in the middle"]
    refs = [["a red circle on the left", "one red circle on the left"], ["one red circle on the left"],
            ["a blue square in the middle", "one blue square in the middle"], ["one blue square in the middle"]]
    direct = caption_scores(texts, refs, use_bertscore=False)  # sorted by image, then model: bad, good
    assert 0.5 < direct["bleu4"][1] < 1.0
    assert tau.loc["bleu4", "n_captions"] == 4 and tau.loc["bleu4", "n_judgments"] == 4
    for variant, column in (("b", "kendall_tau"), ("c", "tau_c")):
        expected = kendalltau(direct["bleu4"], [0, 2, 0, 2], variant=variant).statistic
        assert tau.loc["bleu4", column] == pytest.approx(expected)
