"""Assigned work with overlap: each rater's queue of a set, its leases, progress, and the caption ids raters see.

A set's overlap R (``evaluation_sets.overlap``) is how many raters rate each caption; None means everyone rates
everything (the single-user default). `next_item` gives a rater the next image that has captions this rater has
not rated and that have fewer than R ratings, counting as taken the slots other raters hold with an unexpired
lease on the image, and leases it to this rater for LEASE_SECONDS, so two raters never take the last slot. A lease
is a row in the database: it survives a restart, and an expired one returns its image to the pool. The store's
`rate` enforces the same rule (`OverlapFullError`), so a caption never ends with more than R ratings, whichever
front end the rating came through.

Images come in a fixed order (the most-rated first, so that started images are completed before new ones are
opened; then by image hash), and an image this rater already holds comes back first, so a reload resumes it.

Caption ids (`caption_id`) are opaque: an HMAC of image and model under the set's random ``caption_key``, so a
rater who may not see a blind set's model names cannot tell them from the id either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from rating.grid import column_order
from rating.schema import captions, evaluation_sets, images, leases, ratings
from rating.store import RatingStore, upsert
from rating.validation import require_hash, utc_now, validate_name

LEASE_SECONDS = 300  # how long an image handed to a rater stays theirs


def _later(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def caption_id(key: str, image_hash: str, model_name: str) -> str:
    """The id raters see for one caption: 16 hex digits of HMAC-SHA256(key, image, model)."""
    return hmac.new(key.encode(), f"{image_hash}\x00{model_name}".encode(), hashlib.sha256).hexdigest()[:16]


def _stored_key(conn: Connection, eval_set: str, row: Any) -> str:
    """The set's caption key, made (and stored) on first use, inside the caller's write transaction."""
    if row.caption_key:
        return str(row.caption_key)
    key = secrets.token_hex(16)
    conn.execute(evaluation_sets.update().where(evaluation_sets.c.name == eval_set,
                                                evaluation_sets.c.caption_key.is_(None)).values(caption_key=key))
    return str(conn.execute(select(evaluation_sets.c.caption_key).where(
        evaluation_sets.c.name == eval_set)).scalar_one())


def caption_key(store: RatingStore, eval_set: str) -> str:
    """The set's caption key (made on first use: only then does this take the write lock)."""
    eval_set = validate_name(eval_set, "evaluation set name")
    with store._read() as conn:
        key = store._require_set(conn, eval_set).caption_key
    if key:
        return str(key)
    with store._write() as conn:
        return _stored_key(conn, eval_set, store._require_set(conn, eval_set))


def model_of(store: RatingStore, eval_set: str, image_hash: str, caption: str) -> str | None:
    """The model whose caption of `image_hash` has the id `caption` in `eval_set`, or None if there is none."""
    key = caption_key(store, eval_set)
    image_hash = require_hash(image_hash)
    return next((model for model in store.models_of(eval_set, image_hash)
                 if hmac.compare_digest(caption_id(key, image_hash, model), caption)), None)


def _state(conn: Connection, eval_set: str, now: str) -> tuple[dict[str, list[Any]], Counter, set, dict]:
    """Captions by image (with file names), ratings per caption, (rater, image, model) rated, and the unexpired
    leases (image -> raters)."""
    by_image: dict[str, list[Any]] = {}
    for row in conn.execute(select(captions.c.image_hash, captions.c.model_name, captions.c.caption,
                                   images.c.file_name)
                            .select_from(captions.outerjoin(images, images.c.content_hash == captions.c.image_hash))
                            .where(captions.c.eval_set == eval_set)
                            .order_by(captions.c.image_hash, captions.c.model_name)):
        by_image.setdefault(row.image_hash, []).append(row)
    rated = {(row.rater, row.image_hash, row.model_name) for row in conn.execute(
        select(ratings.c.rater, ratings.c.image_hash, ratings.c.model_name).where(ratings.c.eval_set == eval_set))}
    counts = Counter((image, model) for _, image, model in rated)
    held: dict[str, list[str]] = {}
    for row in conn.execute(select(leases.c.image_hash, leases.c.rater).where(
            leases.c.eval_set == eval_set, leases.c.expires_at > now)):
        held.setdefault(row.image_hash, []).append(row.rater)
    return by_image, counts, rated, held


def _open_captions(rows: list[Any], rater: str, overlap: int | None, counts: Counter, rated: set,
                   holders: list[str]) -> list[Any]:
    """The captions of one image still open to `rater`: not rated by them, and (with an overlap) with a slot
    left once the ratings and the other lease holders who have not rated it are counted."""
    found = []
    for row in rows:
        if (rater, row.image_hash, row.model_name) in rated:
            continue
        if overlap is not None:
            reserved = sum(1 for other in holders
                           if other != rater and (other, row.image_hash, row.model_name) not in rated)
            if counts[(row.image_hash, row.model_name)] + reserved >= overlap:
                continue
        found.append(row)
    return found


