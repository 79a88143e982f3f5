"""Pairwise mode: two models' captions of one image side by side (names hidden), the rater picks the better one.

Votes are stored by `RatingStore.vote` / read by `RatingStore.votes` (table `pairwise_votes`); outcomes are
"a" (A better), "b" (B better), "both_good" and "both_bad". Any evaluation set can be judged pairwise: the
votes do not depend on a mode flag of the set, so a set rated 0/1/2 can be compared pairwise too.

Scheduling (the same for every rater, so their votes are on the same items and agreement can be read):

    pair_schedule(images, models, seed)      -> every pair of models on every image (N * C(M, 2) items), image
                                                by image, or `pairs_per_image=k` pairs dealt round-robin; every
                                                prefix compares every pair equally often (+-1)
    display_order(set, image, pair)          -> which model is A and which is B, random but fixed per item
    set_schedule(store, set)                 -> a set's schedule, from its captions
    next_pair(store, set, rater)             -> the rater's next item, None when all are voted on; a pair whose two
                                                captions are identical (up to whitespace and case) is never shown:
                                                record_identical_pairs stores a tie for it ("both_good")
    pair_status(store, set, rater)           -> done (identical pairs included), total, identical, finished
    pair_progress(store, set, rater)         -> (done, total)

Results, pure functions over the votes DataFrame (ties count half a win to each side, as LMSYS's arena does):

    win_counts(votes)                        -> models, W with W[i, j] = wins of i over j (+ half the ties)
    fit_bradley_terry(W, ridge)              -> log-strengths theta (maximum likelihood, centred)
    bt_ratings(votes)                        -> Elo-like scale: 1000 + 400 * log10(strength / mean), so a
                                                200-point gap means the higher one wins 1 / (1 + 10^-0.5) = 76%
    bootstrap_ratings(votes, rounds, seed)   -> one row of ratings per resample of the votes
    leaderboard(votes, rounds, seed)         -> rank (ties when intervals overlap), rating, 95% interval, counts
    win_rate_matrix(votes)                   -> model x model share of wins (ties half), NaN where never met
    set_pairwise_results(store, set) / export_set_pairwise(store, set, folder)
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from rating.exports import export_pairwise
from rating.store import RatingStore
from rating.validation import PAIRWISE_OUTCOMES

ELO_SCALE = 400.0  # points per factor of 10 in strength (chess / LMSYS convention)
ELO_ANCHOR = 1000.0  # the mean rating
DEFAULT_RIDGE = 1e-3  # a very weak prior on log-strengths: a model that never won stays finite (see fit_bradley_terry)
DEFAULT_ROUNDS = 1000  # bootstrap resamples, as LMSYS's leaderboard uses
# The tie stored, without asking, for a pair whose two captions are identical (record_identical_pairs). The store
# takes only PAIRWISE_OUTCOMES (a CHECK in its schema); a dedicated "identical" outcome would need a migration
# there. Both ties count half a win to each side in every result, so the choice changes no rating; "both_good"
# as the captions are equally good in the only sense known without a judge.
AUTO_TIE_OUTCOME = "both_good"
OUTCOME_LABELS = {"a": "A is better", "b": "B is better", "both_good": "Both good", "both_bad": "Both bad"}
LEADERBOARD_COLUMNS = ["rank", "model", "rating", "ci_low", "ci_high", "votes", "wins", "ties", "losses", "win_rate"]


# ----------------------------------------------------------------------------------------------------------
# Scheduling


@dataclass(frozen=True)
class ScheduledPair:
    """One item of the schedule: an image and an unordered pair of models (model_x < model_y)."""

    image_hash: str
    model_x: str
    model_y: str


def _seed_of(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def pair_schedule(images: Iterable[str], models: Iterable[str], seed: int | str, *,
                  pairs_per_image: int | None = None, available: Mapping[str, Iterable[str]] | None = None
                  ) -> list[ScheduledPair]:
    """Which pairs of models each image is judged on, and in which order: by default every pair on every image.

    The C(M, 2) pairs are put in a seeded random order (the rotation) and images in a seeded random order too,
    so a rater who stops early has judged a random sample of the images. Image by image, the schedule lists the
    image's pairs as a window of the rotation:
    - pairs_per_image=None (all): every pair on every image, N * C(M, 2) items. Each image's window starts one
      pair later than the previous image's, so no pair is always judged first (rater fresh) or last on an image.
    - pairs_per_image=k (a limit): k pairs per image, the next image's window starting where this one ended,
      so the windows tile the rotation and every pair is judged on N * k / C(M, 2) images, +-1.
    In both cases every prefix of the schedule compares every pair equally often, +-1. `available[image]`
    (optional) names the models with a caption for that image; pairs missing one are skipped for that image
    (with a limit, the window goes on to the next pair instead).
    """
    if pairs_per_image is not None and pairs_per_image < 1:
        raise ValueError(f"pairs_per_image must be >= 1, or None for every pair on every image; got {pairs_per_image}")
    pairs = list(itertools.combinations(sorted(set(models)), 2))
    if not pairs:
        return []
    rng = random.Random(str(seed))
    rng.shuffle(pairs)
    order = sorted(set(images))
    rng.shuffle(order)
    every_pair = pairs_per_image is None or pairs_per_image >= len(pairs)
    per_image = len(pairs) if every_pair else pairs_per_image
    schedule: list[ScheduledPair] = []
    pointer = 0  # where the next image's window starts in the rotation
    for image in order:
        has = None if available is None else set(available.get(image, ()))
        taken = 0
        for step in range(len(pairs)):
            if taken == per_image:
                break
            x, y = pairs[(pointer + step) % len(pairs)]
            if has is None or (x in has and y in has):
                schedule.append(ScheduledPair(image, x, y))
                taken += 1
                last = step
        if taken:
            pointer = (pointer + (1 if every_pair else last + 1)) % len(pairs)
    return schedule


def display_order(eval_set: str, image_hash: str, model_x: str, model_y: str) -> tuple[str, str]:
    """(model shown as A, model shown as B): random, but the same for every rater and every restart.

    Seeded by set, image and the unordered pair only (the grid's blind columns, rating.grid.column_order, are
    also seeded per rater).
    """
    low, high = sorted((model_x, model_y))
    rng = random.Random(_seed_of(eval_set, image_hash, low, high))
    return (low, high) if rng.random() < 0.5 else (high, low)


def normalise_caption(caption: str) -> str:
    """A caption as compared for identity: whitespace runs as one space, no leading/trailing space, case folded."""
    return " ".join(caption.split()).casefold()


def identical_captions(caption_x: str, caption_y: str) -> bool:
    """Whether two captions are the same text up to whitespace and case (such a pair is never shown: see
    record_identical_pairs)."""
    return normalise_caption(caption_x) == normalise_caption(caption_y)


def _captions_by_image(store: RatingStore, eval_set: str) -> dict[str, dict[str, dict[str, Any]]]:
    """image hash -> model -> its caption row (RatingStore.get_captions), read once per call of the functions below."""
    captions: dict[str, dict[str, dict[str, Any]]] = {}
    for c in store.get_captions(eval_set):
        captions.setdefault(c["image_hash"], {})[c["model_name"]] = c
    return captions


def _schedule_of(eval_set: str, captions: Mapping[str, Mapping[str, Any]], pairs_per_image: int | None
                 ) -> list[ScheduledPair]:
    models = {model for by_model in captions.values() for model in by_model}
    return pair_schedule(captions, models, _seed_of("pairwise", eval_set), pairs_per_image=pairs_per_image,
                         available=captions)


def set_schedule(store: RatingStore, eval_set: str, pairs_per_image: int | None = None) -> list[ScheduledPair]:
    """The pairwise schedule of a set, from its captions (every pair of models on every image unless limited);
    seeded by the set's name, so it never changes for the captions it has (new images or models extend or
    re-deal it)."""
    return _schedule_of(eval_set, _captions_by_image(store, eval_set), pairs_per_image)


@dataclass(frozen=True)
class PairView:
    """What the pairwise page shows for one item; model_a / model_b must stay on the server."""

    image_hash: str
    file_name: str
    image_path: str | None  # the display copy, None when it is not in the image folder
    model_a: str
    model_b: str
    caption_a: str
    caption_b: str
    done: int  # items of the schedule this rater has voted on, the identical pairs included
    total: int  # items in the schedule
    identical: int = 0  # items whose two captions are identical: recorded as ties for the rater, never shown


@dataclass(frozen=True)
class PairProgress:
    """Where a rater stands on a set's schedule (pair_status)."""

    done: int  # items voted on, the identical pairs included (a tie is recorded for them, see record_identical_pairs)
    total: int  # items in the schedule: every pair of models on every image (unless limited)
    identical: int  # items whose two captions are identical: ties recorded without asking

    @property
    def finished(self) -> bool:
        """Every item voted: next_pair returns None (also true of an empty schedule, total == 0)."""
        return self.done >= self.total


