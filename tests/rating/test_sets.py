"""Protects the evaluation-set workflow (`rating.sets`, `rating.intake`, `rating.images`), without gradio:
opening a set keeps its blind flag and preset; captioning into a set only makes the missing (image, model)
captions, keeps rated ones, takes the same picture once, reports unreadable files while the rest go on, reports
progress up to the total and lets each batch's full-size pictures go; importing a CSV saves what it can, keeps
captions of missing images and lists them; the summary counts what is there. The grid: tests/rating/test_grid.py.

Tiny zoo models from tests/helpers.py, loaded with captioning.zoo.load_entry.
"""

from __future__ import annotations

import gc
import shutil
import weakref

import pandas as pd
import pytest
from PIL import Image

from captioning.images import ImageLoadError
from captioning.zoo import load_entry
from helpers import MODELS, build_tiny_zoo, fill_set, write_images
from rating import images, intake, sets
from rating.store import RatingStore


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    zoo = build_tiny_zoo(tmp_path_factory.mktemp("zoo"))
    return {name: load_entry(zoo / name) for name in MODELS}


@pytest.fixture()
def store(tmp_path):
    with RatingStore(tmp_path / "ratings.sqlite") as store:
        yield store


def sources(paths):
    return [(p, p.name) for p in paths]


def test_open_set_creates_then_keeps_blind_flag_and_preset(store):
    first = sets.open_set(store, " shapes ", " alice ", blind=True, preset="greedy")
    assert (first.name, first.rater, first.blind, first.preset) == ("shapes", "alice", True, "greedy")
    assert first.settings["strategy"] == "greedy"
    again = sets.open_set(store, "shapes", "bob", blind=False, preset="consistent")
    assert (again.rater, again.blind, again.preset, again.created_at) == ("bob", True, "greedy", first.created_at)
    with pytest.raises(ValueError, match="rater name must not be empty"):
        sets.open_set(store, "shapes", "  ")
    with pytest.raises(ValueError, match="Preset 'wild' not found"):
        sets.open_set(store, "other", "alice", preset="wild")


def test_new_pairs_are_the_missing_image_model_pairs(store):
    sets.open_set(store, "s", "alice")
    store.save_caption("s", "h1", "alpha", "a red circle", weights_hash=None, decoding=None)
    assert intake.new_pairs(store, "s", ["h1", "h2", "h1"], ["alpha", "beta"]) == [
        ("h1", "beta"), ("h2", "alpha"), ("h2", "beta")]
    assert intake.new_pairs(store, "s", [], ["alpha"]) == []


def test_caption_into_set_saves_new_captions_and_keeps_existing_ones(store, models, tmp_path):
    files = write_images(tmp_path / "in", 3)
    sets.open_set(store, "s", "alice", preset="greedy")
    first = intake.caption_into_set(store, "s", [models["alpha"]], sources(files), image_dir=tmp_path / "display")
    assert (first.images, first.saved, first.kept, first.problems, first.preset) == (3, 3, 0, [], "greedy")
    store.rate("s", "alice", first.image_hashes[0], "alpha", 2)
    before = {(c["image_hash"], c["model_name"]): (c["caption"], c["created_at"]) for c in store.get_captions("s")}

    second = intake.caption_into_set(store, "s", [models["alpha"], models["beta"]], sources(files), preset="consistent")
    assert (second.images, second.saved, second.kept, second.preset) == (3, 3, 3, "greedy")  # the set's preset wins
    after = store.get_captions("s")
    assert len(after) == 6 and {c["decoding"]["preset"] for c in after} == {"greedy"}
    assert all(before[(c["image_hash"], "alpha")] == (c["caption"], c["created_at"])
               for c in after if c["model_name"] == "alpha")  # never regenerated
    assert intake.new_pairs(store, "s", second.image_hashes, ["alpha", "beta"]) == []
    assert {c["file_name"] for c in after} == {p.name for p in files}
    assert all((tmp_path / "display" / f"{h}.png").is_file() for h in first.image_hashes)


