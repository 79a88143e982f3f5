"""An evaluation set's life: open it, see how far a rater is, make an expert's scores gold, and its results and
exports. Every front end calls these plain functions: the page, the Gradio API, the REST server and
`python -m rating`. They take a `RatingStore` and plain values, return dataclasses, report user mistakes as
ValueError and never import a UI.

    open_set(store, name, rater, blind, preset)        -> SetInfo (an existing set keeps its blind flag, preset and
                                                          overlap)
    undo_new_set_on_failure(store, name)               -> a context: a set a failed action created is removed
    set_summary(store, name, rater)                    -> SetSummary (images, captions, rated by this rater)
    mark_gold(store, name, rater)                      -> a rater's scores become the captions' gold scores
    set_results(store, name)                           -> SetResults (coverage, raters, gold, metrics vs humans)
    results_table(summary) / rater_results_table(raters) -> the tables as the app and the CLI show them
    export_set(store, name, folder)                    -> the CSV and XLSX files

The rest of the workflow has a module each: who may see names or manage a set (`rating.access`), the rating
grid and its blind columns (`rating.grid`), a set's images and display copies (`rating.images`), captioning and
importing into a set (`rating.intake`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from captioning.generation import get_settings
from rating.exports import export_csv, export_xlsx, safe_frame
from rating.results import agreement, coverage_summary, rater_table
from rating.store import EvaluationSetNotFoundError, RatingStore
from rating.validation import DEFAULT_SCALE, parse_scale, validate_name

DEFAULT_PRESET = "consistent"


@dataclass(frozen=True)
class SetInfo:
    """An evaluation set as stored, and who opened it."""

    name: str
    rater: str
    blind: bool
    preset: str
    settings: dict[str, Any]
    created_at: str
    owner: str | None = None  # who created the set (None for a set from a database older than owners)
    overlap: int | None = None  # raters per caption (None: everyone rates everything)


@dataclass(frozen=True)
class SetSummary:
    """Counts for a set's status line."""

    name: str
    blind: bool
    preset: str
    images: int
    captions: int
    rated: int  # captions this rater has scored
    overlap: int | None = None  # raters per caption (None: everyone rates everything)


def open_set(store: RatingStore, name: str, rater: str, blind: bool = False, preset: str | None = None, *,
             owner: str | None = None, scale: tuple[int, int] | None = None, overlap: int | None = None) -> SetInfo:
    """Open the evaluation set `name` for `rater`, creating it (blind or not, with `preset`) if it is new.

    An existing set keeps the blind flag, preset and owner it was created with, so every rater rates under
    the same conditions; the returned SetInfo shows the stored values. A new set's owner is `owner` (the
    app passes the logged-in user when it has logins), else `rater`. A new set's score scale is `scale` (low,
    high; None = the app's 0-2), stored in its settings; its `overlap` is how many raters rate each caption
    (None: everyone rates everything), fixed like the blind flag. Raises ValueError for a bad name, an unknown
    preset or an overlap that is not a whole number of at least 1.
    """
    rater = validate_name(rater, "rater name")
    name = validate_name(name, "evaluation set name")
    preset = preset or DEFAULT_PRESET
    settings = get_settings(preset).to_dict()  # ValueError naming the presets for an unknown one
    if scale is not None and tuple(scale) != DEFAULT_SCALE:
        settings["scale"] = list(parse_scale(scale))
    info = store.create_or_open_set(name, blind=bool(blind), preset=preset, settings=settings,
                                    owner=owner or rater, overlap=overlap)
    return SetInfo(name=info["name"], rater=rater, blind=info["blind"], preset=info["preset"] or DEFAULT_PRESET,
                   settings=info["settings"], created_at=info["created_at"], owner=info["owner"],
                   overlap=info["overlap"])


