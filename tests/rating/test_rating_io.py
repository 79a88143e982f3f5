"""Protects getting data into and out of the rating app: CSV and XLSX exports read back with the
right sheets and values, text that a spreadsheet would run as a formula (=HYPERLINK(...)) is
neutralised with a leading apostrophe while numbers stay numbers, and caption CSVs are read whatever
their separator, encoding (UTF-8 BOM, cp1252 from Excel) or header spelling, with images matched to
files in a folder regardless of extension case."""
from __future__ import annotations

import openpyxl
import pandas as pd
import pytest

from rating.exports import export_csv, export_xlsx, neutralise_formula
from rating.imports import read_captions_csv
from rating.results import summary_table
from rating.store import RatingStore

EVIL = '=HYPERLINK("http://evil.example","click")'


@pytest.fixture
def rated(tmp_path):
    """A real store with two raters, hostile strings in captions, model, rater and file names."""
    store = RatingStore(tmp_path / "ratings.sqlite")
    store.create_or_open_set("set")
    store.add_image("h0", "+cmd.jpg", 10, 10)
    store.add_image("h1", "dog.jpg", 10, 10)
    captions = {("h0", "-model"): EVIL, ("h0", "plain"): "a cat", ("h1", "-model"): "a dog\x01", ("h1", "plain"): "@SUM(A1)"}
    for (image, model), caption in captions.items():
        store.save_caption("set", image, model, caption, weights_hash="w", decoding={"beam_size": 3})
    for rater, scores in {"@bob": [2, 1, 0, 2], "alice": [2, 1, 1, 2]}.items():
        for ((image, model), _), score in zip(captions.items(), scores):
            store.rate("set", rater, image, model, score)
    ratings = store.ratings("set")
    store.close()
    return summary_table(ratings, n_bootstrap=100), ratings


