"""Do the automatic caption metrics agree with the raters? Each metric beside human accuracy, and Kendall's tau
between each metric and the human scores as the metric literature reports it.

Where a set's images have reference captions:

- ``caption_metric_scores`` scores every rated caption whose image has references with the per-caption
  (sentence-level) scores of ``captioning.metrics.caption_scores``: BLEU-1..4, METEOR (with Java, when
  asked), ROUGE-L, CIDEr-D (IDF over all those captions' references at once, as for a corpus) and BERTScore
  F1. A candidate that is itself among its image's references (same words, as the regex tokenizer sees them)
  is scored against the *other* references, as in the Flickr8k-Expert protocol; one with no other reference
  is left out and counted.
- ``metric_agreement`` gives ``per_model`` (for each model on its captions with references and a rating:
  images_with_references, bleu4 (corpus BLEU-4), cider (corpus CIDEr-D), bertscore_f1 (mean F1) and
  human_accuracy, normalised by the set's score scale as ``rating.results.summary_table``) and ``tau``: for
  each metric, Kendall's tau-c and tau-b (``scipy.stats.kendalltau``, variant "c" / "b") between the metric
  and the human scores, both on **one row per human judgment** (each rater's score of a caption against the
  caption's metric: the protocol of Hodosh et al. 2013's Flickr8k-Expert figures as the metric papers report
  them, e.g. CIDEr, SPICE, CLIPScore) and on **per-caption means** (one row per caption, the mean of its
  raters' scores), with the counts of judgments and captions used. ``kendall_tau`` is the tau-b on means,
  p_value scipy's two-sided test of it.

Tau is NaN with fewer than two rows or when either side has a single value (no ordering to compare).
CLIPScore needs the images and CLIP weights, which a judgment file does not bring; it is not computed here.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from captioning.metrics import bleu, caption_scores, cider, tokenize

from .results import DEFAULT_SCALE, per_image_scores, percent_of_scale

PER_MODEL_COLUMNS = ["model", "images_with_references", "bleu4", "cider", "bertscore_f1", "human_accuracy"]
TAU_COLUMNS = ["metric", "tau_c_judgments", "tau_b_judgments", "n_judgments", "tau_c", "kendall_tau", "n_captions",
               "p_value"]
METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider", "bertscore_f1")


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
    tau = pd.DataFrame({column: pd.Series(dtype=object if column == "metric" else
                                          "int64" if column.startswith("n_") else float) for column in TAU_COLUMNS})
    return per_model, tau


def kendall(metric: Sequence[float], human: Sequence[float], variant: str = "b") -> tuple[float, float]:
    """Kendall's tau (``variant`` "b" or "c", scipy) and its p-value; NaN when there is no ordering to compare."""
    from scipy.stats import kendalltau

    pairs = [(m, h) for m, h in zip(metric, human) if not (math.isnan(m) or math.isnan(h))]
    if len(pairs) < 2 or len({m for m, _ in pairs}) < 2 or len({h for _, h in pairs}) < 2:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on constant input; handled above, so nothing to add
        result = kendalltau([m for m, _ in pairs], [h for _, h in pairs], variant=variant)
    return float(result.statistic), float(result.pvalue)