def mark_gold(store: RatingStore, set_name: str, rater: str,
              pairs: Iterable[tuple[str, str]] | None = None) -> int:
    """Make `rater`'s scores the known (gold) scores of the captions they rated in `set_name`: every caption
    they rated, or only the given (image_hash, model_name) pairs. An expert rates a few captions, their
    scores become gold, and Results show each other rater's agreement with them; raters are not told which
    captions are gold. Returns how many captions' gold scores changed (marking again changes nothing).
    A pair the rater has not rated is refused, naming it."""
    rater = validate_name(rater, "rater name")
    ratings = store.ratings(set_name, rater)
    scores = {(h, m): int(score) for h, m, score in zip(ratings["image_hash"], ratings["model_name"],
                                                        ratings["score"])}
    if not scores:
        raise ValueError(f"{rater!r} has rated nothing in set {set_name!r}; rate some captions first "
                         f"(raters so far: {', '.join(store.raters(set_name)) or 'none'})")
    wanted = list(scores) if pairs is None else [tuple(pair) for pair in pairs]
    unrated = [pair for pair in wanted if pair not in scores]
    if unrated:
        raise ValueError(f"{rater!r} has not rated {len(unrated)} of the given captions (e.g. image "
                         f"{unrated[0][0][:12]}, model {unrated[0][1]}); only rated captions can become gold")
    return sum(store.set_gold_score(set_name, h, m, scores[(h, m)]) for h, m in wanted)


@contextmanager
def undo_new_set_on_failure(store: RatingStore, name: Any) -> Iterator[None]:
    """Run an action that may create the set `name` (captioning into it, importing into it): if the action
    fails and the set did not exist before it, the set is removed again, provided nothing was saved in it, so
    a failed first attempt leaves no empty set behind. An invalid name is left for the action to refuse."""
    try:
        store.get_set(name)  # one indexed look-up (list_sets would count every set's captions and ratings)
        existed = True
    except EvaluationSetNotFoundError:
        existed = False
    except ValueError:
        existed = True  # an invalid name: nothing can be created under it
    try:
        yield
    except BaseException:
        if not existed:
            store.delete_set_if_empty(name)
        raise


def set_summary(store: RatingStore, name: str, rater: str) -> SetSummary:
    """How many images and captions the set has, and how many of the captions `rater` has rated."""
    info = store.get_set(name)
    captions = store.get_captions(name)
    unrated = len(store.unrated_captions(name, rater))
    return SetSummary(name=info["name"], blind=info["blind"], preset=info["preset"] or DEFAULT_PRESET,
                      images=len({c["image_hash"] for c in captions}), captions=len(captions),
                      rated=len(captions) - unrated, overlap=info["overlap"])


# ----------------------------------------------------------------------------------------------------------
# Results and exports


@dataclass
class SetResults:
    """Everything the results view shows: raw ratings, the per-model table with coverage, the sentence that
    says what it rests on, the per-rater table and rater agreement."""

    ratings: pd.DataFrame
    summary: pd.DataFrame  # rating.results.coverage_summary(...).table: every model of the set
    agreement: dict[str, Any]  # rating.results.agreement
    raters: list[str]
    message: str = ""  # rating.results.coverage_summary(...).message
    rater_table: pd.DataFrame = field(default_factory=pd.DataFrame)  # rating.results.rater_table
    gold: pd.DataFrame | None = None  # the set's gold scores, when the store has any
    # Where images have reference captions: rating.metric_agreement.metric_agreement's two tables, else None.
    metric_models: pd.DataFrame | None = None  # per model: BLEU-4, CIDEr-D, BERTScore F1 beside human accuracy
    metric_tau: pd.DataFrame | None = None  # Kendall's tau between each metric and the mean human score
    scale: tuple[int, int] = DEFAULT_SCALE  # the set's score scale: accuracy is normalised by it
    reviewed: int = 0  # captions whose reviewed final score the accuracy table uses (0: raw ratings only)


def _gold_scores(store: RatingStore, set_name: str) -> pd.DataFrame | None:
    """The set's gold scores (image_hash, model_name, gold_score), or None when it has none."""
    gold = store.gold_scores(set_name)
    if gold is None or "gold_score" not in gold.columns or gold["gold_score"].notna().sum() == 0:
        return None
    return gold


