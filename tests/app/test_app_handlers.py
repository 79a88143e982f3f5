"""Protects the rating app's handlers, called as plain Python functions (no server, no browser).

Captioning fills the grid (images x models) from the store, with images upright and bad files reported
while the rest goes on; blind mode hides names and shuffles columns per image and per rater, the same way every
time; each rating is saved at once and comes back after a "restart" (a new store on the same file); results,
agreement, exports (formula cells neutralised) and caption imports work; every bad input gives a clear
gr.Error; the upload boxes take every image format the loader reads; a busy port is one clear line, not a
traceback.
The workflow underneath (rating.sets, .grid, .intake, ...) has its own gradio-free tests in tests/rating/.

The tiny zoo, test images, free port and app subprocess come from tests/helpers.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
from PIL import Image

import app
from captioning.zoo import CONFIG_FILE, WEIGHTS_FILE
from helpers import MODELS, AppProcess, build_tiny_zoo, free_port, no_progress, tiny_captioner, write_images  # noqa: F401
from page import blocks as page_blocks
from page import compare as page_compare
from page import context as page_context
from page import importing as page_importing
from page import results as page_results
from page import server as page_server
from page import session as page_session
from page import zoo as page_zoo

ROOT = Path(__file__).resolve().parents[2]



# ----------------------------------------------------------------------------------------------------------
# Fixtures


def caption(ctx, session, files, models, *, rater="alice", name="set-1", blind=False, preset="greedy", samples=()):
    return page_compare.caption(ctx, session, rater, name, blind, [str(f) for f in files], list(samples), models, preset,
                       progress=no_progress)


# ----------------------------------------------------------------------------------------------------------
# Captioning and the grid


def test_caption_fills_grid_upright_and_reports_bad_image(ctx, tmp_path):
    files = write_images(tmp_path / "in", 2, broken=True)
    rotated = tmp_path / "in" / "phone.jpg"  # stored 40 wide x 20 high, EXIF says "rotate 90° clockwise"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), "red").save(rotated, exif=exif)
    # The unreadable file is named once, next to the upload box, when it is added...
    named = page_compare.check_uploads([str(f) for f in files + [rotated]])
    assert "1 file(s) cannot be used" in named and named.count("broken.jpg") == 1 and "img0_0" not in named
    assert page_compare.check_uploads([str(f) for f in files[:2]]) == ""  # gone once it is removed
    # ...and Caption leaves it out without a second warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        session, message, line = caption(ctx, page_session.new_session(), files + [rotated], ["alpha", "beta"])
    assert "3 image(s) x 2 model(s)" in message and "6 new caption(s)" in message and "broken.jpg" in message
    assert "you rated 0 of 6" in line

    view = page_compare.grid_view(ctx, session)
    assert view.images == 3 and view.captions == 6 and view.pages == 1
    assert [r.file_name for r in view.rows] == ["img0_0.png", "img0_1.png", "phone.jpg"]
    assert all([c.label for c in r.cells] == ["alpha", "beta"] for r in view.rows)  # names shown, sorted
    assert all(isinstance(c.caption, str) and c.score is None for r in view.rows for c in r.cells)
    with Image.open(view.rows[2].image_path) as shown:
        assert shown.size == (140, 280)  # as the model saw it: rotation applied (and enlarged 7x to be seen)
        red, green, blue = shown.getpixel((70, 140))
        assert red > 240 and green < 15 and blue < 15  # a JPEG of pure red

    stored = ctx.store.get_captions("set-1")
    assert {c["model_name"] for c in stored} == {"alpha", "beta"}
    assert all(len(c["model_weights_hash"]) == 64 and c["decoding"]["strategy"] == "greedy" for c in stored)


def test_samples_are_offered_and_validated(ctx, tmp_path):
    assert page_compare.sample_names(ctx) == []  # the folder does not exist yet: no choices, no crash
    write_images(ctx.samples_dir, 2, seed=3)
    assert page_compare.sample_names(ctx) == ["img3_0.png", "img3_1.png"]
    session, message, _ = caption(ctx, page_session.new_session(), [], ["gamma"], samples=["img3_1.png"])
    assert "1 image(s) x 1 model(s)" in message
    with pytest.raises(gr.Error, match="not found"):
        caption(ctx, session, [], ["gamma"], samples=["../../ratings.sqlite"])


def test_blind_mode_hides_names_shuffles_stably_and_reveals(ctx, tmp_path):
    files = write_images(tmp_path / "in", 6)
    session, _, _ = caption(ctx, page_session.new_session(), files, MODELS, blind=True)
    view = page_compare.grid_view(ctx, session)
    labels = {c.label for r in view.rows for c in r.cells}
    assert labels == {"Caption A", "Caption B", "Caption C"}  # no model name on screen
    orders = [tuple(c.model_name for c in r.cells) for r in view.rows]
    assert len(set(orders)) > 1  # shuffled per image

    # Another rater opening the set later cannot switch blind mode off, and sees the columns in an order of
    # their own (shuffled per image and per rater); reopening the set shows each rater their order again.
    other, line, _, blind = page_session.open_set(ctx, page_session.new_session(), "bob", "set-1", False, "greedy")
    assert blind is True and "blind" in line
    bobs = [tuple(c.model_name for c in r.cells) for r in page_compare.grid_view(ctx, other).rows]
    assert bobs != orders and [sorted(o) for o in bobs] == [sorted(o) for o in orders]
    again, *_ = page_session.open_set(ctx, page_session.new_session(), "alice", "set-1", False, "greedy")
    assert [tuple(c.model_name for c in r.cells) for r in page_compare.grid_view(ctx, again).rows] == orders

    revealed = page_compare.grid_view(ctx, page_compare.toggle_reveal(session))
    assert revealed.rows[0].cells[0].label == f"Caption A = {orders[0][0]}"


def test_existing_captions_are_kept_and_the_set_keeps_its_preset(ctx, tmp_path):
    files = write_images(tmp_path / "in", 2)
    session, _, _ = caption(ctx, page_session.new_session(), files, ["alpha"], preset="greedy")
    before = {(c["image_hash"], c["model_name"]): c["created_at"] for c in ctx.store.get_captions("set-1")}
    with pytest.warns(UserWarning, match="uses preset 'greedy'"):
        session, message, _ = caption(ctx, session, files, ["alpha", "beta"], preset="consistent")
    assert "2 new caption(s)" in message and "2 already in the set" in message
    after = ctx.store.get_captions("set-1")
    assert len(after) == 4
    assert all(c["created_at"] == before[(c["image_hash"], "alpha")] for c in after if c["model_name"] == "alpha")
    assert {c["decoding"]["preset"] for c in after} == {"greedy"}


def test_pages_of_ten_images(ctx, tmp_path):
    files = write_images(tmp_path / "in", 12)
    session, _, _ = caption(ctx, page_session.new_session(), files, ["alpha"])
    first = page_compare.grid_view(ctx, session)
    assert (first.pages, len(first.rows), first.images) == (2, 10, 12)
    session = page_compare.change_page(ctx, session, 1)
    second = page_compare.grid_view(ctx, session)
    assert second.page == 1 and [r.file_name for r in second.rows] == ["img0_10.png", "img0_11.png"]
    assert page_compare.change_page(ctx, session, 5)["page"] == 1  # clamped to the last page
    assert page_compare.change_page(ctx, session, -9)["page"] == 0


# ----------------------------------------------------------------------------------------------------------
# Ratings that last


def test_each_rating_is_saved_at_once_and_comes_back_after_restart(ctx, zoo, tmp_path):
    files = write_images(tmp_path / "in", 2)
    session, _, _ = caption(ctx, page_session.new_session(), files, ["alpha", "beta"], blind=True)
    rows = page_compare.grid_view(ctx, session).rows
    status, line, _, _ = page_compare.rate_caption(ctx, rows[0].image_hash, rows[0].cells[1].model_name, "Caption B", session, 2)
    assert "Saved 2 (fully accurate) for Caption B" in status and "you rated 1 of 4" in status
    assert "you rated 1 of 4" in line
    page_compare.rate_caption(ctx, rows[1].image_hash, rows[1].cells[0].model_name, "Caption A", session, "1")
    page_compare.rate_caption(ctx, rows[1].image_hash, rows[1].cells[0].model_name, "Caption A", session, 0)  # changed mind
    stored = ctx.store.ratings("set-1", "alice")
    assert sorted(stored["score"]) == [0, 2]
    assert all(len(h) == 64 for h in stored["model_weights_hash"])
    assert all(d["preset"] == "greedy" for d in stored["decoding"])

    # "Restart": a fresh context (new store connection, empty model cache) on the same files.
    ctx.store.close()
    restarted = page_context.make_context(zoo, ctx.store.path, image_dir=ctx.image_dir)
    again, line, _, _ = page_session.open_set(restarted, page_session.new_session(), "alice", "set-1", True, "greedy")
    remembered = page_session.remember(again)
    assert "you rated 2 of 4" in line and remembered == {"rater": "alice", "eval_set": "set-1"}
    view = page_compare.grid_view(restarted, again)
    assert [[c.score for c in r.cells] for r in view.rows] == [[None, 2], [0, None]]
    assert all(r.image_path and Path(r.image_path).exists() for r in view.rows)
    # The page-reload path: the browser remembers rater and set, and the session is rebuilt from them.
    restored, line, rater, name, blind, preset = page_session.restore_session(restarted, remembered)
    assert (rater, name, restored["eval_set"], blind, preset) == ("alice", "set-1", "set-1", True, "greedy")
    assert "you rated 2 of 4" in line
    nothing = page_session.restore_session(restarted, {"rater": "x", "eval_set": "no-such-set"})
    assert all(isinstance(value, dict) and value.get("__type__") == "update" and len(value) == 1 for value in nothing)
    restarted.store.close()


def test_rating_needs_an_open_set_and_a_valid_score(ctx, tmp_path):
    session, _, _ = caption(ctx, page_session.new_session(), write_images(tmp_path / "in", 1), ["alpha"])
    row = page_compare.grid_view(ctx, session).rows[0]
    with pytest.raises(gr.Error, match="Open an evaluation set first"):
        page_compare.rate_caption(ctx, row.image_hash, "alpha", "alpha", page_session.new_session(), 1)
    with pytest.raises(gr.Error, match="score must be 0, 1 or 2"):
        page_compare.rate_caption(ctx, row.image_hash, "alpha", "alpha", session, 3)
    with pytest.raises(gr.Error, match="No caption by model 'zeta'"):
        page_compare.rate_caption(ctx, row.image_hash, "zeta", "zeta", session, 1)


# ----------------------------------------------------------------------------------------------------------
# Results, exports, imports


def _rate_all(ctx, session, scores_by_model):
    for row in page_compare.grid_view(ctx, session).rows:
        for cell in row.cells:
            score = scores_by_model[cell.model_name]
            page_compare.rate_caption(ctx, row.image_hash, cell.model_name, cell.label, session, score)


def test_results_accuracy_rank_interval_and_agreement(ctx, tmp_path):
    files = write_images(tmp_path / "in", 4)
    alice, _, _ = caption(ctx, page_session.new_session(), files, MODELS, blind=True)
    table, text, figure = page_results.results(ctx, alice, None)
    # Every model of the set is listed before any rating (it used to be an empty table), unranked, coverage 0.
    assert list(table["model"]) == ["alpha", "beta", "gamma"] and "No ratings" in text
    assert list(table["rank"]) == [None, None, None] and list(table["captions rated"]) == ["0 / 4"] * 3
    assert page_results.rater_results(ctx, alice, None).empty

    _rate_all(ctx, alice, {"alpha": 2, "beta": 1, "gamma": 1})
    table, text, figure = page_results.results(ctx, alice, "")
    assert list(table["model"]) == ["alpha", "beta", "gamma"]  # names revealed in the results
    assert list(table["rank"]) == [1, 2, 2]  # ties share a rank
    assert list(table["accuracy %"]) == [100.0, 50.0, 50.0]  # total x 100 / (images x 2)
    assert list(table["total score"]) == [8.0, 4.0, 4.0] and list(table["images rated"]) == [4, 4, 4]
    assert table["95% CI"].iloc[1] == "50.0 – 50.0"
    assert "two or more raters" in text and figure.axes[0].get_ylabel() == "accuracy (%)"
    assert list(table["coverage %"]) == [100.0] * 3 and "Every caption is rated" in text
    per_rater = page_results.rater_results(ctx, alice, "")
    assert list(per_rater["rater"]) == ["alice"] and list(per_rater["progress %"]) == [100.0]
    assert list(per_rater["accuracy % alpha"]) == [100.0] and list(per_rater["accuracy % beta"]) == [50.0]

    bob, _, _, _ = page_session.open_set(ctx, page_session.new_session(), "bob", "set-1", True, "greedy")
    _rate_all(ctx, bob, {"alpha": 2, "beta": 0, "gamma": 1})
    table, text, _ = page_results.results(ctx, alice, "set-1")  # a blind set's results are for its owner (alice)
    assert list(table["accuracy %"]) == [100.0, 50.0, 25.0]  # per image: mean of the raters' scores
    assert "Krippendorff's α (ordinal) = " in text and "Cohen's κ = " in text and "over 12 caption(s)" in text
    # bob gave beta 0 where alice gave 1 (4 captions) and the same elsewhere: leniency -4/12 and +4/12
    per_rater = page_results.rater_results(ctx, alice, "set-1").set_index("rater")
    assert per_rater.loc["bob", "leniency"] == pytest.approx(-0.33) and per_rater.loc["alice", "leniency"] == 0.33


def test_export_has_summary_and_every_raw_rating_with_formulas_neutralised(ctx, tmp_path):
    images = write_images(tmp_path / "in", 2)
    table = tmp_path / "caps.csv"
    table.write_text("image_id,model_name,caption,num_beams\n"
                     f"{images[0].name},=cmd(),=HYPERLINK(\"http://x\"),3\n"
                     f"{images[1].name},plain,a red circle,3\n")
    session, message, _ = page_importing.import_captions(ctx, page_session.new_session(), "@rater", "exp", False, "greedy",
                                              str(table), [str(p) for p in images])
    _rate_all(ctx, session, {"=cmd()": 1, "plain": 2})
    paths = [Path(p) for p in page_results.export(ctx, session, None)]
    # (and every change of a rating, with who made it: the rating history)
    assert [p.name for p in paths] == ["exp_summary.csv", "exp_ratings.csv", "exp.xlsx", "exp_history.csv"]
    history = list(csv.DictReader(io.StringIO(paths[3].read_text(encoding="utf-8-sig"))))
    assert len(history) == 2 and {r["rater"] for r in history} == {"'@rater"}

    summary = list(csv.DictReader(io.StringIO(paths[0].read_text(encoding="utf-8-sig"))))
    # Each model captioned a different image, so no image is rated for every model: the ranked accuracy is
    # empty and the accuracy over each model's own rated images is exported beside the coverage.
    assert {(r["model"], r["accuracy_all"]) for r in summary} == {("'=cmd()", "50.0"), ("plain", "100.0")}
    assert {(r["accuracy"], r["rank"], r["captions_rated"], r["captions"]) for r in summary} == {("", "", "1", "1")}
    ratings = list(csv.DictReader(io.StringIO(paths[1].read_text(encoding="utf-8-sig"))))
    assert len(ratings) == 2
    row = next(r for r in ratings if r["model_name"] == "'=cmd()")
    assert row["caption"] == "'=HYPERLINK(\"http://x\")" and row["rater"] == "'@rater" and row["score"] == "1"
    assert json.loads(row["decoding"])["num_beams"] == 3 and row["rated_at"].endswith("+00:00")

    workbook = pd.read_excel(paths[2], sheet_name=None)
    assert set(workbook) == {"Summary", "Ratings"}  # one rater: no agreement sheet
    assert sorted(workbook["Ratings"]["caption"]) == ["'=HYPERLINK(\"http://x\")", "a red circle"]


def test_import_semicolon_csv_from_another_project(ctx, tmp_path):
    images = write_images(tmp_path / "in", 2, broken=True)
    table = tmp_path / "batch.csv"
    table.write_text("image_id;model_name;caption;temperature\n"
                     f"{images[0].name};clip-gpt2-a;a dog on grass;0.7\n"
                     f"{images[1].name};clip-gpt2-a;two cats;0.7\n"
                     f"{images[1].name};clip-gpt2-b;a cat;0.7\n"
                     "missing.png;clip-gpt2-a;nothing;0.7\n"
                     "broken.jpg;clip-gpt2-b;never shown;0.7\n", encoding="utf-8")
    with pytest.warns(UserWarning) as caught:
        session, message, line = page_importing.import_captions(ctx, page_session.new_session(), "carol", "imported", False, "greedy",
                                                     str(table), [str(p) for p in images])
    warned = " ".join(str(w.message) for w in caught)
    assert "missing.png" in warned and "broken.jpg" in warned
    # missing.png's caption is kept without its picture (issue "human evaluation people can trust"); the
    # unreadable broken.jpg's is not
    assert "Imported 4 caption(s) for 3 image(s)" in message and "semicolon" in message
    assert "1 caption(s) have no picture" in message
    stored = {(c["file_name"], c["model_name"]): c for c in ctx.store.get_captions("imported")}
    assert set(stored) == {("img0_0.png", "clip-gpt2-a"), ("img0_1.png", "clip-gpt2-a"), ("img0_1.png", "clip-gpt2-b"),
                           ("missing.png", "clip-gpt2-a")}
    decoding = stored[("img0_0.png", "clip-gpt2-a")]["decoding"]
    assert decoding == {"temperature": 0.7, "source": "imported from batch.csv"}
    view = page_compare.grid_view(ctx, session)
    assert [[c.model_name for c in r.cells] for r in view.rows] == [["clip-gpt2-a"], ["clip-gpt2-a", "clip-gpt2-b"],
                                                                    ["clip-gpt2-a"]]
    assert [r.image_path is None for r in view.rows] == [False, False, True]


def test_import_csv_written_by_the_captioning_cli(ctx, zoo, tmp_path):
    from captioning.commands.cli import main as cli

    images = write_images(tmp_path / "in", 2, seed=6)
    out = tmp_path / "cli.csv"
    assert cli(["caption", "--zoo", str(zoo), "--images", str(tmp_path / "in"), "--out", str(out), "--models",
                "alpha,beta", "--preset", "greedy", "--quiet"]) == 0
    session, message, _ = page_importing.import_captions(ctx, page_session.new_session(), "alice", "from-cli", True, "consistent",
                                              str(out), [str(p) for p in images])
    assert "Imported 4 caption(s) for 2 image(s)" in message
    weights = {c["model_name"]: c["model_weights_hash"] for c in ctx.store.get_captions("from-cli")}
    from captioning.zoo import file_sha256
    assert weights == {m: file_sha256(zoo / m / WEIGHTS_FILE) for m in ("alpha", "beta")}
    decoding = ctx.store.get_captions("from-cli")[0]["decoding"]
    assert decoding["preset"] == "greedy" and decoding["strategy"] == "greedy" and decoding["max_new_tokens"] == 30
    assert "score" not in decoding and "caption_index" not in decoding  # per-caption values, not settings
    assert [c.label for c in page_compare.grid_view(ctx, session).rows[0].cells] == ["Caption A", "Caption B"]


def test_import_xlsx_with_scores_by_the_page_rater_and_no_images(ctx, tmp_path):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["image_id", "model_name", "caption", "score"])
    book.active.append(["a.png", "m1", "a dog", 2])
    book.active.append(["a.png", "m2", "a cat", 4])  # row 3: not a score
    path = tmp_path / "scores.xlsx"
    book.save(path)
    with pytest.warns(UserWarning, match="row 3: score '4' is not 0, 1 or 2"):
        session, message, _ = page_importing.import_captions(ctx, page_session.new_session(), "dana", "sheet", False, "greedy",
                                                  str(path), None)  # images are optional
    assert "Imported 2 caption(s) for 1 image(s)" in message and "Excel workbook" in message
    assert "Ratings: 1 saved" in message and "row 3: score '4' is not 0, 1 or 2" in message
    assert "2 caption(s) have no picture" in message
    ratings = ctx.store.ratings("sheet")
    assert ratings[["rater", "model_name", "score"]].values.tolist() == [["dana", "m1", 2]]
    [row] = page_compare.grid_view(ctx, session).rows
    assert row.file_name == "a.png" and row.image_path is None and [c.score for c in row.cells] == [2, None]
    with pytest.warns(UserWarning, match="row 3"):
        again = page_importing.import_captions(ctx, session, "dana", "sheet", False, "greedy", str(path), None)[1]
    assert "(2 already there as given)" in again and "Ratings: 0 saved, 1 already there" in again

    demo = page_blocks.build_app(context=ctx)
    [box] = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "import-csv"]
    assert ".xlsx" in box.file_types


# ----------------------------------------------------------------------------------------------------------
# Bad input is explained, and the app keeps going


def test_bad_inputs_give_clear_errors(ctx, tmp_path):
    files = write_images(tmp_path / "in", 1, broken=True)
    session = page_session.new_session()
    with pytest.raises(gr.Error, match="rater name must not be empty"):
        caption(ctx, session, files, ["alpha"], rater="  ")
    with pytest.raises(gr.Error, match="Choose at least one model") as raised:
        caption(ctx, session, files, [])
    assert raised.value.print_exception is False  # said in the page; no traceback in the server's log
    with pytest.raises(gr.Error, match=r"not found in .*available models = \['alpha', 'beta', 'gamma'\]"):
        caption(ctx, session, files, ["../secret"])
    with pytest.raises(gr.Error, match="Add images first"):
        caption(ctx, session, [], ["alpha"])
    with pytest.raises(gr.Error, match="None of the images could be read"):
        caption(ctx, session, files[1:], ["alpha"])
    with pytest.raises(gr.Error, match="Unknown decoding preset"):
        caption(ctx, session, files, ["alpha"], preset="wild")
    malformed = tmp_path / "bad.csv"
    malformed.write_text("picture,text\na.png,hello\n")
    with pytest.raises(gr.Error, match=r"missing required column\(s\) \['image_id', 'model_name'\]"):
        page_importing.import_captions(ctx, session, "alice", "set-1", False, "greedy", str(malformed), [str(files[0])])
    with pytest.raises(gr.Error, match="Choose an evaluation set"):
        page_results.results(ctx, page_session.new_session(), None)
    with pytest.raises(gr.Error, match="not found; available sets"):
        page_results.export(ctx, session, "no-such-set")


def test_broken_and_missing_zoo_entries_are_explained(zoo, tmp_path):
    broken_zoo = tmp_path / "zoo"
    broken_zoo.mkdir()
    (broken_zoo / "alpha").symlink_to(zoo / "alpha", target_is_directory=True)
    (broken_zoo / "damaged").mkdir()
    (broken_zoo / "damaged" / CONFIG_FILE).write_text("{not json")
    ctx = page_context.make_context(broken_zoo, tmp_path / "r.sqlite", image_dir=tmp_path / "display")
    rows, note = page_zoo.zoo_entries(ctx)
    assert [c[1] for c in page_zoo.model_choices(rows)] == ["alpha"]  # the broken one cannot be picked...
    assert "damaged" in note and "not valid JSON" in note  # ...and the page says why
    assert "broken: " in page_zoo.zoo_table(rows).set_index("model").loc["damaged", "status"]
    assert "training data: synthetic shapes split 0" in page_zoo.model_cards(ctx, ["alpha"])
    assert "is not a usable entry" in page_zoo.model_cards(ctx, ["damaged"])
    with pytest.warns(UserWarning, match="damaged"), pytest.raises(gr.Error, match="not valid JSON"):
        caption(ctx, page_session.new_session(), write_images(tmp_path / "in", 1), ["damaged"])

    missing = page_context.make_context(tmp_path / "nowhere", tmp_path / "r2.sqlite", image_dir=tmp_path / "display")
    assert page_zoo.zoo_entries(missing)[0] == [] and "does not exist" in page_zoo.zoo_entries(missing)[1]
    page_blocks.build_app(context=missing)  # the page still builds: import and rating work without a zoo
    ctx.store.close()
    missing.store.close()


def test_launch_options_serve_neither_zoo_nor_database(ctx):
    options = page_server.launch_options(ctx, host="127.0.0.1", port=7999, auth=("u", "p"))
    assert options["share"] is False and options["max_file_size"] == page_server.DEFAULT_MAX_FILE_SIZE
    assert options["allowed_paths"] == [str(ctx.image_dir.resolve())]
    db = str(ctx.store.path.resolve())
    assert {str(ctx.zoo_dir.resolve()), db, db + "-wal"} <= set(options["blocked_paths"])
    assert all(not Path(db).is_relative_to(p) and not ctx.zoo_dir.resolve().is_relative_to(p)
               for p in options["allowed_paths"])


def test_command_line_mistakes_are_one_clear_line(capsys, tmp_path):
    with pytest.raises(SystemExit) as done:
        app.main(["--help"])
    assert done.value.code == 0 and "--zoo" in capsys.readouterr().out
    assert page_server.parse_auth("ann:se:cret") == ("ann", "se:cret")
    assert app.main(["--auth", "nocolon", "--db", str(tmp_path / "r.sqlite")]) == 2
    assert "--auth must look like USER:PASS" in capsys.readouterr().err
    assert app.main(["--db", str(tmp_path), "--image-cache", str(tmp_path / "c")]) == 2  # a folder, not a file
    assert "is a folder" in capsys.readouterr().err


def test_a_busy_port_is_one_clear_line_not_a_traceback(zoo, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "--zoo", str(zoo), "--db", str(tmp_path / "r.sqlite"),
             "--image-cache", str(tmp_path / "display"), "--port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=180,
            env={**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr
    assert f"port {port} is already in use" in lines[0] and "--port" in lines[0]
    assert not (tmp_path / "r.sqlite").exists()  # it stopped before opening anything
    assert page_server.port_problem("127.0.0.1", 0) == "--port must be between 1 and 65535, got 0"
    assert page_server.port_problem("127.0.0.1", free_port()) is None


def test_uploads_accept_exactly_the_image_files_the_loader_reads(ctx):
    from gradio_client.utils import is_valid_file

    from captioning.images import IMAGE_EXTENSIONS

    demo = page_blocks.build_app(context=ctx)
    boxes = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None) in ("uploads", "import-images")}
    assert set(boxes) == {"uploads", "import-images"}
    for box in boxes.values():
        assert box.file_types == sorted(IMAGE_EXTENSIONS)
        assert all(is_valid_file(f"IMG_0001{suffix.upper()}", box.file_types) for suffix in IMAGE_EXTENSIONS)
        assert not is_valid_file("notes.txt", box.file_types)
        # phone photos (HEIC/HEIF, AVIF) are taken exactly when the loader reads them
        for suffix in (".heic", ".heif", ".avif"):
            assert is_valid_file(f"IMG_0001{suffix}", box.file_types) == (suffix in IMAGE_EXTENSIONS)


def test_results_text_shows_metrics_beside_human_accuracy_when_references_exist():
    per_model = pd.DataFrame([{"model": "good", "images_with_references": 2, "bleu4": 1.0, "cider": 3.2,
                               "bertscore_f1": float("nan"), "human_accuracy": 100.0}])
    tau = pd.DataFrame([{"metric": "bleu4", "tau_c_judgments": 0.851, "tau_b_judgments": 0.802, "n_judgments": 6,
                         "tau_c": 0.862, "kendall_tau": 0.894, "n_captions": 4, "p_value": 0.1}])
    text = page_results.metric_text(per_model, tau)
    assert "| good | 2 | 1.000 | 3.200 | n/a | 100.0 |" in text
    assert "| bleu4 | 0.85 | 0.80 | 0.86 | 0.89 (p = 0.100) |" in text and "6 judgments of 4 captions" in text
    assert page_results.metric_text(None, None) == "" and page_results.metric_text(per_model.iloc[0:0], tau) == ""


def test_the_compare_tab_says_the_demo_models_only_know_coloured_shapes(tmp_path):
    demo_ctx = page_context.make_context(ROOT / "model_zoo", tmp_path / "r.sqlite", image_dir=tmp_path / "display")
    said = page_zoo.caveats(demo_ctx, ["shapes-clip-grid-k9", "shapes-clip-mlp-k4"])
    assert "coloured circles, squares and triangles" in said and "not to caption real pictures" in said
    assert said.count("coloured circles") == 1  # said once for all the chosen models, naming them
    assert "shapes-clip-grid-k9, shapes-clip-mlp-k4" in said
    assert "coloured circles" not in page_zoo.model_cards(demo_ctx, ["shapes-clip-grid-k9"])  # not on every card
    plain = page_zoo.caveats(ctx_for_tiny_zoo(tmp_path), ["alpha"])
    assert plain == ""  # a model not scored on shapes carries no such warning
    demo_ctx.store.close()


def ctx_for_tiny_zoo(tmp_path):
    return page_context.make_context(build_tiny_zoo(tmp_path / "zoo"), tmp_path / "tiny.sqlite", image_dir=tmp_path / "d")


def test_a_failed_first_caption_or_import_leaves_no_empty_set(ctx, tmp_path):
    broken = write_images(tmp_path / "in", 0, broken=True)
    with pytest.raises(gr.Error, match="None of the images could be read"):
        caption(ctx, page_session.new_session(), broken, ["alpha"], name="never-made")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("image_id,model_name,caption\n")
    with pytest.raises(gr.Error):
        page_importing.import_captions(ctx, page_session.new_session(), "alice", "never-imported", False, "greedy", str(bad_csv), None)
    names = [s["name"] for s in ctx.store.list_sets()]
    assert "never-made" not in names and "never-imported" not in names
    # a set that existed before a failed action stays
    page_session.open_set(ctx, page_session.new_session(), "alice", "kept", False, "greedy")
    with pytest.raises(gr.Error):
        caption(ctx, page_session.new_session(), broken, ["alpha"], name="kept")
    assert "kept" in [s["name"] for s in ctx.store.list_sets()]
