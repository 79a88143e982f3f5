"""Tests for captioning/metrics.py: the caption metrics behind every number stored in the model zoo.

Protects: caption normalisation and tokenisation; that our PTB tokenization is pycocoevalcap's PTBTokenizer's
and BLEU equals pycocoevalcap's Bleu on the same tokens (so our numbers are the documented ones), with the regex
tokenizer as a stated fallback without Java; that BLEU, ROUGE-L, CIDEr and BERTScore give ~perfect scores to exact
matches, low scores to unrelated captions and rank a better caption above a worse one; that multiple
references are used; that bad inputs fail with errors naming what was received; that BERTScore runs offline
from the bundled MiniLM and loads it once; that the per-caption scores (caption_scores) follow the same
definitions (pycocoevalcap's per-sentence BLEU-n, ROUGE-L and CIDEr-D, BERTScore F1; ROUGE-L, CIDEr-D and F1
average to the corpus figures); and that METEOR degrades to None without Java.
"""
import logging
import subprocess
import sys

import pytest

from captioning import metrics
from captioning.metrics import (
    DEFAULT_BERTSCORE_MODEL,
    bertscore,
    bertscore_info,
    bleu,
    caption_scores,
    cider,
    coco_names,
    compute_metrics,
    default_bertscore_model_path,
    meteor,
    ptb_tokenize,
    resolve_tokenizer,
    rouge_l,
    scoring_text,
    tokenize,
)
from helpers import ROOT

# Three images with two references each; distinct enough that CIDEr's IDF is informative.
REFERENCES = [
    ["a brown dog runs across the green grass", "a dog running on a lawn"],
    ["a red car is parked on the side of the street", "a red car parked by the road"],
    ["two people ride horses along the sandy beach", "two riders on horses at the beach"],
    ["a plate of pasta with tomato sauce on a table", "a dish of spaghetti on a wooden table"],
]
GOOD = [
    "a brown dog runs across the grass",
    "a red car parked on the side of the street",
    "two people ride horses along the beach",
    "a plate of pasta with tomato sauce",
]
MEDIOCRE = [
    "a dog on the grass",
    "a car on the street",
    "people on a beach",
    "a plate on a table",
]
UNRELATED = [
    "an airplane flying over snowy mountains",
    "a bowl of fruit beside a laptop",
    "children playing football indoors",
    "an old clock tower at night",
]


# ------------------------------------------------------------------------------------------------
# Where the metrics live
# ------------------------------------------------------------------------------------------------