def test_the_same_picture_twice_is_one_image(store, models, tmp_path, monkeypatch):
    files = write_images(tmp_path / "in", 2)
    copy = tmp_path / "in" / "copy-of-first.png"
    shutil.copyfile(files[0], copy)
    decoded = []
    real_read = images.read_image
    monkeypatch.setattr(images, "read_image",
                          lambda path, name, min_side=None: decoded.append(name) or real_read(path, name, min_side))
    sets.open_set(store, "s", "alice", preset="greedy")
    run = intake.caption_into_set(store, "s", [models["alpha"], models["beta"]], sources([files[0], files[1], copy]),
                                  image_dir=tmp_path / "display")
    assert (run.images, run.saved, run.kept) == (2, 4, 0)
    assert decoded == [files[0].name, files[1].name]  # the copy is recognised by its bytes, not decoded again
    assert len(list((tmp_path / "display").glob("*.png"))) == 2


def test_unreadable_files_are_reported_and_the_rest_go_on(store, models, tmp_path):
    files = write_images(tmp_path / "in", 2, broken=True)
    missing = tmp_path / "in" / "gone.png"
    sets.open_set(store, "s", "alice", preset="greedy")
    run = intake.caption_into_set(store, "s", [models["gamma"]], sources([files[2], files[0], missing, files[1]]),
                                  batch_size=2)
    assert (run.images, run.saved) == (2, 2)
    assert len(run.problems) == 2
    assert "broken.jpg" in run.problems[0] and "not an image file" in run.problems[0]
    assert "gone.png" in run.problems[1] and "does not exist" in run.problems[1]

    nothing = intake.caption_into_set(store, "s", [models["gamma"]], sources([files[2]]))
    assert (nothing.images, nothing.saved, len(nothing.problems)) == (0, 0, 1)
    with pytest.raises(ValueError, match="at least one model"):
        intake.caption_into_set(store, "s", [], sources(files[:1]))
    with pytest.raises(ValueError, match="not found; available sets"):
        intake.caption_into_set(store, "nope", [models["gamma"]], sources(files[:1]))


def test_progress_counts_captions_up_to_the_total(store, models, tmp_path):
    files = write_images(tmp_path / "in", 5)
    sets.open_set(store, "s", "alice", preset="greedy")
    intake.caption_into_set(store, "s", [models["alpha"]], sources(files[:2]))  # some pairs already there
    calls = []
    two = [models["alpha"], models["beta"]]
    intake.caption_into_set(store, "s", two, sources(files), batch_size=2, progress=lambda d, t: calls.append((d, t)))
    assert {t for _, t in calls} == {10}
    done = [d for d, _ in calls]
    assert done[0] == 0 and done[-1] == 10 and done == sorted(done)
    assert {4, 8} <= set(done)  # the end of each full batch of 2 images x 2 models
    assert len(set(done)) >= 5  # moves within batches too, not only at the end


def test_each_batch_lets_its_full_size_pictures_go(store, models, tmp_path, monkeypatch):
    files = write_images(tmp_path / "in", 6)
    loaded: list[weakref.ref] = []
    real_read, real_caption = images.read_image, intake.caption_images

    def read(path, name, min_side=None):
        image = real_read(path, name, min_side)
        loaded.append(weakref.ref(image))
        return image

    alive_at_each_batch = []

    def caption(models_, images, **kwargs):
        gc.collect()
        alive = [ref() for ref in loaded]
        # every picture still alive is one of this batch's (held by the caller's list), none of earlier batches
        alive_at_each_batch.append(sum(a is not None for a in alive))
        assert all(a is None or any(a is b for b in images) for a in alive)
        return real_caption(models_, images, **kwargs)

    monkeypatch.setattr(images, "read_image", read)
    monkeypatch.setattr(intake, "caption_images", caption)
    sets.open_set(store, "s", "alice", preset="greedy")
    run = intake.caption_into_set(store, "s", [models["alpha"]], sources(files), batch_size=2)
    assert run.saved == 6 and alive_at_each_batch == [2, 2, 2]
    gc.collect()
    assert all(ref() is None for ref in loaded)  # nothing kept after the call


