"""Turn human ratings into a per-model accuracy table, coverage, per-rater figures, rater agreement and a chart.

Pure functions over the ratings DataFrame that ``RatingStore.ratings()`` returns (columns used here:
rater, image_hash, model_name, score). Scores are 0 (unrelated), 1 (partly right), 2 (fully accurate).

Accuracy of a model = total score / best possible total, in percent:
``accuracy = total * 100 / (images_rated * 2)``. A set may have another integer score scale (``scale=(low,
high)``, e.g. (1, 4) for Flickr8k-Expert judgments): scores are then checked against it and accuracy is
normalised by it, ``(mean score - low) * 100 / (high - low)`` (the same figure for the default 0-2).

Several raters: each (image, model) pair first gets the *mean* of its raters' scores, so an image
counts once per model whatever the number of raters, and ``total`` is the sum of these means (it can
be fractional). The 95% interval is a percentile bootstrap over images (Efron & Tibshirani, 1993).

Agreement between raters follows Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability",
with the ordinal distance (0 < 1 < 2), and Cohen (1960/1968) kappa, unweighted and quadratic-weighted,
when there are exactly two raters.

Coverage (``coverage_summary``): a set is often rated only in part, so every model of the set is listed
with the share of its captions rated, and models are ranked on the *common* images (rated for every
model), so that they are compared on the same images; with none, nobody is ranked. ``rater_table``
gives each rater's progress, accuracy per model and leniency; ``gold_agreement`` compares raters with
gold scores.
"""
from __future__ import annotations

import warnings
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUMMARY_COLUMNS = ["model", "images_rated", "total", "accuracy", "rank", "ci_low", "ci_high"]
MAX_SCORE = 2
SCORE_LABELS = [0, 1, 2]
DEFAULT_SCALE = (0, MAX_SCORE)  # the app's rubric: 0 unrelated, 1 partly right, 2 fully accurate
_BOOTSTRAP_CHUNK = 256  # resamples drawn at once; bounds memory at chunk * images


