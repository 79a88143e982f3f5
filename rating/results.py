"""Turn human ratings into a per-model accuracy table, rater agreement and a chart.

Pure functions over the ratings DataFrame that ``RatingStore.ratings()`` returns (columns used here:
rater, image_hash, model_name, score). Scores are 0 (unrelated), 1 (partly right), 2 (fully accurate).

Accuracy of a model = total score / best possible total, in percent:
``accuracy = total * 100 / (images_rated * 2)``.

Several raters: each (image, model) pair first gets the *mean* of its raters' scores, so an image
counts once per model whatever the number of raters, and ``total`` is the sum of these means (it can
be fractional). The 95% interval is a percentile bootstrap over images (Efron & Tibshirani, 1993).

Agreement between raters follows Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability",
with the ordinal distance (0 < 1 < 2), and Cohen (1960/1968) kappa, unweighted and quadratic-weighted,
when there are exactly two raters.
"""
from __future__ import annotations

import warnings
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUMMARY_COLUMNS = ["model", "images_rated", "total", "accuracy", "rank", "ci_low", "ci_high"]
MAX_SCORE = 2
SCORE_LABELS = [0, 1, 2]
_BOOTSTRAP_CHUNK = 256  # resamples drawn at once; bounds memory at chunk * images


def _require_columns(ratings: pd.DataFrame, columns: list[str]) -> None:
    if not isinstance(ratings, pd.DataFrame):
        raise ValueError(f"ratings must be a pandas DataFrame, got {type(ratings).__name__}")
    missing = [column for column in columns if column not in ratings.columns]
    if missing:
        raise ValueError(
            f"ratings is missing column(s) {missing}; found {list(ratings.columns)}. "
            "Pass the frame from RatingStore.ratings()."
        )
    scores = pd.to_numeric(ratings["score"], errors="coerce")
    bad = ratings.loc[~scores.isin(SCORE_LABELS), "score"]
    if len(bad):
        raise ValueError(f"scores must be 0, 1 or 2; found {sorted(set(map(repr, bad)))[:5]}")


def per_image_scores(ratings: pd.DataFrame) -> pd.DataFrame:
    """One row per (model_name, image_hash) with the mean score over raters and the rater count."""
    _require_columns(ratings, ["image_hash", "model_name", "score"])
    frame = ratings.assign(score=pd.to_numeric(ratings["score"]).astype(float))
    grouped = frame.groupby(["model_name", "image_hash"], sort=True)["score"]
    return grouped.agg(score="mean", ratings="size").reset_index()


def _bootstrap_interval(scores: np.ndarray, n_bootstrap: int, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile interval of the accuracy (%) of ``scores``, resampling them with replacement."""
    if n_bootstrap == 0 or len(scores) == 0:
        return float("nan"), float("nan")
    accuracies = []
    for start in range(0, n_bootstrap, _BOOTSTRAP_CHUNK):
        size = min(_BOOTSTRAP_CHUNK, n_bootstrap - start)
        picks = rng.integers(0, len(scores), size=(size, len(scores)))  # (size, images)
        accuracies.append(scores[picks].mean(axis=1) * 100 / MAX_SCORE)  # (size,)
    low, high = np.percentile(np.concatenate(accuracies), [2.5, 97.5])
    return float(low), float(high)


def summary_table(ratings: pd.DataFrame, *, n_bootstrap: int = 2000, seed: int = 0) -> pd.DataFrame:
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
    per_image = per_image_scores(ratings)
    rows = []
    for model, group in per_image.groupby("model_name", sort=True):
        scores = group["score"].to_numpy(dtype=float)  # sorted by image hash: row order cannot matter
        images_rated = len(scores)
        total = float(scores.sum())
        # crc32 of the name, not hash(): Python salts str hashes per process
        rng = np.random.default_rng([int(seed), zlib.crc32(str(model).encode("utf-8"))])
        ci_low, ci_high = _bootstrap_interval(scores, int(n_bootstrap), rng)
        rows.append({
            "model": model,
            "images_rated": images_rated,
            "total": total,
            "accuracy": total * 100 / (images_rated * MAX_SCORE),
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


def agreement(ratings: pd.DataFrame) -> dict[str, Any]:
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
    _require_columns(ratings, ["rater", "image_hash", "model_name", "score"])
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
            reliability_data=values, level_of_measurement="ordinal", value_domain=SCORE_LABELS
        )
        result["krippendorff_alpha_ordinal"] = _none_if_nan(alpha)
        if n_raters == 2:
            both = values[:, ~np.isnan(values).any(axis=0)].astype(int)  # (2, items both rated)
            if both.shape[1]:
                result["cohen_kappa"] = _none_if_nan(cohen_kappa_score(both[0], both[1], labels=SCORE_LABELS))
                result["cohen_kappa_quadratic"] = _none_if_nan(
                    cohen_kappa_score(both[0], both[1], labels=SCORE_LABELS, weights="quadratic")
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


def accuracy_chart(summary: pd.DataFrame, *, title: str = "Caption accuracy by model") -> Figure:
    """Bar chart of accuracy (%) per model with the 95% bootstrap interval as error bars.

    Takes the frame from summary_table() and keeps its order (best first). Built on the Agg canvas
    without pyplot, so it is safe from any server thread and leaves no global figure behind.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    missing = [column for column in ("model", "accuracy") if column not in summary.columns]
    if missing:
        raise ValueError(f"summary is missing column(s) {missing}; pass the frame from summary_table()")
    figure = Figure(figsize=(max(4.0, 1.0 + 0.9 * len(summary)), 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 105)
    if summary.empty:
        axes.text(0.5, 0.5, "No ratings yet", ha="center", va="center", transform=axes.transAxes)
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