def test_add_image_writes_an_upright_display_copy_atomically(store, tmp_path):
    photo = tmp_path / "phone.jpg"  # stored 40 wide x 20 high, EXIF says "rotate 90° clockwise"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), "red").save(photo, exif=exif)
    added = images.add_image(store, photo, "phone.jpg", tmp_path / "display")
    assert (added.width, added.height) == (20, 40)
    with Image.open(images.display_path(tmp_path / "display", added.content_hash)) as shown:
        assert shown.size == (140, 280)  # enlarged by a whole factor to at least MIN_DISPLAY_SIDE
    assert [p.name for p in (tmp_path / "display").iterdir()] == [f"{added.content_hash}.png"]  # no partial files
    big = images.display_copy(Image.new("RGB", (2000, 1000)))
    assert big.size == (images.DISPLAY_SIDE, images.DISPLAY_SIDE // 2)
    with pytest.raises(ImageLoadError, match="does not exist"):
        images.add_image(store, tmp_path / "nothing.png", "nothing.png", tmp_path / "display")


def test_import_saves_what_it_can_and_lists_missing_images(store, tmp_path):
    folder = tmp_path / "in"
    images = write_images(folder, 2, broken=True)
    table = tmp_path / "batch.csv"
    table.write_text("image_id;model_name;caption;temperature\n"
                     f'{images[0].name};clip-a;"a dog\non grass";0.7\n'  # a line break inside a quoted cell
                     f"{images[1].name};clip-a;two cats;0.7\n"
                     f"{images[1].name};clip-b;a cat;0.7\n"
                     "missing.png;clip-a;nothing;0.7\n"
                     "broken.jpg;clip-b;never shown;0.7\n", encoding="utf-8")
    sets.open_set(store, "imported", "carol")
    run = intake.import_captions_file(store, "imported", table, folder, image_dir=tmp_path / "display")
    # missing.png's caption is kept without a picture (the issue "human evaluation people can trust": an image
    # not given no longer drops its caption); broken.jpg was given but is unreadable: its caption is skipped
    assert (run.saved, run.images, run.without_image) == (4, 3, 1) and "semicolon" in run.message
    assert len(run.problems) == 2 and run.unmatched_images == ["missing.png"]
    assert "missing.png" in run.problems[0] and "broken.jpg" in run.problems[1]
    stored = {(c["file_name"], c["model_name"]): c for c in store.get_captions("imported")}
    assert set(stored) == {("img0_0.png", "clip-a"), ("img0_1.png", "clip-a"), ("img0_1.png", "clip-b"),
                           ("missing.png", "clip-a")}
    assert stored[("img0_0.png", "clip-a")]["caption"] == "a dog on grass"
    assert stored[("img0_1.png", "clip-b")]["decoding"] == {"temperature": 0.7, "source": "imported from batch.csv"}
    assert len(list((tmp_path / "display").glob("*.png"))) == 2
    with pytest.raises(ValueError, match="not found; available sets"):
        intake.import_captions_file(store, "nope", table, folder)


def test_one_line_joins_whitespace():
    assert intake.one_line("a dog\r\non  the\tgrass\f") == "a dog on the grass"


def test_summary_counts_images_captions_and_this_raters_scores(store):
    fill_set(store, "s", ["a.png", "b.png"])
    store.rate("s", "alice", f"{0:064x}", "alpha", 2)
    store.rate("s", "alice", f"{1:064x}", "beta", 0)
    store.rate("s", "bob", f"{1:064x}", "gamma", 1)
    alice = sets.set_summary(store, "s", "alice")
    assert (alice.name, alice.images, alice.captions, alice.rated, alice.blind, alice.preset) == (
        "s", 2, 6, 2, False, "consistent")
    assert sets.set_summary(store, "s", "carol").rated == 0


def test_results_and_export(store, tmp_path):
    fill_set(store, "coco val/50", ["a.png", "b.png"], models=("alpha", "beta"))
    for i in range(2):
        store.rate("coco val/50", "alice", f"{i:064x}", "alpha", 2)
        store.rate("coco val/50", "alice", f"{i:064x}", "beta", 1)
    found = sets.set_results(store, "coco val/50")
    assert list(found.summary["model"]) == ["alpha", "beta"] and list(found.summary["accuracy"]) == [100.0, 50.0]
    assert found.raters == ["alice"] and found.agreement["raters"] == 1 and len(found.ratings) == 4
    paths = sets.export_set(store, "coco val/50", tmp_path)
    assert [p.name for p in paths] == ["coco-val-50_summary.csv", "coco-val-50_ratings.csv", "coco-val-50.xlsx",
                                       "coco-val-50_history.csv"]
    history = pd.read_csv(paths[3])  # every change of a rating, with who and when
    assert len(history) == 4 and set(history["rater"]) == {"alice"} and history["old_score"].isna().all()
    assert all(p.is_file() and p.parent == tmp_path for p in paths)


def test_photos_are_decoded_at_the_side_the_models_and_display_need(store, models, tmp_path, monkeypatch):
    # A 3000 x 2000 JPEG stored sideways (EXIF orientation 6): the grid needs DISPLAY_SIDE pixels on the short
    # side, the tiny models 32, so the models receive the upright picture reduced to a 640-pixel short side,
    # while the store records the photo's own upright size.
    import numpy as np

    rng = np.random.default_rng(0)
    photo = tmp_path / "big.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rng.integers(0, 255, (2000, 3000, 3), dtype=np.uint8)).save(photo, exif=exif, quality=80)
    seen_sizes = []
    real_caption = intake.caption_images

    def caption(models_, images, **kwargs):
        seen_sizes.extend(image.size for image in images)
        return real_caption(models_, images, **kwargs)

    monkeypatch.setattr(intake, "caption_images", caption)
    sets.open_set(store, "s", "alice", preset="greedy")
    run = intake.caption_into_set(store, "s", [models["alpha"]], [(photo, "big.jpg")], image_dir=tmp_path / "display")
    assert run.saved == 1 and seen_sizes == [(images.DISPLAY_SIDE, 960)]  # upright: 2000 wide x 3000 high, reduced
    with store.engine.connect() as conn:
        row = conn.exec_driver_sql("SELECT width, height FROM images").fetchone()
    assert tuple(row) == (2000, 3000)
    display = Image.open(tmp_path / "display" / f"{run.image_hashes[0]}.png")
    assert max(display.size) == images.DISPLAY_SIDE and display.height > display.width


def test_an_experts_scores_become_gold_and_results_show_agreement_with_them(store):
    # 2 images x 2 models; the expert rates 3 captions, bob rates the same 3 and agrees on 2 of them
    sets.open_set(store, "g", "expert")
    for h in ("h1", "h2"):
        store.add_image(h, f"{h}.png", 10, 10)
        for m in ("alpha", "beta"):
            store.save_caption("g", h, m, f"{m} on {h}", weights_hash=None, decoding=None)
    expert = {("h1", "alpha"): 2, ("h1", "beta"): 0, ("h2", "alpha"): 1}
    bob = {("h1", "alpha"): 2, ("h1", "beta"): 1, ("h2", "alpha"): 1}
    for rater, scores in (("expert", expert), ("bob", bob)):
        for (h, m), score in scores.items():
            store.rate("g", rater, h, m, score)
    assert sets.mark_gold(store, "g", "expert", [("h1", "alpha")]) == 1
    assert sets.mark_gold(store, "g", "expert") == 2  # the other two; the first is already gold
    assert sets.mark_gold(store, "g", "expert") == 0  # marking again changes nothing
    gold = store.gold_scores("g")
    assert dict(zip(zip(gold["image_hash"], gold["model_name"]), gold["gold_score"])) == expert
    with pytest.raises(ValueError, match="has not rated 1 of the given captions"):
        sets.mark_gold(store, "g", "expert", [("h2", "beta")])
    with pytest.raises(ValueError, match="'carol' has rated nothing"):
        sets.mark_gold(store, "g", "carol")
    raters = sets.set_results(store, "g").rater_table.set_index("rater")
    assert raters.loc["bob", "gold_rated"] == 3
    assert raters.loc["bob", "gold_exact_match"] == pytest.approx(2 / 3)  # h1/beta: 1 against gold 0
    assert raters.loc["bob", "gold_mean_abs_diff"] == pytest.approx(1 / 3)
