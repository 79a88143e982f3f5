"""Protects bringing existing work in: captions, human scores, known (gold) scores and reference captions are
read from XLSX workbooks (first or named sheet; extra and blank columns and a pivot block beside or below the
data ignored) and from semicolon CSVs as Excel saves them (cp1252, UTF-8 with BOM); invalid scores are listed
by row and left out; a file with scores and no rater is refused; importing the same file twice changes
nothing; captions whose image is not given are kept, shown by name and rated like any other; image names are
matched through what upload paths do to them (Gradio's stripped characters, case, Unicode NFC/NFD); an older
database gains the gold_score column when opened."""
from __future__ import annotations

import sqlite3
import unicodedata

import openpyxl
import pytest
from gradio_client.utils import strip_invalid_filename_characters  # what Gradio's upload does to a file name

from helpers import write_images
from rating import grid, intake, sets
from rating.imports import read_captions_file
from rating.store import RatingStore


@pytest.fixture()
def store(tmp_path):
    with RatingStore(tmp_path / "ratings.sqlite") as store:
        sets.open_set(store, "s", "alice")
        yield store


def _workbook(path, images):
    """Sheet 1: a title row, the data (with a header-only blank column) and a pivot block beside it after a
    blank column and one below it after a blank row. Sheet 2 ("Other"): a second, small table."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Captions"
    sheet.append(["Caption ratings, round 1"])
    sheet.append(["Image ID", "Model", "Caption", "Comments", "Score", "Gold score", "Reference", None,
                  "Model", "Average of Score"])
    rows = [
        [images[0].name, "mlp", "a dog on grass", None, 2, 2, "a dog | a brown dog", None, "mlp", 1.5],
        [images[0].name, "gpt", "a cat", None, 0, None, None, None, "gpt", 0],
        [images[1].name, "mlp", "two birds", None, 3, 1, "two birds on a wire"],  # row 5: score 3 is invalid
        ["gone.png", "mlp", "nothing to see", None, 1.0, "x", None],  # row 6: gold 'x' invalid; image not given
        [images[1].name, "gpt", "a bird", None, None, None, None],  # not scored
    ]
    for row in rows:
        sheet.append(row)
    sheet.append([])
    sheet.append(["Row Labels", "Average of Score"])  # a pivot below the data: not captions
    sheet.append(["mlp", 1.5])
    other = book.create_sheet("Other")
    other.append(["file_name", "model_name", "text", "rating"])
    other.append([images[0].name, "beta", "a small dog", 1])
    book.save(path)


def test_xlsx_with_scores_gold_references_pivot_and_missing_image(store, tmp_path):
    images = write_images(tmp_path / "in", 2)
    book = tmp_path / "round1.xlsx"
    _workbook(book, images)

    read = read_captions_file(book)
    assert read.sheet == "Captions" and "sheet 'Captions' of an Excel workbook" in read.message
    assert read.captions[["image_id", "model_name", "caption"]].values.tolist() == [
        [images[0].name, "mlp", "a dog on grass"], [images[0].name, "gpt", "a cat"],
        [images[1].name, "mlp", "two birds"], ["gone.png", "mlp", "nothing to see"], [images[1].name, "gpt", "a bird"]]
    assert "comments" in read.captions.columns and "average_of_score" not in read.captions.columns
    assert read.invalid_scores == ["row 5: score '3' is not 0, 1 or 2", "row 6: gold_score 'x' is not 0, 1 or 2"]

    with pytest.raises(ValueError, match="no rater"):
        intake.import_captions_file(store, "s", book, tmp_path / "in")
    assert store.get_captions("s") == []  # refused before anything was saved

    run = intake.import_captions_file(store, "s", book, tmp_path / "in", rater="bob", image_dir=tmp_path / "display")
    assert (run.saved, run.images, run.without_image) == (5, 3, 1)
    assert run.unmatched_images == ["gone.png"] and "gone.png" in run.problems[0]
    assert (run.ratings_saved, run.gold_saved, run.references_saved) == (3, 2, 3)
    assert run.invalid_scores == read.invalid_scores

    ratings = store.ratings("s")
    by_name = {(f, m): s for f, m, s in zip(ratings["file_name"], ratings["model_name"], ratings["score"])}
    assert by_name == {(images[0].name, "mlp"): 2, (images[0].name, "gpt"): 0, ("gone.png", "mlp"): 1}
    assert set(ratings["rater"]) == {"bob"}
    names = {c["image_hash"]: c["file_name"] for c in store.get_captions("s")}
    gold = store.gold_scores("s")
    assert list(gold.columns) == ["image_hash", "model_name", "gold_score"] and gold["gold_score"].dtype == "int64"
    assert sorted((names[h], m, g) for h, m, g in gold.values.tolist()) == [
        (images[0].name, "mlp", 2), (images[1].name, "mlp", 1)]
    assert {names[h]: refs for h, refs in store.references("s").items()} == {
        images[0].name: ["a dog", "a brown dog"], images[1].name: ["two birds on a wire"]}

    other = intake.import_captions_file(store, "s", book, tmp_path / "in", rater="carol", sheet="Other")
    assert (other.saved, other.ratings_saved) == (1, 1)
    with pytest.raises(ValueError, match=r"no sheet named 'Nope'; its sheets are \['Captions', 'Other'\]"):
        intake.import_captions_file(store, "s", book, tmp_path / "in", rater="bob", sheet="Nope")


def test_reimporting_the_same_file_changes_nothing(store, tmp_path):
    images = write_images(tmp_path / "in", 2)
    book = tmp_path / "round1.xlsx"
    _workbook(book, images)
    intake.import_captions_file(store, "s", book, tmp_path / "in", rater="bob")
    before = (store.get_captions("s"), store.ratings("s").to_dict("records"), store.gold_scores("s").values.tolist(),
              store.references("s"), store.list_sets())
    again = intake.import_captions_file(store, "s", book, tmp_path / "in", rater="bob")
    assert (again.saved, again.ratings_saved, again.gold_saved, again.references_saved) == (0, 0, 0, 0)
    assert (again.unchanged, again.ratings_unchanged, again.imported) == (5, 3, 5)
    after = (store.get_captions("s"), store.ratings("s").to_dict("records"), store.gold_scores("s").values.tolist(),
             store.references("s"), store.list_sets())
    assert after == before  # timestamps included


def test_missing_image_is_kept_shown_by_name_and_rated(store, tmp_path):
    table = tmp_path / "no-images.csv"
    table.write_text("image_id,model_name,caption\nphotos/Beach.JPG,m1,a beach\nphotos/Beach.JPG,m2,sand\n")
    run = intake.import_captions_file(store, "s", table)  # no images at all: nothing is "unmatched"
    assert (run.saved, run.images, run.without_image, run.problems) == (2, 1, 2, [])
    view = grid.grid_page(store, "s", "alice", image_dir=tmp_path / "display")
    [row] = view.rows
    assert (row.file_name, row.image_path) == ("photos/Beach.JPG", None)
    assert row.image_hash == intake.image_id_hash("photos/Beach.JPG") == intake.image_id_hash(" photos\\beach.jpg ")
    assert row.image_hash != intake.image_id_hash("photos/Beach2.JPG")
    for cell, score in zip(row.cells, (2, 1)):
        store.rate("s", "alice", row.image_hash, cell.model_name, score)
    results = sets.set_results(store, "s")
    assert sorted(results.summary["accuracy"]) == [50.0, 100.0] and set(results.summary["images_rated"]) == {1}
    assert grid.grid_page(store, "s", "alice").rated == 2


@pytest.mark.parametrize("encoding, bom", [("cp1252", b""), ("utf-8", b"\xef\xbb\xbf")])
def test_semicolon_csv_saved_by_excel(store, tmp_path, encoding, bom):
    images = write_images(tmp_path / "in", 1)
    text = ("Image;Modèle;Caption;Note;Annotator\r\n"
            f"{images[0].name};mlp;un café – très chaud;2;Zoé\r\n"
            f"{images[0].name};gpt;une tasse;5;Zoé\r\n"
            ";;;;\r\n")
    table = tmp_path / "excel.csv"
    table.write_bytes(bom + text.encode(encoding))
    run = intake.import_captions_file(store, "s", table, tmp_path / "in")
    assert "semicolon-separated" in run.message and (run.saved, run.ratings_saved) == (2, 1)
    assert run.invalid_scores == ["row 3: score '5' is not 0, 1 or 2"]
    ratings = store.ratings("s")
    assert ratings[["rater", "model_name", "caption", "score"]].values.tolist() == [
        ["Zoé", "mlp", "un café – très chaud", 2]]


def test_names_changed_by_uploads_still_match(store, tmp_path):
    ids = ["wow!.png", "Beach {2024}.png", "12:30.png", "café.png", "DOG.png", "gone.png"]
    folder = tmp_path / "uploads"
    sources = write_images(tmp_path / "in", 5)
    folder.mkdir()
    on_disk = [strip_invalid_filename_characters(name) for name in ids[:3]]
    assert on_disk == ["wow.png", "Beach 2024.png", "1230.png"]  # what Gradio does, so what this must undo
    on_disk += [unicodedata.normalize("NFD", "café.png"), "dog.PNG"]  # macOS's decomposed é; another case
    for source, name in zip(sources, on_disk):
        (folder / name).write_bytes(source.read_bytes())
    table = tmp_path / "names.csv"
    table.write_text("image_id,model_name,caption\n" + "".join(f"{i},m,caption of {i}\n" for i in ids),
                     encoding="utf-8")
    run = intake.import_captions_file(store, "s", table, folder, image_dir=tmp_path / "display")
    assert run.unmatched_images == ["gone.png"] and (run.saved, run.without_image) == (6, 1)
    stored = {c["caption"]: c["file_name"] for c in store.get_captions("s")}
    assert [stored[f"caption of {i}"] for i in ids] == on_disk + ["gone.png"]


def test_loose_matches_must_be_unique(tmp_path):
    folder = tmp_path / "in"
    write_images(folder, 2)
    (folder / "img0_0.png").rename(folder / "a b.png")
    (folder / "img0_1.png").rename(folder / "a-b.png")
    found = read_captions_file(b"image_id,model_name,caption\na!b.png,m,x\n", image_folder=folder)
    assert found.missing_images == ["a!b.png"]  # two files could be meant: neither is guessed


def test_old_database_gains_gold_score_column(tmp_path):
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path)
    raw.executescript(
        "CREATE TABLE evaluation_sets (name TEXT PRIMARY KEY, created_at TEXT NOT NULL, blind INTEGER NOT NULL "
        "DEFAULT 0, preset TEXT, settings_json TEXT NOT NULL DEFAULT '{}', notes TEXT);"
        "CREATE TABLE captions (eval_set TEXT NOT NULL, image_hash TEXT NOT NULL, model_name TEXT NOT NULL, "
        "caption TEXT NOT NULL, model_weights_hash TEXT, decoding_json TEXT NOT NULL DEFAULT '{}', "
        "created_at TEXT NOT NULL, PRIMARY KEY (eval_set, image_hash, model_name));"
        "INSERT INTO evaluation_sets VALUES ('old', '2025-01-01', 0, NULL, '{}', NULL);"
        "INSERT INTO captions VALUES ('old', 'h1', 'm', 'a dog', NULL, '{}', '2025-01-01');"
        "PRAGMA user_version = 1;")
    raw.close()
    with RatingStore(path) as store:
        assert store.gold_scores("old").empty and store.references("old") == {}
        assert store.set_gold_score("old", "h1", "m", 2) is True
        assert store.set_gold_score("old", "h1", "m", 2) is False  # the same again: nothing changes
        assert store.gold_scores("old").values.tolist() == [["h1", "m", 2]]
        assert store.get_captions("old")[0]["caption"] == "a dog"
        with pytest.raises(ValueError, match="score must be 0, 1 or 2"):
            store.set_gold_score("old", "h1", "m", 3)


def test_one_row_per_rater_is_not_a_repeat(store, tmp_path):
    table = tmp_path / "two-raters.csv"
    table.write_text("image_id,model_name,caption,score,rater\n"
                     "a.png,m,a dog,2,ann\na.png,m,a dog,1,ben\na.png,m,a dog,0,ben\n")
    read = read_captions_file(table)
    assert len(read.captions) == 1 and read.duplicate_rows == 1  # ben's first score is replaced, ann's is not
    assert read.ratings[["rater", "score", "row"]].values.tolist() == [["ann", 2, 2], ["ben", 0, 4]]
    run = intake.import_captions_file(store, "s", table)  # every score has its rater: none needed
    assert run.ratings_saved == 2 and store.raters("s") == ["ann", "ben"]


def test_an_empty_rater_cell_falls_back_to_the_given_rater(store, tmp_path):
    table = tmp_path / "some-named.csv"
    table.write_text("image_id,model_name,caption,score,rater\na.png,m,a dog,2,ann\nb.png,m,a cat,1,\n")
    run = intake.import_captions_file(store, "s", table, rater="carl")
    assert run.ratings_saved == 2 and not run.invalid_scores
    assert sorted(zip(store.ratings("s")["rater"], store.ratings("s")["score"])) == [("ann", 2), ("carl", 1)]
