"""Do the automatic caption metrics agree with the raters? BLEU-4, CIDEr-D and BERTScore beside human accuracy.

Where a set's images have reference captions, ``metric_agreement`` gives

- ``per_model``: for each model, on its captions whose image has references *and* at least one rating (so
  the metrics and the human accuracy rest on the same images): images_with_references (that count),
  bleu4 (corpus BLEU-4), cider (corpus CIDEr-D), bertscore_f1 (mean F1) and human_accuracy
  (total * 100 / (images * 2), as ``rating.results.summary_table``);
- ``tau``: Kendall's tau-b (``scipy.stats.kendalltau``) between each metric's per-caption score and the
  caption's mean human score, over every such caption of every model: 1 = the metric orders the captions as
  the raters do, -1 = the reverse; p_value is scipy's two-sided test of tau = 0, n_captions the captions used.

The metrics are those of ``captioning.metrics`` (its docstring says exactly how each is computed). CIDEr's IDF
comes from the references of the images it scores, so each model is scored over its own images with
references; its per-caption scores then average to its corpus CIDEr-D. Tau is NaN with fewer than two
captions or when either side has a single value (no ordering to compare).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from captioning.metrics import bleu, caption_scores, tokenize

from .results import MAX_SCORE, per_image_scores

PER_MODEL_COLUMNS = ["model", "images_with_references", "bleu4", "cider", "bertscore_f1", "human_accuracy"]
TAU_COLUMNS = ["metric", "kendall_tau", "p_value", "n_captions"]
METRICS = ("bleu4", "cider", "bertscore_f1")


def _usable_references(references: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """image_hash -> its reference captions that have words; images left with none are dropped (the metrics
    refuse a reference list with no words, and one odd image must not take the Results down)."""
    if not isinstance(references, Mapping):
        raise ValueError(f"references must be a dict of image_hash -> list of captions, got {type(references).__name__}")
    usable = {}
    for image_hash, captions in references.items():
        if isinstance(captions, str):
            raise ValueError(f"references[{image_hash!r}] is a str ({captions!r}); expected a list of captions")
        kept = [caption for caption in captions or [] if isinstance(caption, str) and tokenize(caption)]
        if kept:
            usable[image_hash] = kept
    return usable


def _empty_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    per_model = pd.DataFrame({column: pd.Series(dtype=object if column == "model" else float)
                              for column in PER_MODEL_COLUMNS}).astype({"images_with_references": "int64"})
    tau = pd.DataFrame({"metric": pd.Series(dtype=object), "kendall_tau": pd.Series(dtype=float),
                        "p_value": pd.Series(dtype=float), "n_captions": pd.Series(dtype="int64")})
    return per_model, tau


def _kendall(metric: list[float], human: list[float]) -> tuple[float, float]:
    """Kendall's tau-b and its p-value; NaN when there is no ordering to compare."""
    from scipy.stats import kendalltau

    if len(metric) < 2 or len(set(metric)) < 2 or len(set(human)) < 2:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input; handled above, so nothing to add
        result = kendalltau(metric, human, variant="b")
    return float(result.statistic), float(result.pvalue)


def metric_agreement(
    ratings: pd.DataFrame,
    captions: Sequence[Mapping[str, Any]],
    references: Mapping[str, Sequence[str]],
    *,
    bertscore: bool = True,
    device: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_model, tau) tables: each model's BLEU-4, CIDEr-D and BERTScore F1 beside its human accuracy on the
    images with references, and Kendall's tau between each metric and the mean human score per caption.

    ``ratings`` is ``RatingStore.ratings()`` (rater, image_hash, model_name, score), ``captions`` is
    ``RatingStore.get_captions()`` (image_hash, model_name, caption), ``references`` maps image_hash to its
    reference captions. Captions without references or without a rating are left out; ``bertscore=False``
    skips BERTScore (its column and tau row are then NaN). Both tables are empty when no caption qualifies.
    """
    references = _usable_references(references)
    per_image = per_image_scores(ratings)  # model_name, image_hash, score (mean over raters), ratings
    human = {(row.image_hash, row.model_name): float(row.score) for row in per_image.itertuples(index=False)}

    by_model: dict[str, list[tuple[str, str, float]]] = {}  # model -> (image_hash, caption, mean human score)
    for entry in captions:
        key = (entry["image_hash"], entry["model_name"])
        if key[0] in references and key in human and isinstance(entry.get("caption"), str):
            by_model.setdefault(entry["model_name"], []).append((key[0], entry["caption"], human[key]))
    if not by_model:
        return _empty_tables()

    rows, pooled = [], {metric: [] for metric in METRICS}
    pooled_human: list[float] = []
    for model in sorted(by_model):
        items = sorted(by_model[model])  # by image hash: row order of the inputs cannot matter
        predictions = [caption for _image, caption, _score in items]
        refs = [references[image] for image, _caption, _score in items]
        scores = caption_scores(predictions, refs, use_bertscore=bertscore, device=device)
        scores.setdefault("bertscore_f1", [float("nan")] * len(items))
        for metric in METRICS:
            pooled[metric] += scores[metric]
        human_scores = [score for _image, _caption, score in items]
        pooled_human += human_scores
        rows.append({
            "model": model,
            "images_with_references": len(items),
            "bleu4": bleu(predictions, refs)["bleu4"],  # corpus BLEU-4, as the zoo reports it
            "cider": math.fsum(scores["cider"]) / len(items),  # = corpus CIDEr-D
            "bertscore_f1": math.fsum(scores["bertscore_f1"]) / len(items),
            "human_accuracy": math.fsum(human_scores) * 100 / (len(items) * MAX_SCORE),
        })
    per_model = pd.DataFrame(rows, columns=PER_MODEL_COLUMNS)

    tau_rows = []
    for metric in METRICS:
        tau, p_value = (_kendall(pooled[metric], pooled_human) if metric != "bertscore_f1" or bertscore
                        else (float("nan"), float("nan")))
        tau_rows.append({"metric": metric, "kendall_tau": tau, "p_value": p_value, "n_captions": len(pooled_human)})
    return per_model, pd.DataFrame(tau_rows, columns=TAU_COLUMNS)