def set_results(store: RatingStore, set_name: str, *, metrics: bool = True, metric_bertscore: bool = True,
                reviewed: bool = True) -> SetResults:
    """Per-model accuracy with coverage (model names shown, also for blind sets), per-rater figures (with
    agreement with gold when the set has gold scores) and agreement over every rater's scores; where images
    have reference captions, each model's BLEU-4, CIDEr-D and BERTScore (``metric_bertscore``) on them beside
    its human accuracy, and Kendall's tau between each metric and the human scores per caption (metrics=False:
    not computed, for callers that only show the other tables). With ``reviewed`` (the default) the accuracy
    table uses the final score of each reviewed caption instead of its raters' scores (`rating.review`), and
    its message says for how many; agreement and the per-rater table always rest on the raw ratings."""
    from .review import reviews_of, with_reviews

    ratings = store.ratings(set_name)
    captions = store.get_captions(set_name)
    scale = store.set_scale(set_name)
    finals = reviews_of(store, set_name) if reviewed else None
    used = 0 if finals is None else len(set(zip(finals["image_hash"], finals["model_name"]))
                                        & set(zip(ratings["image_hash"], ratings["model_name"])))
    coverage = coverage_summary(with_reviews(ratings, finals) if used else ratings, captions, scale=scale)
    message = coverage.message
    if used:
        message += (f" The accuracy uses the reviewed final score of {used} caption(s) in place of their raters' "
                    "scores (raw ratings are kept and exported).")
    gold = _gold_scores(store, set_name)
    metric_models = metric_tau = None
    references = store.references(set_name) if metrics else {}
    if references:
        from .metric_agreement import metric_agreement  # loads pycocoevalcap (and BERTScore) only when needed

        metric_models, metric_tau = metric_agreement(ratings, captions, references, bertscore=metric_bertscore,
                                                     scale=scale)
    return SetResults(ratings=ratings, summary=coverage.table, agreement=agreement(ratings, scale=scale),
                      raters=store.raters(set_name), message=message, reviewed=used,
                      rater_table=rater_table(ratings, captions, gold, scale=scale), gold=gold,
                      metric_models=metric_models, metric_tau=metric_tau, scale=scale)


def set_agreement(store: RatingStore, set_name: str, *, bertscore: bool = True, meteor: bool = True,
                  device: str | None = None) -> dict[str, Any]:
    """Kendall tau-c and tau-b of each automatic metric against the set's human scores, on one row per judgment
    and on per-caption means (`rating.metric_agreement`), with what they rest on: ``{"set", "scale",
    "judgments", "captions", "left_out", "tokenizer", "seconds", "metrics": [row per metric], "per_model":
    [...], "clipscore"}``. Raises ValueError when the set has no reference captions."""
    from .metric_agreement import metric_agreement

    references = store.references(set_name)
    if not references:
        raise ValueError(f"set {set_name!r} has no reference captions, so no metric can be computed; import a file "
                         "with a reference column, or a dataset split (python -m rating import-dataset)")
    scale = store.set_scale(set_name)
    report: dict[str, Any] = {}
    per_model, tau = metric_agreement(store.ratings(set_name), store.get_captions(set_name), references,
                                      bertscore=bertscore, meteor=meteor, device=device, scale=scale, report=report)
    rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in tau.to_dict("records")]
    return {"set": set_name, "scale": list(scale), "judgments": int(tau["n_judgments"].max()) if len(tau) else 0,
            "captions": int(tau["n_captions"].max()) if len(tau) else 0, "left_out": report.get("left_out", 0),
            "tokenizer": report.get("tokenizer"), "seconds": report.get("seconds", {}), "metrics": rows,
            "per_model": per_model.to_dict("records"),
            "clipscore": "not computed: it needs the images and CLIP weights (python -m trainer.evaluate --clipscore)"}