def test_metrics_load_without_gradio_trainer_or_app_and_trainer_reexports_them():
    # A fresh interpreter: the rating core imports these metrics, so they must not pull in the UI or trainer.
    code = ("import sys, captioning.metrics, rating.metric_agreement; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'gradio', 'trainer', 'app'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    import trainer.metrics

    assert trainer.metrics.compute_metrics is compute_metrics and trainer.metrics.caption_scores is caption_scores


# ------------------------------------------------------------------------------------------------
# Normalisation and tokenisation
# ------------------------------------------------------------------------------------------------

def test_normalize_caption_lowercases_strips_punctuation_and_collapses_spaces():
    assert scoring_text("  A Dog's   BALL!!  ") == "a dogs ball"
    assert scoring_text("Black-and-white photo, of a cat.") == "black and white photo of a cat"
    assert scoring_text("snake_case\tand\nnewlines") == "snake case and newlines"
    assert scoring_text("...!?") == ""


def test_tokenize_returns_normalised_words():
    assert tokenize("Two cats, sleeping on a SOFA.") == ["two", "cats", "sleeping", "on", "a", "sofa"]
    assert tokenize("") == []
    assert tokenize("Café au lait") == ["café", "au", "lait"]


# ------------------------------------------------------------------------------------------------
# BLEU
# ------------------------------------------------------------------------------------------------

needs_java = pytest.mark.skipif(metrics.shutil.which("java") is None, reason="no Java: the PTB tokenizer needs it")


def official_bleu(token_predictions, token_references):
    """pycocoevalcap's Bleu(4) on already tokenized captions: (corpus, per-sentence) as it returns them."""
    import contextlib
    import io

    from pycocoevalcap.bleu.bleu import Bleu

    with contextlib.redirect_stdout(io.StringIO()):
        return Bleu(4).compute_score({i: refs for i, refs in enumerate(token_references)},
                                     {i: [p] for i, p in enumerate(token_predictions)})


@needs_java
def test_ptb_tokenize_is_pycocoevalcaps_ptb_tokenizer():
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    texts = ["A skier's jump at 3:30 p.m.", "Mr. Smith doesn't like the black-and-white (old) TV!",
             "Two \"big\" dogs, a cat & a U.S. flag.", "  spaces\tand\nnewlines  ", "...", ""]
    official = PTBTokenizer().tokenize({i: [{"caption": t}] for i, t in enumerate(texts)})
    assert ptb_tokenize(texts) == [official[i][0] for i in range(len(texts))]
    assert ptb_tokenize(texts)[0] == "a skier 's jump at 3:30 p.m."  # not the regex's "a skiers jump at 3 30 p m"
    assert resolve_tokenizer("auto") == "ptb"
    with pytest.raises(ValueError, match=r"Unknown tokenizer 'nltk'; available tokenizers = \['auto', 'ptb', 'regex'\]"):
        resolve_tokenizer("nltk")


@needs_java
def test_bleu_matches_pycocoevalcap_bleu_on_ptb_tokens():
    predictions = ["A dog runs on the grass.", "A man rides a red bike!"]
    references = [["a dog is running on grass", "the dog's running on the grass"], ["a man riding a bike"]]
    token_predictions = ["a dog runs on the grass", "a man rides a red bike"]
    token_references = [["a dog is running on grass", "the dog 's running on the grass"], ["a man riding a bike"]]
    corpus, _ = official_bleu(token_predictions, token_references)
    scores = bleu(predictions, references)
    assert list(scores) == ["bleu1", "bleu2", "bleu3", "bleu4"]
    assert list(scores.values()) == pytest.approx(corpus, abs=1e-12)
    assert coco_names(scores) == {"Bleu_1": scores["bleu1"], "Bleu_2": scores["bleu2"], "Bleu_3": scores["bleu3"],
                                  "Bleu_4": scores["bleu4"]}
    # BLEU-n falls as n grows on an imperfect corpus, and the example is neither perfect nor zero.
    assert 1.0 > scores["bleu1"] > scores["bleu2"] > scores["bleu3"] > scores["bleu4"] > 0.0
    # the regex tokenizer, asked for by name, deletes the apostrophe instead ("dogs")
    regex_corpus, _ = official_bleu(token_predictions, [["a dog is running on grass", "the dogs running on the grass"],
                                                        ["a man riding a bike"]])
    assert list(bleu(predictions, references, tokenizer="regex").values()) == pytest.approx(regex_corpus, abs=1e-12)


def test_without_java_the_regex_tokenizer_stands_in_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    monkeypatch.setattr(metrics, "_ptb_unavailable", lambda: "no 'java' executable on PATH")
    report = {}
    with caplog.at_level(logging.WARNING, logger="captioning.metrics"):
        scores = compute_metrics(GOOD, REFERENCES, use_bertscore=False, report=report)
    assert report["tokenizer"] == "regex" and "regex tokenizer" in caplog.text
    assert metrics.metrics_info(use_bertscore=False)["tokenizer"] == "regex"
    assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}
    with pytest.raises(RuntimeError, match="java"):
        bleu(GOOD, REFERENCES, tokenizer="ptb")  # asked for by name: no quiet substitute


def test_rouge_l_is_one_for_a_reference_and_ranks_captions():
    assert rouge_l([refs[1] for refs in REFERENCES], REFERENCES)["rouge_l"] == pytest.approx(1.0)
    assert rouge_l(GOOD, REFERENCES)["rouge_l"] > rouge_l(MEDIOCRE, REFERENCES)["rouge_l"] > \
        rouge_l(UNRELATED, REFERENCES)["rouge_l"]


def test_bleu_perfect_for_identical_captions_and_low_for_unrelated():
    identical = bleu([refs[0] for refs in REFERENCES], REFERENCES)
    for key in ("bleu1", "bleu2", "bleu3", "bleu4"):
        assert identical[key] == pytest.approx(1.0)
    unrelated = bleu(UNRELATED, REFERENCES)
    assert unrelated["bleu4"] < 0.05
    assert unrelated["bleu1"] < 0.2


def test_bleu_uses_every_reference():
    # The prediction equals the *second* reference only; a scorer that used just the first would score < 1.
    assert bleu(["a dog running on a lawn"], [REFERENCES[0]])["bleu4"] == pytest.approx(1.0)