def check_scale(scale: Any) -> tuple[int, int]:
    """``scale`` as (low, high) integers with low < high, or ValueError saying what was received."""
    try:
        low, high = scale
    except (TypeError, ValueError):
        raise ValueError(f"a score scale is (low, high), e.g. (0, 2) or (1, 4); got {scale!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in (low, high)) or not low < high:
        raise ValueError(f"a score scale is two integers low < high, e.g. (0, 2) or (1, 4); got {scale!r}")
    return int(low), int(high)


def score_labels(scale: tuple[int, int] = DEFAULT_SCALE) -> list[int]:
    """Every score of the scale, lowest first: (1, 4) -> [1, 2, 3, 4]."""
    low, high = check_scale(scale)
    return list(range(low, high + 1))


def percent_of_scale(mean_score: Any, scale: tuple[int, int] = DEFAULT_SCALE) -> Any:
    """A mean score as a percentage of the scale: (mean - low) * 100 / (high - low); 0-2: mean * 50."""
    low, high = check_scale(scale)
    return (mean_score - low) * 100 / (high - low)


def _require_columns(ratings: pd.DataFrame, columns: list[str], scale: tuple[int, int] = DEFAULT_SCALE) -> None:
    if not isinstance(ratings, pd.DataFrame):
        raise ValueError(f"ratings must be a pandas DataFrame, got {type(ratings).__name__}")
    missing = [column for column in columns if column not in ratings.columns]
    if missing:
        raise ValueError(
            f"ratings is missing column(s) {missing}; found {list(ratings.columns)}. "
            "Pass the frame from RatingStore.ratings()."
        )
    scores = pd.to_numeric(ratings["score"], errors="coerce")
    labels = score_labels(scale)
    bad = ratings.loc[~scores.isin(labels), "score"]
    if len(bad):
        allowed = "0, 1 or 2" if labels == SCORE_LABELS else f"integers from {labels[0]} to {labels[-1]}"
        raise ValueError(f"scores must be {allowed}; found {sorted(set(map(repr, bad)))[:5]}")


def per_image_scores(ratings: pd.DataFrame, *, scale: tuple[int, int] = DEFAULT_SCALE) -> pd.DataFrame:
    """One row per (model_name, image_hash) with the mean score over raters and the rater count."""
    _require_columns(ratings, ["image_hash", "model_name", "score"], scale)
    frame = ratings.assign(score=pd.to_numeric(ratings["score"]).astype(float))
    grouped = frame.groupby(["model_name", "image_hash"], sort=True)["score"]
    return grouped.agg(score="mean", ratings="size").reset_index()


def _bootstrap_interval(scores: np.ndarray, n_bootstrap: int, rng: np.random.Generator,
                        scale: tuple[int, int] = DEFAULT_SCALE) -> tuple[float, float]:
    """95% percentile interval of the accuracy (%) of ``scores``, resampling them with replacement."""
    if n_bootstrap == 0 or len(scores) == 0:
        return float("nan"), float("nan")
    accuracies = []
    for start in range(0, n_bootstrap, _BOOTSTRAP_CHUNK):
        size = min(_BOOTSTRAP_CHUNK, n_bootstrap - start)
        picks = rng.integers(0, len(scores), size=(size, len(scores)))  # (size, images)
        accuracies.append(percent_of_scale(scores[picks].mean(axis=1), scale))  # (size,)
    low, high = np.percentile(np.concatenate(accuracies), [2.5, 97.5])
    return float(low), float(high)


def summary_table(ratings: pd.DataFrame, *, n_bootstrap: int = 2000, seed: int = 0,
                  scale: tuple[int, int] = DEFAULT_SCALE) -> pd.DataFrame:
    """Accuracy per model with rank and a bootstrap 95% interval, best model first.

    Columns: model, images_rated (distinct images rated for the model), total (sum over images of the
    mean score across raters), accuracy (total * 100 / (images_rated * 2)), rank (ties share the best
    rank: 1, 2, 3, 3, 5), ci_low, ci_high (2.5th and 97.5th percentiles of the accuracy over
    ``n_bootstrap`` resamples of the model's images; NaN when n_bootstrap is 0).

    The result does not depend on row order, and each model's interval depends only on its own
    ratings and ``seed`` (its generator is seeded with the seed and the model name).
    """
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be an integer >= 0, got {n_bootstrap!r}")
    per_image = per_image_scores(ratings, scale=scale)
    rows = []
    for model, group in per_image.groupby("model_name", sort=True):
        scores = group["score"].to_numpy(dtype=float)  # sorted by image hash: row order cannot matter
        images_rated = len(scores)
        total = float(scores.sum())
        # crc32 of the name, not hash(): Python salts str hashes per process
        rng = np.random.default_rng([int(seed), zlib.crc32(str(model).encode("utf-8"))])
        ci_low, ci_high = _bootstrap_interval(scores, int(n_bootstrap), rng, scale)
        rows.append({
            "model": model,
            "images_rated": images_rated,
            "total": total,
            "accuracy": float(percent_of_scale(total / images_rated, scale)),
            "ci_low": ci_low,
            "ci_high": ci_high,
        })
    if not rows:
        return pd.DataFrame({
            "model": pd.Series(dtype=object), "images_rated": pd.Series(dtype="int64"),
            "total": pd.Series(dtype=float), "accuracy": pd.Series(dtype=float),
            "rank": pd.Series(dtype="int64"), "ci_low": pd.Series(dtype=float), "ci_high": pd.Series(dtype=float),
        })
    table = pd.DataFrame(rows)
    # Round before ranking so that means like 1/3 + 2/3 and 1.0 tie as they should.
    table["rank"] = table["accuracy"].round(9).rank(method="min", ascending=False).astype("int64")
    table = table.sort_values(["rank", "model"], kind="stable").reset_index(drop=True)
    return table[SUMMARY_COLUMNS]


def _none_if_nan(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def agreement(ratings: pd.DataFrame, *, scale: tuple[int, int] = DEFAULT_SCALE) -> dict[str, Any]:
    """How much raters agree on the items (image, model pairs) that at least two of them rated.

    Returns a dict with:
    - ``raters``: number of distinct raters in ``ratings``;
    - ``items``: number of (image, model) items rated by at least two raters (the ones compared);
    - ``krippendorff_alpha_ordinal``: Krippendorff's alpha, ordinal, on the raters x items matrix
      (missing ratings are NaN), or None;
    - ``cohen_kappa`` and ``cohen_kappa_quadratic``: Cohen's kappa, unweighted and quadratic-weighted,
      on the items both rated, only when there are exactly two raters, else None;
    - ``percent_agreement``: share (%) of rater pairs on a shared item that gave the same score, or None;
    - ``note`` (only when something is None): why.

    1 means perfect agreement, 0 agreement at chance level, below 0 systematic disagreement.
    """
    _require_columns(ratings, ["rater", "image_hash", "model_name", "score"], scale)
    keys = ["rater", "image_hash", "model_name"]
    duplicated = ratings.duplicated(keys)
    if duplicated.any():
        example = ratings.loc[duplicated, keys].iloc[0].tolist()
        raise ValueError(f"each rater must rate an item once; found duplicate ratings, e.g. {example}")
    n_raters = int(ratings["rater"].nunique())
    result: dict[str, Any] = {
        "raters": n_raters,
        "items": 0,
        "krippendorff_alpha_ordinal": None,
        "cohen_kappa": None,
        "cohen_kappa_quadratic": None,
        "percent_agreement": None,
    }
    if n_raters < 2:
        result["note"] = f"agreement needs at least 2 raters; found {n_raters}"
        return result

    # (raters, items) matrix; NaN where a rater did not rate an item
    matrix = ratings.assign(score=pd.to_numeric(ratings["score"]).astype(float)).pivot_table(
        index="rater", columns=["image_hash", "model_name"], values="score", aggfunc="first"
    )
    shared = matrix.loc[:, matrix.notna().sum(axis=0) >= 2]
    result["items"] = int(shared.shape[1])
    if shared.shape[1] == 0:
        result["note"] = f"{n_raters} raters but no item was rated by two of them"
        return result

    values = shared.to_numpy()  # (raters, shared items)
    agree = pairs = 0
    for column in values.T:
        column = column[~np.isnan(column)]
        same = (column[:, None] == column[None, :]).sum() - len(column)  # ordered pairs, minus self
        agree += same // 2
        pairs += len(column) * (len(column) - 1) // 2
    result["percent_agreement"] = float(100.0 * agree / pairs)

    import krippendorff
    from sklearn.metrics import cohen_kappa_score

    notes = []
    with warnings.catch_warnings():
        # Both statistics divide by the expected disagreement, which is 0 when every score is the
        # same; they then warn and return NaN, which we report as None with a note.
        warnings.simplefilter("ignore")
        alpha = krippendorff.alpha(
            reliability_data=values, level_of_measurement="ordinal", value_domain=score_labels(scale)
        )
        result["krippendorff_alpha_ordinal"] = _none_if_nan(alpha)
        if n_raters == 2:
            both = values[:, ~np.isnan(values).any(axis=0)].astype(int)  # (2, items both rated)
            if both.shape[1]:
                result["cohen_kappa"] = _none_if_nan(cohen_kappa_score(both[0], both[1], labels=score_labels(scale)))
                result["cohen_kappa_quadratic"] = _none_if_nan(
                    cohen_kappa_score(both[0], both[1], labels=score_labels(scale), weights="quadratic")
                )
            if result["cohen_kappa"] is None:
                notes.append("Cohen's kappa is undefined (no shared items, or one score used throughout)")
        else:
            notes.append(f"Cohen's kappa needs exactly 2 raters; found {n_raters}")
    if result["krippendorff_alpha_ordinal"] is None:
        notes.append("Krippendorff's alpha is undefined when every shared rating has the same score")
    if notes:
        result["note"] = "; ".join(notes)
    return result


# ----------------------------------------------------------------------------------------------------------
# Coverage: results that say how much they rest on

COVERAGE_COLUMNS = [
    "model", "captions", "captions_rated", "coverage", "images_rated", "total", "accuracy_all",
    "common_images", "common_total", "accuracy", "rank", "ci_low", "ci_high", "note",
]


@dataclass
class CoverageSummary:
    """The per-model table of ``coverage_summary`` and the plain sentence that says what it rests on."""

    table: pd.DataFrame  # COVERAGE_COLUMNS, ranked models first (best first), then the unranked ones by name
    message: str
    common_images: int  # images rated for every model of the set: the ones ranks and ``accuracy`` use
    images: int  # images of the set
    captions: int  # captions of the set
    captions_rated: int  # captions with at least one rating


def _caption_frame(captions: pd.DataFrame | list[dict[str, Any]]) -> pd.DataFrame:
    frame = captions if isinstance(captions, pd.DataFrame) else pd.DataFrame(list(captions))
    missing = [column for column in ("image_hash", "model_name") if column not in frame.columns]
    if missing and len(frame):
        raise ValueError(
            f"captions is missing column(s) {missing}; found {list(frame.columns)}. "
            "Pass the rows of RatingStore.get_captions(set_name)."
        )
    if missing:
        return pd.DataFrame({"image_hash": pd.Series(dtype=object), "model_name": pd.Series(dtype=object)})
    return frame[["image_hash", "model_name"]].drop_duplicates()


def _ratings_needed(captions: pd.DataFrame, rated: set[tuple[str, str]], models: list[str]) -> int | None:
    """Fewest more caption ratings that give one image rated for every model, or None if no image can."""
    best = None
    for image, group in captions.groupby("image_hash", sort=False):
        if not set(models) <= set(group["model_name"]):
            continue  # this image lacks a caption from some model: it can never be common
        needed = sum((image, model) not in rated for model in models)
        best = needed if best is None else min(best, needed)
    return best


def coverage_summary(
    ratings: pd.DataFrame,
    captions: pd.DataFrame | list[dict[str, Any]],
    *,
    n_bootstrap: int = 2000,
    seed: int = 0,
    scale: tuple[int, int] = DEFAULT_SCALE,
) -> CoverageSummary:
    """Every model of the set with its coverage; ranks and headline accuracy on the images common to all.

    ``captions`` are the set's captions (``RatingStore.get_captions`` rows or a frame with image_hash and
    model_name); every model among them is listed, rated or not. Columns (COVERAGE_COLUMNS):
    captions (of the model in the set), captions_rated (with at least one rating), coverage
    (captions_rated / captions), images_rated, total and accuracy_all (over all the model's rated images,
    as ``summary_table``), common_images, common_total and accuracy (over the images rated for *every*
    model of the set, so models are compared on the same images: the headline), rank (on ``accuracy``,
    ties 1, 2, 3, 3, 5; NA when there is no common image), ci_low/ci_high (bootstrap over the common
    images), note (empty when the model's coverage is complete).
    """
    _require_columns(ratings, ["image_hash", "model_name", "score"], scale)
    caption_rows = _caption_frame(captions)
    set_models = sorted(set(caption_rows["model_name"]))
    models = sorted(set(set_models) | set(ratings["model_name"]), key=str)
    per_image = per_image_scores(ratings, scale=scale)
    rated_pairs = set(zip(per_image["image_hash"], per_image["model_name"]))

    # Images rated for every model of the set (a model without any rating leaves none).
    common: set[str] = set()
    if models:
        rated_by_model = per_image.groupby("model_name")["image_hash"].agg(set)
        common = set.intersection(*[rated_by_model.get(model, set()) for model in models])
    every = summary_table(ratings, n_bootstrap=0, seed=seed, scale=scale).set_index("model")
    on_common = summary_table(ratings[ratings["image_hash"].isin(common)], n_bootstrap=n_bootstrap,
                              seed=seed, scale=scale).set_index("model")
    in_set_pairs = set(zip(caption_rows["image_hash"], caption_rows["model_name"]))
    rated_in_set = Counter(model for _, model in rated_pairs & in_set_pairs)
    rows = []
    for model in models:
        in_set = int((caption_rows["model_name"] == model).sum())
        rated = rated_in_set.get(model, 0)
        images_rated = int(every.loc[model, "images_rated"]) if model in every.index else 0
        row: dict[str, Any] = {
            "model": model, "captions": in_set, "captions_rated": rated,
            "coverage": rated / in_set if in_set else float("nan"),
            "images_rated": images_rated,
            "total": float(every.loc[model, "total"]) if model in every.index else 0.0,
            "accuracy_all": float(every.loc[model, "accuracy"]) if model in every.index else float("nan"),
            "common_images": len(common),
        }
        if model in on_common.index:
            row.update(common_total=float(on_common.loc[model, "total"]),
                       accuracy=float(on_common.loc[model, "accuracy"]), rank=int(on_common.loc[model, "rank"]),
                       ci_low=float(on_common.loc[model, "ci_low"]), ci_high=float(on_common.loc[model, "ci_high"]))
        else:
            row.update(common_total=float("nan"), accuracy=float("nan"), rank=pd.NA,
                       ci_low=float("nan"), ci_high=float("nan"))
        if images_rated == 0:
            row["note"] = "no ratings yet; not ranked"
        elif not common:
            row["note"] = f"{rated} of {in_set} captions rated; not ranked: no image is rated for every model"
        elif rated < in_set:
            row["note"] = (f"partial: {rated} of {in_set} captions rated; ranked on the {len(common)} "
                           "image(s) common to all models")
        else:
            row["note"] = ""
        rows.append(row)
    table = pd.DataFrame(rows, columns=COVERAGE_COLUMNS)
    table["rank"] = table["rank"].astype("Int64")
    table["captions"] = table["captions"].astype("int64")
    table["captions_rated"] = table["captions_rated"].astype("int64")
    table["images_rated"] = table["images_rated"].astype("int64")
    table["common_images"] = table["common_images"].astype("int64")
    table["note"] = table["note"].astype(object)
    ranked = table["rank"].notna()
    table = pd.concat([table[ranked].sort_values(["rank", "model"], kind="stable"),
                       table[~ranked].sort_values("model", kind="stable")]).reset_index(drop=True)

    n_captions = len(caption_rows)
    n_rated = len(rated_pairs & in_set_pairs)
    n_images = int(caption_rows["image_hash"].nunique())
    message = _coverage_message(caption_rows, rated_pairs, set_models, len(common), n_images, n_captions, n_rated)
    return CoverageSummary(table=table, message=message, common_images=len(common), images=n_images,
                           captions=n_captions, captions_rated=n_rated)


def _coverage_message(captions: pd.DataFrame, rated: set[tuple[str, str]], models: list[str], common: int,
                      images: int, n_captions: int, n_rated: int) -> str:
    done = f"{n_rated} of {n_captions} caption(s) rated"
    if n_captions == 0:
        return "This set has no captions yet: add images and caption them (or import captions) first."
    if n_rated == 0:
        return f"No ratings in this set yet ({done}): rate captions on the Compare tab to see results."
    if common == 0:
        needed = _ratings_needed(captions, rated, models)
        if needed is None:
            how = "No image has a caption from every model, so the models cannot be compared on the same images."
        else:
            how = (f"Rate {needed} more caption(s), every model on the same image, to compare the "
                   f"{len(models)} models on one common image; rating all {n_captions - n_rated} remaining "
                   "caption(s) completes the set.")
        return (f"Results rest on too few images: {done}, and no image is rated for every model yet, "
                f"so the models are not ranked. {how}")
    if n_rated < n_captions:
        return (f"Coverage is incomplete ({done}): ranks and accuracy rest on the {common} image(s) rated for "
                f"every model, of {images} in the set (the accuracy over all of each model's rated images is shown "
                f"too); rate the {n_captions - n_rated} remaining caption(s) to complete the set.")
    return f"Every caption is rated ({done}): the models are compared on the same {common} image(s)."


# ----------------------------------------------------------------------------------------------------------
# Raters: accuracy per model, progress, leniency, agreement with gold items

RATER_COLUMNS = ["rater", "captions_rated", "captions", "progress", "mean_score", "leniency", "shared_captions"]
GOLD_COLUMNS = ["rater", "gold_rated", "gold_exact_match", "gold_mean_abs_diff", "gold_cohen_kappa"]


def rater_table(
    ratings: pd.DataFrame,
    captions: pd.DataFrame | list[dict[str, Any]],
    gold: pd.DataFrame | None = None,
    *,
    scale: tuple[int, int] = DEFAULT_SCALE,
) -> pd.DataFrame:
    """One row per rater: progress, leniency, accuracy per model and, given gold scores, agreement with gold.

    Columns: rater, captions_rated (captions of the set this rater scored), captions (of the set),
    progress (captions_rated / captions), mean_score, leniency (mean over the captions this rater shares
    with others of: their score minus the mean of the other raters' scores on that caption; > 0 means
    more lenient; NaN with no shared caption), shared_captions, then ``accuracy <model>`` (the rater's
    total x 100 / (images x 2) for that model; NaN where they rated none), then GOLD_COLUMNS after
    rater when ``gold`` is given (see ``gold_agreement``).
    """
    _require_columns(ratings, ["rater", "image_hash", "model_name", "score"], scale)
    caption_rows = _caption_frame(captions)
    in_set = set(zip(caption_rows["image_hash"], caption_rows["model_name"]))
    frame = ratings.assign(score=pd.to_numeric(ratings["score"]).astype(float))
    models = sorted(set(caption_rows["model_name"]) | set(frame["model_name"]), key=str)
    item = ["image_hash", "model_name"]
    sums = frame.groupby(item)["score"].agg(["sum", "size"])
    rows = []
    for rater, own in frame.groupby("rater", sort=True):
        own = own.drop_duplicates(item)
        keys = pd.MultiIndex.from_frame(own[item])
        # the others' mean on each caption: (sum - own) / (count - 1), where someone else rated it
        others = sums.reindex(keys)
        other_count = others["size"].to_numpy() - 1
        shared = other_count > 0
        own_scores = own["score"].to_numpy()
        other_mean = (others["sum"].to_numpy() - own_scores)[shared] / other_count[shared]
        row: dict[str, Any] = {
            "rater": rater,
            "captions_rated": sum((h, m) in in_set for h, m in zip(own["image_hash"], own["model_name"])),
            "captions": len(caption_rows),
            "mean_score": float(own_scores.mean()),
            "leniency": float((own_scores[shared] - other_mean).mean()) if shared.any() else float("nan"),
            "shared_captions": int(shared.sum()),
        }
        row["progress"] = row["captions_rated"] / row["captions"] if row["captions"] else float("nan")
        by_model = own.groupby("model_name")["score"].agg(["sum", "size"])
        for model in models:
            if model in by_model.index:
                row[f"accuracy {model}"] = float(percent_of_scale(by_model.loc[model, "sum"] / by_model.loc[model, "size"],
                                                                   scale))
            else:
                row[f"accuracy {model}"] = float("nan")
        rows.append(row)
    columns = RATER_COLUMNS + [f"accuracy {model}" for model in models]
    table = pd.DataFrame(rows, columns=columns)
    for column in ("captions_rated", "captions", "shared_captions"):
        table[column] = table[column].astype("int64")
    if gold is not None:
        table = table.merge(gold_agreement(ratings, gold, scale=scale), on="rater", how="left")
        table["gold_rated"] = table["gold_rated"].fillna(0).astype("int64")
        table = table[["rater", *GOLD_COLUMNS[1:], *columns[1:]]]
    return table


def gold_agreement(ratings: pd.DataFrame, gold: pd.DataFrame, *, scale: tuple[int, int] = DEFAULT_SCALE
                   ) -> pd.DataFrame:
    """Each rater's agreement with gold scores on the gold captions they rated.

    ``gold`` has columns image_hash, model_name, gold_score (0, 1 or 2; rows with no gold score are not
    gold items). Columns: rater, gold_rated (gold captions the rater scored), gold_exact_match (share
    0-1 of those where the score equals gold), gold_mean_abs_diff, gold_cohen_kappa (Cohen's unweighted
    kappa of rater vs gold; NaN when undefined: no gold rated, or one score used throughout).
    Every rater of ``ratings`` gets a row.
    """
    _require_columns(ratings, ["rater", "image_hash", "model_name", "score"], scale)
    if not isinstance(gold, pd.DataFrame):
        raise ValueError(f"gold must be a pandas DataFrame, got {type(gold).__name__}")
    missing = [c for c in ("image_hash", "model_name", "gold_score") if c not in gold.columns]
    if missing:
        raise ValueError(f"gold is missing column(s) {missing}; found {list(gold.columns)}. "
                         "Pass the frame from RatingStore.gold_scores(set_name).")
    gold = gold[["image_hash", "model_name", "gold_score"]].dropna(subset=["gold_score"])
    gold_values = pd.to_numeric(gold["gold_score"], errors="coerce")
    bad = gold.loc[~gold_values.isin(SCORE_LABELS), "gold_score"]
    if len(bad):
        raise ValueError(f"gold scores must be 0, 1 or 2; found {sorted(set(map(repr, bad)))[:5]}")
    gold = gold.assign(gold_score=gold_values.astype(int)).drop_duplicates(["image_hash", "model_name"])
    joined = ratings.assign(score=pd.to_numeric(ratings["score"]).astype(int)).merge(
        gold, on=["image_hash", "model_name"], how="inner")

    from sklearn.metrics import cohen_kappa_score

    rows = []
    for rater in sorted(ratings["rater"].unique(), key=str):
        mine = joined[joined["rater"] == rater]
        row: dict[str, Any] = {"rater": rater, "gold_rated": len(mine), "gold_exact_match": float("nan"),
                               "gold_mean_abs_diff": float("nan"), "gold_cohen_kappa": float("nan")}
        if len(mine):
            score, truth = mine["score"].to_numpy(), mine["gold_score"].to_numpy()
            row["gold_exact_match"] = float((score == truth).mean())
            row["gold_mean_abs_diff"] = float(np.abs(score - truth).mean())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # kappa divides by 0 when one score is used throughout
                row["gold_cohen_kappa"] = float(cohen_kappa_score(
                    score, truth, labels=sorted(set(score_labels(scale)) | set(SCORE_LABELS))))
        rows.append(row)
    table = pd.DataFrame(rows, columns=GOLD_COLUMNS)
    table["gold_rated"] = table["gold_rated"].astype("int64")
    return table


def accuracy_chart(summary: pd.DataFrame, *, title: str = "Caption accuracy by model",
                   empty_text: str = "No ratings yet") -> Figure:
    """Bar chart of accuracy (%) per model with the 95% bootstrap interval as error bars.

    Takes the frame from summary_table() or coverage_summary().table and keeps its order (best first);
    models without an accuracy (unranked) get no bar, and ``empty_text`` shows when none has one. Built on the Agg canvas
    without pyplot, so it is safe from any server thread and leaves no global figure behind.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    missing = [column for column in ("model", "accuracy") if column not in summary.columns]
    if missing:
        raise ValueError(f"summary is missing column(s) {missing}; pass the frame from summary_table()")
    summary = summary[pd.to_numeric(summary["accuracy"], errors="coerce").notna()]
    figure = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(summary)), 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 105)
    if summary.empty:
        axes.text(0.5, 0.5, empty_text, ha="center", va="center", transform=axes.transAxes)
        axes.set_xticks([])
        return figure

    accuracy = summary["accuracy"].to_numpy(dtype=float)
    positions = np.arange(len(summary))
    error = None
    if {"ci_low", "ci_high"} <= set(summary.columns):
        low = np.nan_to_num(accuracy - summary["ci_low"].to_numpy(dtype=float), nan=0.0)
        high = np.nan_to_num(summary["ci_high"].to_numpy(dtype=float) - accuracy, nan=0.0)
        error = np.vstack([np.clip(low, 0, None), np.clip(high, 0, None)])  # (2, models)
    bars = axes.bar(positions, accuracy, yerr=error, capsize=4, color="#4C72B0")
    axes.bar_label(bars, labels=[f"{value:.1f}" for value in accuracy], padding=2, fontsize=8)
    axes.set_xticks(positions, [str(model) for model in summary["model"]], rotation=30, ha="right")
    return figure
