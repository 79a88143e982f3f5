"""Protects assigned work with overlap (each rater's queue, leases, progress, opaque caption ids) and review
(disagreements largest first, final scores that never overwrite raw ratings), on both backends."""
from __future__ import annotations

import threading
import time
from collections import Counter

import pandas as pd
import pytest

from rating import queue, review, sets
from rating.store import CaptionNotFoundError, OverlapFullError, RatingStore

SET = "team"
MODELS = ("alpha", "beta")


def fill(store: RatingStore, *, images: int = 3, overlap: int | None = 2, blind: bool = False,
         name: str = SET) -> list[str]:
    store.create_or_open_set(name, overlap=overlap, blind=blind, owner="olga")
    hashes = [f"{i:064x}" for i in range(images)]
    for i, image in enumerate(hashes):
        store.add_image(image, f"img{i}.png", 32, 32)
        for model in MODELS:
            store.save_caption(name, image, model, f"{model} says {i}", weights_hash=None, decoding=None)
    return hashes


def rate_item(store: RatingStore, rater: str, item: dict, score: int = 1) -> None:
    for caption in item["captions"]:
        store.rate(SET, rater, item["image_hash"], caption["model"], score)


def test_overlap_hands_each_image_to_r_raters_and_refuses_a_third(store):
    hashes = fill(store)
    a, b, c = (queue.next_item(store, SET, rater) for rater in ("ann", "bob", "cid"))
    assert a["image_hash"] == b["image_hash"] == hashes[0]  # two slots per caption: ann and bob share it
    assert c["image_hash"] == hashes[1]  # both slots of image 0 are leased: cid gets the next one
    assert [x["model"] for x in a["captions"]] == list(MODELS) and a["image_id"] == "img0.png"
    assert queue.next_item(store, SET, "ann")["image_hash"] == hashes[0]  # asking again resumes the leased image
    with pytest.raises(OverlapFullError, match="leased to other raters"):  # cid holds no lease on image 0
        store.rate(SET, "cid", hashes[0], "alpha", 2)
    rate_item(store, "ann", a)
    rate_item(store, "bob", b)
    with pytest.raises(OverlapFullError, match="already has 2 rating"):
        store.rate(SET, "cid", hashes[0], "alpha", 2)
    store.rate(SET, "ann", hashes[0], "alpha", 2)  # changing one's own score is not a new rating
    assert store.score(SET, "ann", hashes[0], "alpha") == 2
    assert queue.next_item(store, SET, "ann")["image_hash"] != hashes[0]
    counts = store.ratings(SET).groupby(["image_hash", "model_name"]).size()
    assert counts.max() == 2


def test_an_expired_lease_returns_the_image_to_the_pool_and_leases_survive_a_restart(store):
    hashes = fill(store, overlap=1, images=1)
    assert queue.next_item(store, SET, "ann")["image_hash"] == hashes[0]
    assert queue.next_item(store, SET, "bob") is None  # the one slot is ann's while her lease runs
    with RatingStore(store.url) as restarted:
        assert queue.next_item(restarted, SET, "bob") is None  # the lease is in the database
    assert queue.next_item(store, SET, "ann", lease_seconds=0.05)["image_hash"] == hashes[0]
    time.sleep(0.1)
    assert queue.next_item(store, SET, "bob")["image_hash"] == hashes[0]  # ann's lease ran out
    rate_item(store, "bob", queue.next_item(store, SET, "bob"))
    with pytest.raises(OverlapFullError):
        store.rate(SET, "ann", hashes[0], "alpha", 1)
    assert queue.next_item(store, SET, "ann") is None


def test_without_overlap_everyone_rates_everything(store):
    hashes = fill(store, overlap=None, images=2)
    for rater in ("ann", "bob", "cid"):
        seen = []
        while (item := queue.next_item(store, SET, rater)) is not None:
            seen.append(item["image_hash"])
            rate_item(store, rater, item)
        assert sorted(seen) == hashes
    report = queue.progress(store, SET, "ann")
    assert report["target"] == 3 and report["images_complete"] == 2 and report["captions_complete"] == 4
    assert report["rater"] == {"rater": "ann", "rated": 4, "images": 2, "left": 0}


def test_progress_counts_images_complete_at_r(store):
    fill(store, images=2)
    item = queue.next_item(store, SET, "ann")
    rate_item(store, "ann", item)
    report = queue.progress(store, SET, "bob")
    assert (report["images"], report["captions"], report["ratings"], report["target"]) == (2, 4, 2, 2)
    assert report["images_complete"] == 0 and report["rater"]["left"] == 4
    rate_item(store, "bob", queue.next_item(store, SET, "bob"))
    report = queue.progress(store, SET)
    assert report["images_complete"] == 1 and report["captions_complete"] == 2
    assert report["raters"] == [{"rater": "ann", "rated": 2, "images": 1}, {"rater": "bob", "rated": 2, "images": 1}]