def test_bleu_and_cider_ignore_case_and_punctuation():
    shouted = [caption.upper() + "!" for caption in GOOD]
    assert bleu(shouted, REFERENCES) == bleu(GOOD, REFERENCES)
    assert cider(shouted, REFERENCES) == cider(GOOD, REFERENCES)


# ------------------------------------------------------------------------------------------------
# CIDEr
# ------------------------------------------------------------------------------------------------

def test_cider_high_for_identical_and_near_zero_for_unrelated():
    # Each prediction equals its only reference: CIDEr-D's cosine is 1 for every n, x10.
    single_refs = [[refs[0]] for refs in REFERENCES]
    assert cider([refs[0] for refs in REFERENCES], single_refs)["cider"] == pytest.approx(10.0)
    assert cider(UNRELATED, REFERENCES)["cider"] < 0.1  # only stop words like "at" and "of" are shared


def test_cider_is_zero_for_a_single_image_because_idf_needs_a_corpus():
    # Documented behaviour of CIDEr: IDF from one image is log(1/1) = 0 for every n-gram.
    assert cider([REFERENCES[0][0]], [REFERENCES[0]])["cider"] == 0.0


# ------------------------------------------------------------------------------------------------
# Ranking: a better caption scores higher on every metric
# ------------------------------------------------------------------------------------------------

def test_every_metric_ranks_good_above_mediocre_above_unrelated():
    good, mediocre, unrelated = (
        compute_metrics(captions, REFERENCES) for captions in (GOOD, MEDIOCRE, UNRELATED)
    )
    expected_keys = {
        "bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider",
        "bertscore_precision", "bertscore_recall", "bertscore_f1",
    }
    assert set(good) == expected_keys
    assert all(isinstance(value, float) for value in good.values())
    for key in expected_keys:
        assert good[key] > mediocre[key] > unrelated[key], (key, good[key], mediocre[key], unrelated[key])


# ------------------------------------------------------------------------------------------------
# BERTScore (one model load for the whole file thanks to the scorer cache)
# ------------------------------------------------------------------------------------------------

def test_default_bertscore_model_is_a_local_folder():
    path = default_bertscore_model_path()
    from pathlib import Path

    folder = Path(path)
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").is_file()
    assert (folder / "tokenizer.json").is_file() or (folder / "vocab.txt").is_file()
    assert metrics.resolve_bertscore_model(None) == path
    assert metrics.resolve_bertscore_model(DEFAULT_BERTSCORE_MODEL) == path
    assert metrics.resolve_bertscore_model("/some/other/model") == "/some/other/model"


