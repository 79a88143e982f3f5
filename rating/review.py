"""Review: the captions where raters disagree, largest disagreement first, and the final scores a set's owner
records for them (with an optional note).

Raw ratings are never overwritten: a final score lives in ``reviews``, and `with_reviews` gives the ratings frame
in which each reviewed caption's scores are replaced by its final score, so the accuracy table (mean over raters
per image) uses it; `rating.sets.set_results` says whether it did and for how many captions.
Who may review is `rating.access.may_manage` (the set's owner and the admins).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import select

from rating.schema import captions, reviews
from rating.store import CaptionNotFoundError, RatingStore, upsert
from rating.validation import require_hash, utc_now, validate_name, validate_score

DISAGREEMENT_COLUMNS = ["image_hash", "file_name", "model_name", "caption", "ratings", "scores", "spread", "mean",
                        "final_score", "note", "reviewer"]
REVIEW_COLUMNS = ["image_hash", "model_name", "final_score", "note", "reviewer", "reviewed_at"]


def reviews_of(store: RatingStore, eval_set: str) -> pd.DataFrame:
    """The recorded final scores of ``eval_set``: columns REVIEW_COLUMNS, by image and model."""
    eval_set = validate_name(eval_set, "evaluation set name")
    r = reviews.c
    with store._read() as conn:
        store._require_set(conn, eval_set)
        rows = conn.execute(select(r.image_hash, r.model_name, r.final_score, r.note, r.reviewer, r.reviewed_at)
                            .where(r.eval_set == eval_set).order_by(r.image_hash, r.model_name)).all()
    frame = pd.DataFrame([tuple(row) for row in rows], columns=REVIEW_COLUMNS)
    frame["final_score"] = frame["final_score"].astype("int64")
    return frame


def disagreements(store: RatingStore, eval_set: str, *, include_reviewed: bool = True) -> pd.DataFrame:
    """The captions of ``eval_set`` whose raters gave different scores, largest disagreement first (spread =
    highest - lowest score, then the standard deviation), with any final score already recorded.

    Columns: DISAGREEMENT_COLUMNS (scores: the raters' scores as text, "0, 2, 2"). ``include_reviewed=False``
    leaves out the captions that have a final score, i.e. what is still to review.
    """
    ratings = store.ratings(eval_set)
    if ratings.empty:
        return pd.DataFrame(columns=DISAGREEMENT_COLUMNS)
    grouped = ratings.groupby(["image_hash", "model_name"])
    table = grouped.agg(file_name=("file_name", "first"), ratings=("score", "size"), low=("score", "min"),
                        high=("score", "max"), mean=("score", "mean"), std=("score", "std"),
                        scores=("score", lambda s: ", ".join(str(v) for v in sorted(s))))
    table = table[table["high"] > table["low"]].reset_index()
    table["spread"] = table["high"] - table["low"]
    caption_text = {(c["image_hash"], c["model_name"]): c["caption"] for c in store.get_captions(eval_set)}
    table["caption"] = [caption_text.get(key, "") for key in zip(table["image_hash"], table["model_name"])]
    done = reviews_of(store, eval_set).set_index(["image_hash", "model_name"])
    keys = list(zip(table["image_hash"], table["model_name"]))
    table["final_score"] = pd.array([done["final_score"].get(key) for key in keys], dtype="Int64")
    table["note"] = [done["note"].get(key) for key in keys]
    table["reviewer"] = [done["reviewer"].get(key) for key in keys]
    if not include_reviewed:
        table = table[table["final_score"].isna()]
    table = table.sort_values(["spread", "std", "image_hash", "model_name"], ascending=[False, False, True, True])
    table["mean"] = table["mean"].round(2)
    return table[DISAGREEMENT_COLUMNS].reset_index(drop=True)


def record_review(store: RatingStore, eval_set: str, image_hash: str, model_name: str, final_score: Any,
                  reviewer: str, note: str | None = None) -> None:
    """Record (or replace) the final score of one caption, on the set's scale, with an optional note. The raw
    ratings stay as they are. Raises for an unknown caption or a score off the scale."""
    eval_set = validate_name(eval_set, "evaluation set name")
    score = validate_score(final_score, store.set_scale(eval_set))
    reviewer = validate_name(reviewer, "reviewer name")
    model_name = validate_name(model_name, "model name")
    image_hash = require_hash(image_hash)
    note = (note or "").strip() or None
    with store._write() as conn:
        store._require_set(conn, eval_set)
        if conn.execute(select(captions.c.caption).where(
                captions.c.eval_set == eval_set, captions.c.image_hash == image_hash,
                captions.c.model_name == model_name)).first() is None:
            raise CaptionNotFoundError(f"No caption by model {model_name!r} for image {image_hash!r} in evaluation "
                                       f"set {eval_set!r}; only a saved caption can be reviewed")
        upsert(conn, reviews, dict(eval_set=eval_set, image_hash=image_hash, model_name=model_name,
                                   final_score=score, note=note, reviewer=reviewer, reviewed_at=utc_now()),
               ["eval_set", "image_hash", "model_name"], ["final_score", "note", "reviewer", "reviewed_at"])


def clear_review(store: RatingStore, eval_set: str, image_hash: str, model_name: str) -> bool:
    """Remove a caption's final score (its raw ratings count again); True if there was one."""
    eval_set = validate_name(eval_set, "evaluation set name")
    with store._write() as conn:
        return conn.execute(reviews.delete().where(
            reviews.c.eval_set == eval_set, reviews.c.image_hash == require_hash(image_hash),
            reviews.c.model_name == validate_name(model_name, "model name"))).rowcount > 0


def with_reviews(ratings: pd.DataFrame, reviewed: pd.DataFrame) -> pd.DataFrame:
    """``ratings`` with each reviewed caption's scores replaced by its final score (so its mean over raters is
    the final score) and a boolean column "reviewed"; captions without a review are unchanged."""
    out = ratings.copy()
    final = {(row.image_hash, row.model_name): int(row.final_score) for row in reviewed.itertuples()}
    keys = list(zip(out["image_hash"], out["model_name"]))
    out["reviewed"] = [key in final for key in keys]
    out["score"] = [final.get(key, score) for key, score in zip(keys, out["score"])]
    out["score"] = out["score"].astype("int64")
    return out