def test_caption_ids_are_opaque_and_blind_order_differs_per_rater(store):
    hashes = fill(store, images=8, blind=True, overlap=None)
    key = queue.caption_key(store, SET)
    assert queue.caption_key(store, SET) == key  # made once, then kept
    ids = {queue.caption_id(key, image, model) for image in hashes for model in MODELS}
    assert len(ids) == 16 and not any(model in cid for cid in ids for model in MODELS)
    item = queue.next_item(store, SET, "ann")
    for caption in item["captions"]:
        assert queue.model_of(store, SET, item["image_hash"], caption["caption_id"]) == caption["model"]
    assert queue.model_of(store, SET, item["image_hash"], "0" * 16) is None
    orders = {rater: [] for rater in ("ann", "bob")}
    for rater in orders:
        while (item := queue.next_item(store, SET, rater)) is not None:
            orders[rater].append([c["model"] for c in item["captions"]])
            rate_item(store, rater, item)
    assert orders["ann"] != orders["bob"]  # shuffled per image and rater (8 images: equal by chance 1 in 256)


def test_many_raters_at_once_end_with_exactly_r_ratings_per_caption(store):
    fill(store, images=6, overlap=2)
    errors: list[BaseException] = []
    refused = Counter()

    def work(rater: str) -> None:
        try:
            while (item := queue.next_item(store, SET, rater)) is not None:
                for caption in item["captions"]:
                    try:
                        store.rate(SET, rater, item["image_hash"], caption["model"], 1)
                    except OverlapFullError:
                        refused[rater] += 1
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(f"r{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    frame = store.ratings(SET)
    per_caption = frame.groupby(["image_hash", "model_name"])["rater"].agg(["size", "nunique"])
    assert len(per_caption) == 12 and (per_caption["size"] == 2).all() and (per_caption["nunique"] == 2).all()
    assert sum(refused.values()) == 0  # the queue hands out only free slots


def test_disagreements_come_largest_first_and_reviews_never_touch_raw_ratings(store, tmp_path):
    hashes = fill(store, images=2, overlap=None)
    for rater, scores in {"ann": (0, 2, 1, 1), "bob": (2, 2, 1, 0), "cid": (2, 2, 1, 1)}.items():
        for (image, model), score in zip([(h, m) for h in hashes for m in MODELS], scores):
            store.rate(SET, rater, image, model, score)
    found = review.disagreements(store, SET)
    assert found[["image_hash", "model_name", "spread", "scores"]].values.tolist() == [
        [hashes[0], "alpha", 2, "0, 2, 2"], [hashes[1], "beta", 1, "0, 1, 1"]]
    assert found["final_score"].isna().all()
    before = sets.set_results(store, SET, metrics=False)
    assert before.reviewed == 0
    review.record_review(store, SET, hashes[0], "alpha", 0, "olga", note="no circle in the picture")
    with pytest.raises(ValueError, match="score must be 0, 1 or 2"):
        review.record_review(store, SET, hashes[0], "alpha", 5, "olga")
    with pytest.raises(CaptionNotFoundError):
        review.record_review(store, SET, hashes[0], "gamma", 1, "olga")
    assert review.disagreements(store, SET, include_reviewed=False)["model_name"].tolist() == ["beta"]
    after = sets.set_results(store, SET, metrics=False)
    assert after.reviewed == 1 and "reviewed final score of 1 caption" in after.message
    accuracy = dict(zip(after.summary["model"], after.summary["accuracy"]))
    assert accuracy["alpha"] < dict(zip(before.summary["model"], before.summary["accuracy"]))["alpha"]
    raw = sets.set_results(store, SET, metrics=False, reviewed=False)
    assert raw.reviewed == 0 and raw.summary.equals(before.summary)
    assert store.ratings(SET)["score"].tolist() == before.ratings["score"].tolist()  # raw ratings unchanged
    paths = sets.export_set(store, SET, tmp_path)
    reviews_csv = pd.read_csv(paths[-1])
    assert paths[-1].name == "team_reviews.csv" and reviews_csv["note"].tolist() == ["no circle in the picture"]
    assert review.clear_review(store, SET, hashes[0], "alpha") is True
    assert sets.set_results(store, SET, metrics=False).reviewed == 0