def test_bertscore_identical_near_one_and_unrelated_lower_and_scorer_is_cached(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    identical = bertscore([refs[1] for refs in REFERENCES], REFERENCES, device="cpu")
    assert set(identical) == {"bertscore_precision", "bertscore_recall", "bertscore_f1"}
    assert identical["bertscore_f1"] > 0.99
    unrelated = bertscore(UNRELATED, REFERENCES, device="cpu")
    assert unrelated["bertscore_f1"] < identical["bertscore_f1"] - 0.3
    # Repeated calls (one per epoch) reuse the loaded scorer instead of reloading the encoder.
    cache = metrics._bertscore_scorer.cache_info()
    assert cache.currsize >= 1 and cache.hits >= 1


def test_bertscore_info_records_model_and_no_rescaling():
    info = bertscore_info()
    assert info["bertscore_model"] == DEFAULT_BERTSCORE_MODEL
    assert info["bertscore_rescaled"] is False
    assert info["bertscore_num_layers"] == 6
    assert bertscore_info(None)["bertscore_model"] == DEFAULT_BERTSCORE_MODEL


# ------------------------------------------------------------------------------------------------
# Input errors
# ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric", [bleu, cider, bertscore, meteor, compute_metrics])
def test_length_mismatch_quotes_both_lengths(metric):
    with pytest.raises(ValueError, match=r"2 predictions vs 3 reference lists"):
        metric(["a dog", "a cat"], [["a dog"], ["a cat"], ["a cow"]])


@pytest.mark.parametrize("metric", [bleu, cider, bertscore, compute_metrics])
def test_empty_predictions_rejected(metric):
    with pytest.raises(ValueError, match="predictions is empty"):
        metric([], [])


def test_flat_reference_list_is_explained():
    with pytest.raises(TypeError, match=r"references\[0\] is a str .*expected a list of reference captions"):
        bleu(["a dog"], ["a dog"])


def test_empty_reference_list_rejected():
    with pytest.raises(ValueError, match=r"references\[1\] must be a non-empty list"):
        cider(["a dog", "a cat"], [["a dog"], []])
    with pytest.raises(ValueError, match=r"references\[0\] has no words"):
        cider(["a dog"], [["...", ""]])


def test_non_string_prediction_rejected():
    with pytest.raises(TypeError, match=r"predictions\[1\] must be a str"):
        bleu(["a dog", None], [["a dog"], ["a cat"]])


def test_empty_prediction_scores_zero_not_crash():
    scores = compute_metrics(["", GOOD[1]], REFERENCES[:2], use_bertscore=False)
    assert 0.0 < scores["bleu1"] < 1.0
    assert scores["cider"] >= 0.0


# ------------------------------------------------------------------------------------------------
# Per-caption scores
# ------------------------------------------------------------------------------------------------

def test_caption_scores_give_one_value_per_caption_matching_the_corpus_definitions():
    predictions = [GOOD[0], MEDIOCRE[1], UNRELATED[2], GOOD[3]]
    report = {}
    scores = caption_scores(predictions, REFERENCES, use_bertscore=False, report=report)
    assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}
    assert all(len(values) == 4 and all(isinstance(v, float) for v in values) for values in scores.values())
    # BLEU-n per caption is pycocoevalcap's per-sentence BLEU-n on the same tokens (what COCO stores per image).
    tokens = metrics.tokenize_captions(predictions, REFERENCES, report["tokenizer"])
    _, per_sentence = official_bleu(tokens[0], tokens[1])
    for n in range(1, 5):
        assert scores[f"bleu{n}"] == pytest.approx(per_sentence[n - 1], abs=1e-12)
    # Corpus ROUGE-L and CIDEr-D are the means of the per-caption scores, which keep each caption's place.
    assert sum(scores["cider"]) / 4 == pytest.approx(cider(predictions, REFERENCES)["cider"], abs=1e-9)
    assert sum(scores["rouge_l"]) / 4 == pytest.approx(rouge_l(predictions, REFERENCES)["rouge_l"], abs=1e-9)
    for key in ("bleu4", "rouge_l", "cider"):
        good_1, mediocre, unrelated, good_2 = scores[key]
        assert min(good_1, good_2) > mediocre > unrelated, (key, scores[key])


def test_caption_scores_bertscore_f1_per_caption_averages_to_the_corpus_f1(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    predictions = [GOOD[0], UNRELATED[1], REFERENCES[2][1], MEDIOCRE[3]]
    scores = caption_scores(predictions, REFERENCES, device="cpu")
    f1 = scores["bertscore_f1"]
    assert len(f1) == 4
    assert f1[2] > 0.99  # equal to one of its references
    assert f1[1] < f1[0] and f1[1] < f1[2]
    corpus = bertscore(predictions, REFERENCES, device="cpu")["bertscore_f1"]
    assert sum(f1) / 4 == pytest.approx(corpus, abs=1e-6)


@pytest.mark.parametrize("use_bertscore", [False, True])
def test_caption_scores_reject_bad_inputs_like_the_corpus_metrics(use_bertscore):
    with pytest.raises(ValueError, match=r"2 predictions vs 3 reference lists"):
        caption_scores(["a dog", "a cat"], [["a dog"], ["a cat"], ["a cow"]], use_bertscore=use_bertscore)


# ------------------------------------------------------------------------------------------------
# METEOR (optional, Java)
# ------------------------------------------------------------------------------------------------

def test_meteor_returns_none_with_warning_without_java(monkeypatch, caplog):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="captioning.metrics"):
        assert meteor(GOOD, REFERENCES) is None
        scores = compute_metrics(GOOD, REFERENCES, use_bertscore=False, use_meteor=True)
    assert "java" in caplog.text.lower()
    assert "meteor" not in scores and "cider" in scores


def test_meteor_scores_exact_matches_near_one_when_java_is_available():
    if metrics.shutil.which("java") is None:
        pytest.skip("no Java on this machine; METEOR is optional")
    # One JVM start (~5-10 s), so a single call: exact matches score ~1 only if each prediction is paired
    # with its own references.
    scores = meteor([refs[0] for refs in REFERENCES], REFERENCES)
    assert scores is not None and set(scores) == {"meteor"}
    assert scores["meteor"] > 0.95