def _percent(value: float) -> float | None:
    return None if pd.isna(value) else round(float(value) * 100, 1)


def results_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as shown in the page: rounded, the interval in one column, coverage after it.

    The first columns keep their order for API clients: rank, model, images rated, total score (both over
    all the model's rated images), accuracy % (on the images rated for every model: ranked), 95% CI.
    Unranked models (no common image yet) show an empty rank, accuracy and interval.
    """
    has_coverage = "accuracy_all" in summary.columns  # a plain summary_table frame has no coverage columns

    def one(value: float) -> float | None:
        return None if pd.isna(value) else round(float(value), 1)

    shown = pd.DataFrame({
        "rank": [None if pd.isna(r) else int(r) for r in summary["rank"]], "model": summary["model"],
        "images rated": summary["images_rated"], "total score": summary["total"].round(2),
        "accuracy %": [one(a) for a in summary["accuracy"]],
        "95% CI": ["" if pd.isna(lo) or pd.isna(hi) else f"{lo:.1f} – {hi:.1f}"
                   for lo, hi in zip(summary["ci_low"], summary["ci_high"])]})
    if has_coverage:
        shown["common images"] = summary["common_images"]
        shown["accuracy % (all rated)"] = [one(a) for a in summary["accuracy_all"]]
        shown["captions rated"] = [f"{r} / {n}" for r, n in zip(summary["captions_rated"], summary["captions"])]
        shown["coverage %"] = [_percent(c) for c in summary["coverage"]]
        shown["note"] = summary["note"]
    return shown


def rater_results_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-rater table as shown in the page: progress and gold agreement in percent, rounded."""
    shown = pd.DataFrame({"rater": table["rater"],
                          "captions rated": [f"{r} / {n}" for r, n in zip(table["captions_rated"], table["captions"])],
                          "progress %": [_percent(p) for p in table["progress"]],
                          "mean score": table["mean_score"].round(2), "leniency": table["leniency"].round(2),
                          "shared captions": table["shared_captions"]})
    if "gold_rated" in table.columns:
        shown["gold rated"] = table["gold_rated"]
        shown["gold exact %"] = [_percent(v) for v in table["gold_exact_match"]]
        shown["gold mean |diff|"] = table["gold_mean_abs_diff"].round(2)
        shown["gold κ"] = table["gold_cohen_kappa"].round(3)
    for column in [c for c in table.columns if c.startswith("accuracy ")]:
        shown[column.replace("accuracy ", "accuracy % ", 1)] = table[column].round(1)
    return shown


def file_slug(name: str) -> str:
    """A set name made safe as a file name: 'coco val/50' -> 'coco-val-50'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "ratings"


def export_set(store: RatingStore, set_name: str, folder: str | os.PathLike) -> list[Path]:
    """Write `<slug>_summary.csv`, `<slug>_ratings.csv`, `<slug>.xlsx` (summary with coverage, every raw rating
    and, with two or more raters or gold scores, per-rater figures and agreement) and `<slug>_history.csv` (every
    change of a rating: who, when, old, new) into `folder`, plus `<slug>_reviews.csv` when the set has reviewed
    final scores; returns their paths in that order."""
    from .review import reviews_of

    results = set_results(store, set_name)
    folder = Path(folder)
    slug = file_slug(set_name)
    paths = export_csv(results.summary, results.ratings, folder / f"{slug}.csv")
    # With one rater and no gold items the per-rater sheet would only repeat the summary.
    per_rater = results.rater_table if len(results.raters) >= 2 or results.gold is not None else None
    paths.append(export_xlsx(results.summary, results.ratings, folder / f"{slug}.xlsx", agreement=results.agreement,
                             raters=per_rater))
    extra = [("history", store.history(set_name)), ("reviews", reviews_of(store, set_name))]
    for name, frame in extra:
        if name == "history" or len(frame):
            path = folder / f"{slug}_{name}.csv"
            safe_frame(frame).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
            paths.append(path)
    return paths