def next_item(store: RatingStore, eval_set: str, rater: str, *, lease_seconds: float = LEASE_SECONDS
              ) -> dict[str, Any] | None:
    """The next image of `rater`'s queue in `eval_set`, leased to them, or None when nothing is left for them.

    Returns ``{"image_hash", "image_id" (the file name, else the hash), "file_name", "lease_expires_at",
    "captions": [{"caption_id", "caption", "model"}]}`` with the captions still open to this rater, in this
    rater's column order for a blind set. Callers that may not show model names drop "model". Taken one at a
    time per set (the set's row is locked), so two raters never get the same last slot.
    """
    eval_set = validate_name(eval_set, "evaluation set name")
    rater = validate_name(rater, "rater name")
    with store._write() as conn:
        info = store._require_set(conn, eval_set, lock=True)
        key = _stored_key(conn, eval_set, info)
        now = utc_now()
        conn.execute(leases.delete().where(leases.c.eval_set == eval_set, leases.c.expires_at <= now))
        by_image, counts, rated, held = _state(conn, eval_set, now)
        done = Counter(image for image, _ in counts.elements())
        order = sorted(by_image, key=lambda image: (rater not in held.get(image, []), -done[image], image))
        for image in order:
            open_rows = _open_captions(by_image[image], rater, info.overlap, counts, rated, held.get(image, []))
            if not open_rows:
                if rater in held.get(image, []):  # done with it: the lease holds nothing any more
                    conn.execute(leases.delete().where(leases.c.eval_set == eval_set, leases.c.image_hash == image,
                                                       leases.c.rater == rater))
                continue
            expires = _later(lease_seconds)
            upsert(conn, leases, dict(eval_set=eval_set, image_hash=image, rater=rater, leased_at=now,
                                      expires_at=expires), ["eval_set", "image_hash", "rater"],
                   ["leased_at", "expires_at"])
            by_model = {row.model_name: row for row in open_rows}
            models = column_order(eval_set, rater, image, list(by_model)) if info.blind else sorted(by_model)
            file_name = open_rows[0].file_name
            return {"image_hash": image, "image_id": file_name or image, "file_name": file_name,
                    "lease_expires_at": expires,
                    "captions": [{"caption_id": caption_id(key, image, model), "caption": by_model[model].caption,
                                  "model": model} for model in models]}
    return None


def release(store: RatingStore, eval_set: str, rater: str, image_hash: str | None = None) -> int:
    """Give back `rater`'s lease on one image (or all their leases in the set: skip, log out); returns how many."""
    eval_set = validate_name(eval_set, "evaluation set name")
    rater = validate_name(rater, "rater name")
    query = leases.delete().where(leases.c.eval_set == eval_set, leases.c.rater == rater)
    if image_hash is not None:
        query = query.where(leases.c.image_hash == require_hash(image_hash))
    with store._write() as conn:
        return conn.execute(query).rowcount


def closed_captions(store: RatingStore, eval_set: str, rater: str) -> set[tuple[str, str]]:
    """The (image_hash, model_name) captions `rater` has not rated and may not rate now: they have the set's
    overlap of ratings, or the free slots are leased to others (what `RatingStore.rate` would refuse). Empty for a
    set without overlap. A grid that shows every caption greys these out."""
    eval_set = validate_name(eval_set, "evaluation set name")
    rater = validate_name(rater, "rater name")
    with store._read() as conn:
        overlap = store._require_set(conn, eval_set).overlap
        if overlap is None:
            return set()
        by_image, counts, rated, held = _state(conn, eval_set, utc_now())
    closed = set()
    for image, rows in by_image.items():
        still_open = {row.model_name for row in _open_captions(rows, rater, overlap, counts, rated,
                                                                held.get(image, []))}
        closed |= {(image, row.model_name) for row in rows
                   if row.model_name not in still_open and (rater, image, row.model_name) not in rated}
    return closed


def progress(store: RatingStore, eval_set: str, rater: str | None = None) -> dict[str, Any]:
    """How far a set is: ``{"set", "overlap", "images", "captions", "ratings", "target", "captions_complete",
    "images_complete", "raters": [{"rater", "rated", "images"}], "rater": {...} or None}``.

    A caption is complete with `target` ratings: the overlap, or (everyone rates everything) one per rater who
    has rated in the set; an image is complete when all its captions are. With `rater`, "rater" gives their own
    figures plus "left": the captions still open to them now (what their queue would still hand out).
    """
    eval_set = validate_name(eval_set, "evaluation set name")
    with store._read() as conn:
        info = store._require_set(conn, eval_set)
        now = utc_now()
        by_image, counts, rated, held = _state(conn, eval_set, now)
        total_ratings = conn.execute(select(func.count()).select_from(ratings).where(
            ratings.c.eval_set == eval_set)).scalar_one()
    raters = sorted({who for who, _, _ in rated})
    target = info.overlap if info.overlap is not None else max(len(raters), 1)
    complete = {(row.image_hash, row.model_name) for rows in by_image.values() for row in rows
                if counts[(row.image_hash, row.model_name)] >= target}
    per_rater = Counter(who for who, _, _ in rated)
    images_of = Counter(who for who, _ in {(who, image) for who, image, _ in rated})
    report: dict[str, Any] = {
        "set": eval_set, "overlap": info.overlap, "images": len(by_image),
        "captions": sum(len(rows) for rows in by_image.values()), "ratings": int(total_ratings), "target": target,
        "captions_complete": len(complete),
        "images_complete": sum(1 for image, rows in by_image.items()
                               if all((image, row.model_name) in complete for row in rows)),
        "raters": [{"rater": who, "rated": per_rater[who], "images": images_of[who]} for who in raters],
        "rater": None,
    }
    if rater is not None:
        rater = validate_name(rater, "rater name")
        left = sum(len(_open_captions(rows, rater, info.overlap, counts, rated, held.get(image, [])))
                   for image, rows in by_image.items())
        report["rater"] = {"rater": rater, "rated": per_rater.get(rater, 0), "images": images_of.get(rater, 0),
                           "left": left}
    return report