def caption_metric_scores(
    ratings: pd.DataFrame,
    captions: Sequence[Mapping[str, Any]],
    references: Mapping[str, Sequence[str]],
    *,
    bertscore: bool = True,
    meteor: bool = False,
    device: str | None = None,
    scale: tuple[int, int] = DEFAULT_SCALE,
    report: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per rated caption whose image has references: image_hash, model_name, caption, human (mean of its
    raters' scores), ratings (how many), references_used, then one column per metric of METRICS (NaN for one
    not computed). ``report`` (when given) receives the tokenizer, per-step seconds and ``left_out``: captions
    whose only reference was the caption itself."""
    references = _usable_references(references)
    per_image = per_image_scores(ratings, scale=scale)  # model_name, image_hash, score (mean), ratings
    human = {(row.image_hash, row.model_name): (float(row.score), int(row.ratings))
             for row in per_image.itertuples(index=False)}
    rows, left_out = [], 0
    for entry in sorted(captions, key=lambda e: (str(e["image_hash"]), str(e["model_name"]))):
        key = (entry["image_hash"], entry["model_name"])
        if key[0] not in references or key not in human or not isinstance(entry.get("caption"), str):
            continue
        own = tokenize(entry["caption"])
        others = [ref for ref in references[key[0]] if tokenize(ref) != own]
        if not others:
            left_out += 1
            continue
        rows.append({"image_hash": key[0], "model_name": key[1], "caption": entry["caption"], "human": human[key][0],
                     "ratings": human[key][1], "references_used": others})
    if report is not None:
        report["left_out"] = left_out
    frame = pd.DataFrame(rows, columns=["image_hash", "model_name", "caption", "human", "ratings", "references_used"])
    for metric in METRICS:
        frame[metric] = pd.Series(dtype=float)
    if frame.empty:
        return frame
    scores = caption_scores(list(frame["caption"]), list(frame["references_used"]), use_bertscore=bertscore,
                            use_meteor=meteor, device=device, report=report)
    for metric in METRICS:
        frame[metric] = scores.get(metric, [float("nan")] * len(frame))
    return frame


def tau_table(scored: pd.DataFrame, ratings: pd.DataFrame) -> pd.DataFrame:
    """Kendall tau-c and tau-b of each metric against the human scores, on one row per judgment and on
    per-caption means, with the counts (TAU_COLUMNS); ``scored`` is ``caption_metric_scores``' frame."""
    judgments = ratings.assign(score=pd.to_numeric(ratings["score"]).astype(float)).merge(
        scored, on=["image_hash", "model_name"], how="inner")
    rows = []
    for metric in METRICS:
        if scored[metric].isna().all():
            tau_c = tau_b = tau_c_j = tau_b_j = p_value = float("nan")
        else:
            tau_c_j, _ = kendall(judgments[metric].tolist(), judgments["score"].tolist(), "c")
            tau_b_j, _ = kendall(judgments[metric].tolist(), judgments["score"].tolist(), "b")
            tau_c, _ = kendall(scored[metric].tolist(), scored["human"].tolist(), "c")
            tau_b, p_value = kendall(scored[metric].tolist(), scored["human"].tolist(), "b")
        rows.append({"metric": metric, "tau_c_judgments": tau_c_j, "tau_b_judgments": tau_b_j,
                     "n_judgments": len(judgments), "tau_c": tau_c, "kendall_tau": tau_b,
                     "n_captions": len(scored), "p_value": p_value})
    return pd.DataFrame(rows, columns=TAU_COLUMNS)


def metric_agreement(
    ratings: pd.DataFrame,
    captions: Sequence[Mapping[str, Any]],
    references: Mapping[str, Sequence[str]],
    *,
    bertscore: bool = True,
    meteor: bool = False,
    device: str | None = None,
    scale: tuple[int, int] = DEFAULT_SCALE,
    report: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per_model, tau) tables: each model's BLEU-4, CIDEr-D and BERTScore F1 beside its human accuracy on the
    images with references, and Kendall's tau-c / tau-b between each metric and the human scores (see the
    module docstring).

    ``ratings`` is ``RatingStore.ratings()`` (rater, image_hash, model_name, score), ``captions`` is
    ``RatingStore.get_captions()`` (image_hash, model_name, caption), ``references`` maps image_hash to its
    reference captions, ``scale`` is the set's score scale. Captions without references or without a rating
    are left out; ``bertscore=False`` skips BERTScore and ``meteor=False`` METEOR (their tau rows are then
    NaN). Both tables are empty when no caption qualifies.
    """
    scored = caption_metric_scores(ratings, captions, references, bertscore=bertscore, meteor=meteor,
                                   device=device, scale=scale, report=report)
    if scored.empty:
        return _empty_tables()
    rows = []
    for model, items in scored.groupby("model_name", sort=True):
        predictions, refs = list(items["caption"]), list(items["references_used"])
        rows.append({
            "model": model,
            "images_with_references": len(items),
            "bleu4": bleu(predictions, refs)["bleu4"],  # corpus BLEU-4, as the zoo reports it
            "cider": cider(predictions, refs)["cider"],  # corpus CIDEr-D over the model's own images
            "bertscore_f1": float(items["bertscore_f1"].mean()),
            "human_accuracy": float(percent_of_scale(math.fsum(items["human"]) / len(items), scale)),
        })
    return pd.DataFrame(rows, columns=PER_MODEL_COLUMNS), tau_table(scored, ratings)