def _voted(store: RatingStore, eval_set: str, rater: str) -> set[tuple[str, str, str]]:
    votes = store.votes(eval_set, rater)
    return {(h, *sorted((a, b))) for h, a, b in zip(votes["image_hash"], votes["model_a"], votes["model_b"])}


def _is_identical(item: ScheduledPair, captions: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> bool:
    by_model = captions[item.image_hash]
    return identical_captions(by_model[item.model_x]["caption"], by_model[item.model_y]["caption"])


def _status(schedule: list[ScheduledPair], captions: Mapping[str, Mapping[str, Mapping[str, Any]]],
            voted: set[tuple[str, str, str]]) -> PairProgress:
    # An identical pair counts as done even before its tie is stored, so progress read before next_pair (which
    # stores the ties) agrees with progress read after it.
    identical = [_is_identical(p, captions) for p in schedule]
    done = sum(same or (p.image_hash, p.model_x, p.model_y) in voted for p, same in zip(schedule, identical))
    return PairProgress(done=done, total=len(schedule), identical=sum(identical))


def pair_status(store: RatingStore, eval_set: str, rater: str, *, pairs_per_image: int | None = None
                ) -> PairProgress:
    """(done, total, identical) of `rater` on the set's schedule; `.finished` once every item is voted on."""
    captions = _captions_by_image(store, eval_set)
    return _status(_schedule_of(eval_set, captions, pairs_per_image), captions, _voted(store, eval_set, rater))


def pair_progress(store: RatingStore, eval_set: str, rater: str, *, pairs_per_image: int | None = None
                  ) -> tuple[int, int]:
    """(items of the set's schedule `rater` has voted on, identical pairs included; items in the schedule)."""
    status = pair_status(store, eval_set, rater, pairs_per_image=pairs_per_image)
    return status.done, status.total


def record_identical_pairs(store: RatingStore, eval_set: str, rater: str, *, pairs_per_image: int | None = None
                           ) -> int:
    """Store a tie (AUTO_TIE_OUTCOME) by `rater` on every item of the schedule whose two captions are identical
    (identical_captions) and that the rater has not voted on; returns how many were stored now.

    Asking a person which of two identical texts is better only adds noise, and both count as equal anyway.
    A vote already there is never replaced. The outcome is one of the store's own (see AUTO_TIE_OUTCOME), so
    these ties are told apart afterwards only by their identical captions, which the vote keeps.
    """
    captions = _captions_by_image(store, eval_set)
    voted = _voted(store, eval_set, rater)
    stored = 0
    for item in _schedule_of(eval_set, captions, pairs_per_image):
        if (item.image_hash, item.model_x, item.model_y) not in voted and _is_identical(item, captions):
            model_a, model_b = display_order(eval_set, item.image_hash, item.model_x, item.model_y)
            store.vote(eval_set, rater, item.image_hash, model_a, model_b, AUTO_TIE_OUTCOME)
            stored += 1
    return stored


def next_pair(store: RatingStore, eval_set: str, rater: str, image_dir: str | os.PathLike | None = None, *,
              pairs_per_image: int | None = None) -> PairView | None:
    """The first item of the set's schedule that `rater` has not voted on, in display order; None when every
    item is voted on (pair_status then says finished, with done == total).

    Items whose two captions are identical are never returned: their ties are stored first
    (record_identical_pairs), and PairView.identical says how many there are.
    """
    record_identical_pairs(store, eval_set, rater, pairs_per_image=pairs_per_image)
    captions = _captions_by_image(store, eval_set)
    schedule = _schedule_of(eval_set, captions, pairs_per_image)
    voted = _voted(store, eval_set, rater)
    status = _status(schedule, captions, voted)
    for item in schedule:
        if (item.image_hash, item.model_x, item.model_y) in voted:
            continue
        model_a, model_b = display_order(eval_set, item.image_hash, item.model_x, item.model_y)
        by_model = captions[item.image_hash]
        path = Path(image_dir) / f"{item.image_hash}.png" if image_dir is not None else None
        return PairView(image_hash=item.image_hash,
                        file_name=by_model[model_a]["file_name"] or item.image_hash[:12],
                        image_path=str(path) if path is not None and path.exists() else None,
                        model_a=model_a, model_b=model_b, caption_a=by_model[model_a]["caption"],
                        caption_b=by_model[model_b]["caption"], done=status.done, total=status.total,
                        identical=status.identical)
    return None


# ----------------------------------------------------------------------------------------------------------
# Results


def _encode(votes: pd.DataFrame, models: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray,
                                                                                  np.ndarray]:
    """(models, index of A, index of B, score of A: 1 win, 0 loss, 0.5 tie) for every vote."""
    missing = {"model_a", "model_b", "outcome"} - set(votes.columns)
    if missing:
        raise ValueError(f"votes need columns model_a, model_b, outcome (as RatingStore.votes gives); "
                         f"missing {sorted(missing)}")
    bad = sorted(set(votes["outcome"]) - set(PAIRWISE_OUTCOMES))
    if bad:
        raise ValueError(f"unknown pairwise outcome(s) {bad}; allowed: {list(PAIRWISE_OUTCOMES)}")
    names = list(models) if models is not None else sorted(set(votes["model_a"]) | set(votes["model_b"]))
    index = {m: i for i, m in enumerate(names)}
    a = np.array([index[m] for m in votes["model_a"]], dtype=np.int64)
    b = np.array([index[m] for m in votes["model_b"]], dtype=np.int64)
    score_a = votes["outcome"].map({"a": 1.0, "b": 0.0, "both_good": 0.5, "both_bad": 0.5}).to_numpy(dtype=float)
    return names, a, b, score_a


def _wins(m: int, a: np.ndarray, b: np.ndarray, score_a: np.ndarray) -> np.ndarray:
    wins = np.bincount(a * m + b, weights=score_a, minlength=m * m)
    wins += np.bincount(b * m + a, weights=1.0 - score_a, minlength=m * m)
    return wins.reshape(m, m)


def win_counts(votes: pd.DataFrame, models: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(models, W): W[i, j] = wins of model i over model j, a tie ("both good" / "both bad") counting 0.5 each."""
    names, a, b, score_a = _encode(votes, models)
    return names, _wins(len(names), a, b, score_a)


def fit_bradley_terry(wins: np.ndarray, ridge: float = DEFAULT_RIDGE) -> np.ndarray:
    """Log-strengths theta (natural log, mean 0) maximising the Bradley-Terry likelihood of `wins`.

    P(i beats j) = 1 / (1 + exp(theta_j - theta_i)); the negative log-likelihood
    -sum_ij W_ij log P(i beats j) is minimised with L-BFGS (it is convex). `ridge` adds
    ridge/2 * sum(theta^2), a weak Gaussian prior: without it a model that never won (or never lost) has no
    finite maximum. ridge=0 gives the plain maximum likelihood estimate, equal to logistic regression without
    an intercept on +1/-1 model indicators (what FastChat's elo_analysis fits).
    """
    wins = np.asarray(wins, dtype=float)
    m = wins.shape[0]
    if m == 0:
        return np.zeros(0)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        diff = theta[:, None] - theta[None, :]
        # log P(i beats j) = -log(1 + exp(-diff)), computed without overflow
        nll = float(np.sum(wins * np.logaddexp(0.0, -diff))) + 0.5 * ridge * float(theta @ theta)
        p_lose = 1.0 / (1.0 + np.exp(diff))  # P(j beats i) = 1 - P(i beats j)
        grad = -(wins * p_lose).sum(axis=1) + (wins.T * (1.0 - p_lose)).sum(axis=1) + ridge * theta
        return nll, grad

    result = minimize(objective, np.zeros(m), jac=True, method="L-BFGS-B",
                      options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 10_000})
    theta = result.x
    return theta - theta.mean()


def to_elo(theta: np.ndarray) -> np.ndarray:
    """Log-strengths on the Elo-like scale: ELO_ANCHOR + ELO_SCALE * log10(strength), mean ELO_ANCHOR."""
    theta = np.asarray(theta, dtype=float)
    return ELO_ANCHOR + ELO_SCALE / math.log(10.0) * (theta - theta.mean(axis=-1, keepdims=True))


def win_probability(rating_i: float, rating_j: float) -> float:
    """P(model i's caption is preferred over model j's) implied by their Elo-like ratings."""
    return 1.0 / (1.0 + 10.0 ** ((rating_j - rating_i) / ELO_SCALE))


def bt_ratings(votes: pd.DataFrame, *, ridge: float = DEFAULT_RIDGE, models: Sequence[str] | None = None
               ) -> pd.Series:
    """Bradley-Terry ratings on the Elo-like scale, indexed by model (sorted by name unless `models` given)."""
    names, wins = win_counts(votes, models)
    return pd.Series(to_elo(fit_bradley_terry(wins, ridge)), index=names, name="rating", dtype=float)


def bootstrap_ratings(votes: pd.DataFrame, rounds: int = DEFAULT_ROUNDS, seed: int = 0, *,
                      ridge: float = DEFAULT_RIDGE, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Ratings refitted on `rounds` resamples of the votes (drawn with replacement, seeded): rounds x models."""
    if rounds < 1:
        raise ValueError(f"bootstrap rounds must be >= 1, got {rounds}")
    names, a, b, score_a = _encode(votes, models)
    rng = np.random.default_rng(seed)
    rows = np.empty((rounds, len(names)))
    for r in range(rounds):
        pick = rng.integers(0, len(a), size=len(a))
        rows[r] = to_elo(fit_bradley_terry(_wins(len(names), a[pick], b[pick], score_a[pick]), ridge))
    return pd.DataFrame(rows, columns=names)


def tied_ranks(lower: Sequence[float], upper: Sequence[float]) -> list[int]:
    """LMSYS arena ranks: 1 + the number of models whose lower bound is above this model's upper bound.

    Models whose intervals overlap share a rank, so a rank says only what the data can tell apart.
    """
    lower_values = np.asarray(lower, dtype=float)
    return [1 + int(np.sum(lower_values > hi)) for hi in np.asarray(upper, dtype=float)]


def leaderboard(votes: pd.DataFrame, rounds: int = DEFAULT_ROUNDS, seed: int = 0, *, ridge: float = DEFAULT_RIDGE,
                confidence: float = 0.95) -> pd.DataFrame:
    """One row per model, best first: rank (tied when intervals overlap), rating (Bradley-Terry, Elo-like
    scale), ci_low / ci_high (bootstrap percentile interval over votes), votes, wins, ties, losses and
    win_rate (share of its votes won, ties counting half). No votes give an empty frame with these columns."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, e.g. 0.95; got {confidence}")
    if votes.empty:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    names, a, b, score_a = _encode(votes)
    rating = to_elo(fit_bradley_terry(_wins(len(names), a, b, score_a), ridge))
    boot = bootstrap_ratings(votes, rounds, seed, ridge=ridge, models=names).to_numpy()
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(boot, [tail, 100.0 - tail], axis=0)
    tie = score_a == 0.5
    table = pd.DataFrame({
        "model": names, "rating": rating, "ci_low": low, "ci_high": high,
        "votes": [int(np.sum((a == i) | (b == i))) for i in range(len(names))],
        "wins": [int(np.sum((a == i) & (score_a == 1)) + np.sum((b == i) & (score_a == 0))) for i in range(len(names))],
        "ties": [int(np.sum(((a == i) | (b == i)) & tie)) for i in range(len(names))],
    })
    table["losses"] = table["votes"] - table["wins"] - table["ties"]
    table["win_rate"] = (table["wins"] + 0.5 * table["ties"]) / table["votes"]
    table["rank"] = tied_ranks(table["ci_low"], table["ci_high"])
    table = table.sort_values(["rating", "model"], ascending=[False, True], ignore_index=True)
    return table[LEADERBOARD_COLUMNS]


def win_rate_matrix(votes: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Row model's share of wins against the column model (ties half); NaN on the diagonal and for pairs
    never compared. Rows and columns follow `models` (default: sorted names)."""
    names, wins = win_counts(votes, models)
    games = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(games > 0, wins / games, np.nan)
    np.fill_diagonal(share, np.nan)
    return pd.DataFrame(share, index=pd.Index(names, name="model"), columns=names)


# ----------------------------------------------------------------------------------------------------------
# A set's results and export


@dataclass
class PairwiseResults:
    votes: pd.DataFrame  # RatingStore.votes
    leaderboard: pd.DataFrame  # leaderboard()
    win_rates: pd.DataFrame  # win_rate_matrix(), in leaderboard order
    raters: list[str]


def set_pairwise_results(store: RatingStore, eval_set: str, rounds: int = DEFAULT_ROUNDS, seed: int = 0
                         ) -> PairwiseResults:
    """Everything the pairwise results view shows for a set (model names shown)."""
    votes = store.votes(eval_set)
    board = leaderboard(votes, rounds, seed)
    matrix = win_rate_matrix(votes, list(board["model"])) if not votes.empty else pd.DataFrame()
    return PairwiseResults(votes, board, matrix, sorted(set(votes["rater"])))


def export_set_pairwise(store: RatingStore, eval_set: str, folder: str | os.PathLike, rounds: int = DEFAULT_ROUNDS,
                        seed: int = 0) -> list[Path]:
    """Write `<slug>_pairwise.csv`, `<slug>_win_rates.csv`, `<slug>_votes.csv` and `<slug>_pairwise.xlsx`."""
    from rating.sets import file_slug  # the one slug rule; imported here as rating.sets loads the captioner

    results = set_pairwise_results(store, eval_set, rounds, seed)
    return export_pairwise(results.leaderboard, results.win_rates, results.votes,
                           Path(folder) / f"{file_slug(eval_set)}.csv")