@pytest.mark.parametrize("value, expected", [
    (EVIL, "'" + EVIL), ("+1 555", "'+1 555"), ("-model", "'-model"), ("@bob", "'@bob"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("a = b", "a = b"), ("", ""), (-5, -5), (2.5, 2.5), (None, None),
])
def test_neutralise_formula(value, expected):
    assert neutralise_formula(value) == expected


def test_export_csv_reads_back_neutralised(rated, tmp_path):
    summary, ratings = rated
    paths = export_csv(summary, ratings, tmp_path / "out")
    assert [p.name for p in paths] == ["summary.csv", "ratings.csv"]
    assert paths[1].read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: Excel shows accents right

    summary_back = pd.read_csv(paths[0], encoding="utf-8-sig")
    assert summary_back["model"].tolist() == ["'" + m if m.startswith("-") else m for m in summary["model"]]
    assert summary_back["accuracy"].tolist() == pytest.approx(summary["accuracy"].tolist())
    assert summary_back["rank"].dtype == "int64"

    ratings_back = pd.read_csv(paths[1], encoding="utf-8-sig", keep_default_na=False)
    assert len(ratings_back) == len(ratings) == 8
    assert ratings_back.loc[ratings_back.caption.str.contains("HYPERLINK"), "caption"].unique().tolist() == ["'" + EVIL]
    assert set(ratings_back["rater"]) == {"'@bob", "alice"}
    assert "'+cmd.jpg" in set(ratings_back["file_name"])
    assert "'@SUM(A1)" in set(ratings_back["caption"])
    assert ratings_back["score"].tolist() == ratings["score"].tolist()  # numbers stay numbers
    assert ratings_back["decoding"].iloc[0] == '{"beam_size": 3}'

    named = export_csv(summary, ratings, tmp_path / "runs" / "exp1.csv")
    assert [p.name for p in named] == ["exp1_summary.csv", "exp1_ratings.csv"] and all(p.exists() for p in named)


def test_export_xlsx_reads_back_neutralised(rated, tmp_path):
    summary, ratings = rated
    path = export_xlsx(summary, ratings, tmp_path / "results")
    assert path.name == "results.xlsx"
    book = openpyxl.load_workbook(path)
    assert book.sheetnames == ["Summary", "Ratings", "Agreement"]

    rows = list(book["Ratings"].values)
    header, body = rows[0], rows[1:]
    assert list(header) == list(ratings.columns) and len(body) == 8
    column = {name: i for i, name in enumerate(header)}
    captions = [row[column["caption"]] for row in body]
    assert "'" + EVIL in captions and "'@SUM(A1)" in captions
    assert "a dog" in captions  # control character the XLSX format cannot hold was dropped
    for cells in book["Ratings"].iter_rows(min_row=2):
        assert all(cell.data_type != "f" for cell in cells)  # no cell is a formula
        assert isinstance(cells[column["score"]].value, int)
    assert {row[column["rater"]] for row in body} == {"'@bob", "alice"}

    summary_rows = list(book["Summary"].values)
    assert summary_rows[0][:5] == ("model", "images_rated", "total", "accuracy", "rank")
    assert [row[3] for row in summary_rows[1:]] == pytest.approx(summary["accuracy"].tolist())
    assert {row[0] for row in summary_rows[1:]} == {"'-model", "plain"}

    agreement_rows = dict(list(book["Agreement"].values)[1:])
    assert agreement_rows["raters"] == 2 and agreement_rows["items"] == 4
    assert isinstance(agreement_rows["krippendorff_alpha_ordinal"], float)


def test_export_xlsx_without_second_rater_has_no_agreement_sheet(rated, tmp_path):
    summary, ratings = rated
    alone = ratings[ratings.rater == "alice"]
    book = openpyxl.load_workbook(export_xlsx(summary_table(alone, n_bootstrap=10), alone, tmp_path / "a.xlsx"))
    assert book.sheetnames == ["Summary", "Ratings"]


# ---------------------------------------------------------------------------- imports


def test_comma_csv_from_path_strips_and_skips(tmp_path):
    path = tmp_path / "captions.csv"
    path.write_text(
        "image_id,model_name,caption,beam_size\n"
        " a.jpg , mlp ,  a dog on grass  ,3\n"
        "\n"
        "b.jpg,mlp,,3\n"                        # no caption: skipped
        "b.jpg,mlp,a dog, running on grass,3\n"  # unquoted commas, caption not last: malformed
        '"c.jpg",transformer,"a cat, asleep",5\n',
        encoding="utf-8",
    )
    result = read_captions_csv(path)
    frame = result.captions
    assert list(frame.columns) == ["image_id", "model_name", "caption", "beam_size"]
    assert frame.values.tolist() == [["a.jpg", "mlp", "a dog on grass", "3"], ["c.jpg", "transformer", "a cat, asleep", "5"]]
    assert result.skipped_rows == 2 and result.delimiter == "," and result.missing_images == []
    assert "Read 2 captions (2 models, 2 images)" in result.message


def test_semicolon_tab_and_header_variants():
    semicolon = read_captions_csv(b"Image ID; Model Name ;CAPTION\nx.png;m1;une photo, floue\n")
    assert semicolon.delimiter == ";"
    assert semicolon.captions[["image_id", "model_name", "caption"]].values.tolist() == [["x.png", "m1", "une photo, floue"]]

    tab = read_captions_csv(b"file_name\tmodel\tText\tTemperature\nx.png\tm1\ta dog\t0.7\n")
    assert tab.delimiter == "\t"
    assert tab.captions.values.tolist() == [["x.png", "m1", "a dog", "0.7"]]
    assert list(tab.captions.columns) == ["image_id", "model_name", "caption", "temperature"]

    loose = read_captions_csv(b"image,Model,caption\nx.png,m1,a dog, running in a field\nx.png,m1,a dog again\n")
    assert loose.captions["caption"].tolist() == ["a dog again"]  # caption last: commas rejoined; repeat replaces
    assert loose.duplicate_rows == 1


def test_bom_and_cp1252_encodings():
    text = "image_id;model_name;caption\ncafé.jpg;mlp;un café – très chaud\n"
    bom = read_captions_csv(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert list(bom.captions.columns) == ["image_id", "model_name", "caption"]  # BOM not glued to the header
    assert bom.captions.loc[0, "caption"] == "un café – très chaud"

    excel = read_captions_csv(text.encode("cp1252"))  # the en dash is byte 0x96: not valid UTF-8
    assert excel.encoding == "cp1252"
    assert excel.captions.loc[0, "image_id"] == "café.jpg" and excel.captions.loc[0, "caption"] == "un café – très chaud"

    latin = read_captions_csv("image_id,model_name,caption\nx,m,\u00e9t\u00e9\x81\n".encode("latin-1"))
    assert latin.encoding == "latin-1" and latin.captions.loc[0, "caption"] == "été\x81"

    utf16 = read_captions_csv(text.encode("utf-16"))
    assert utf16.captions.loc[0, "caption"] == "un café – très chaud"


def test_missing_columns_are_named():
    with pytest.raises(ValueError) as error:
        read_captions_csv(b"Image,Model,Score\na.jpg,m,2\n")
    message = str(error.value)
    assert "missing required column(s) ['caption']" in message
    assert "found columns ['Image', 'Model', 'Score']" in message
    assert "image_id" in message and "model_name" in message
    with pytest.raises(ValueError, match="several columns that mean image_id"):
        read_captions_csv(b"image,file_name,model,caption\na,b,m,c\n")
    with pytest.raises(ValueError, match="empty"):
        read_captions_csv(b"  \n")
    with pytest.raises(FileNotFoundError, match="not found"):
        read_captions_csv("/nonexistent/captions.csv")


def test_image_folder_resolution(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("IMG_001.JPG", "dog.png", "Cat.jpeg", "notes.txt"):
        (folder / name).write_bytes(b"x")
    (tmp_path / "outside.png").write_bytes(b"x")
    csv = (
        "image_id,model_name,caption\n"
        "img_001,m,a\n"        # no extension, upper-case .JPG on disk
        "img_001.jpg,m2,a\n"   # same name, different case
        "dog,m,b\n"
        "cat.JPEG,m,c\n"
        "C:\\photos\\dog.png,m2,b\n"  # full path from another machine: matched by name
        "notes,m,d\n"          # not an image extension
        "../outside.png,m,e\n"  # must not escape the folder
        "missing,m,f\n"
    )
    result = read_captions_csv(csv.encode(), image_folder=folder)
    paths = dict(zip(result.captions["image_id"], result.captions["image_path"]))
    assert paths["img_001"] == paths["img_001.jpg"] == str(folder / "IMG_001.JPG")
    assert paths["dog"] == paths["C:\\photos\\dog.png"] == str(folder / "dog.png")
    assert paths["cat.JPEG"] == str(folder / "Cat.jpeg")
    assert paths["notes"] is None and paths["missing"] is None and paths["../outside.png"] is None
    assert result.missing_images == ["notes", "../outside.png", "missing"]
    assert "3 image(s) not found" in result.message
    with pytest.raises(FileNotFoundError, match="Image folder not found"):
        read_captions_csv(csv.encode(), image_folder=tmp_path / "nope")


def test_import_rate_export_end_to_end(tmp_path):
    """The path the app takes: import captions, store them, rate, summarise, export."""
    imported = read_captions_csv(b"image;model;caption\nimg0;mlp;a dog\nimg0;gpt;=cmd\nimg1;mlp;a cat\n").captions
    store = RatingStore(tmp_path / "r.sqlite")
    store.create_or_open_set("imported")
    for row in imported.itertuples():
        store.save_caption("imported", row.image_id, row.model_name, row.caption, weights_hash=None, decoding={})
    for (image, model), score in {("img0", "mlp"): 2, ("img0", "gpt"): 0, ("img1", "mlp"): 1}.items():
        store.rate("imported", "alice", image, model, score)
    ratings = store.ratings("imported")
    store.close()
    summary = summary_table(ratings, n_bootstrap=50)
    assert summary[["model", "accuracy", "rank"]].values.tolist() == [["mlp", 75.0, 1], ["gpt", 0.0, 2]]
    book = openpyxl.load_workbook(export_xlsx(summary, ratings, tmp_path / "e.xlsx"))
    assert "'=cmd" in [row[5] for row in book["Ratings"].values]


def test_import_keeps_the_first_caption_of_multi_caption_csv(tmp_path):
    """`--num-captions N` CSVs hold N rows per (image, model): the rated one is caption_index 0."""
    from rating.imports import read_captions_csv

    path = tmp_path / "multi.csv"
    path.write_text("image_id,model_name,caption,caption_index\na.png,m,best caption,0\na.png,m,second caption,1\n")
    result = read_captions_csv(path)
    assert result.captions["caption"].tolist() == ["best caption"]


def test_csv_export_quotes_bare_carriage_returns(tmp_path):
    import csv

    import pandas as pd

    from rating.exports import export_csv

    summary = pd.DataFrame([{"model": "m", "accuracy": 50.0}])
    ratings = pd.DataFrame([{"caption": "line one\rline two", "score": 1}])
    paths = export_csv(summary, ratings, tmp_path)
    rows_path = [p for p in paths if "rating" in p.name][0]
    with open(rows_path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 and rows[0]["caption"] == "line one\rline two"
