"""Protects `python -m rating`, run as users run it (a subprocess): import a workbook with scores (and again,
changing nothing), show the same results table the app shows (text, CSV, JSON), export the files the app
exports, list sets with counts; user mistakes end with one `error: ...` line and exit code 2, no traceback."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import openpyxl
import pandas as pd
import pytest

from helpers import ROOT, write_images
from rating import sets
from rating.cli import main
from rating.store import RatingStore


def rating_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "rating", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=120)


@pytest.fixture()
def workbook(tmp_path):
    images = write_images(tmp_path / "in", 2)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["image", "model", "caption", "rating", "gold_score", None, "pivot", "avg"])
    sheet.append([images[0].name, "mlp", "a dog", 2, 2, None, "mlp", 1.5])
    sheet.append([images[1].name, "mlp", "a cat", 1, None])
    sheet.append([images[0].name, "gpt", "a tree", 0, None])
    sheet.append(["absent.png", "gpt", "a lake", 7, None])  # row 5: invalid score; image not given
    path = tmp_path / "scores.xlsx"
    book.save(path)
    return path


def test_import_results_export_and_sets(tmp_path, workbook, capsys):
    db = tmp_path / "r.sqlite"
    display = tmp_path / "display"
    args = ["import", str(workbook), "--images", str(tmp_path / "in"), "--set", "round1", "--rater", "bob",
            "--db", str(db), "--display-dir", str(display)]
    done = rating_cli(*args)
    assert done.returncode == 0, done.stderr
    assert "warning: row 5: score '7' is not 0, 1 or 2" in done.stderr
    assert "warning: Image 'absent.png'" in done.stderr
    assert "4 caption(s) saved" in done.stdout and "ratings: 3 saved" in done.stdout
    assert len(list(display.glob("*.png"))) == 2  # display copies where the app looks by default

    again = rating_cli(*args)
    assert again.returncode == 0 and "0 caption(s) saved, 4 already there" in again.stdout
    assert "ratings: 0 saved, 3 already there" in again.stdout

    with RatingStore(db) as store:
        expected = sets.results_table(sets.set_results(store, "round1").summary)
        assert len(store.gold_scores("round1")) == 1
    as_csv = rating_cli("results", "--set", "round1", "--db", str(db), "--csv")
    table = pd.read_csv(io.StringIO(as_csv.stdout))
    assert list(table.columns) == list(expected.columns)
    assert table["model"].tolist() == expected["model"].tolist() == ["mlp", "gpt"]
    # headline accuracy on the image rated for both models (mlp 2, gpt 0); over all rated images mlp has (2+1)/4
    assert table["accuracy %"].tolist() == expected["accuracy %"].tolist() == [100.0, 0.0]
    assert table["accuracy % (all rated)"].tolist() == [75.0, 0.0]
    # the other formats in this process (each subprocess pays for importing torch)
    assert main(["results", "--set", "round1", "--db", str(db)]) == 0
    shown = capsys.readouterr().out
    assert "accuracy %" in shown and "by 1 rater(s): bob" in shown
    assert main(["results", "--set", "round1", "--db", str(db), "--json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert [row["model"] for row in as_json["summary"]] == ["mlp", "gpt"] and as_json["raters"] == ["bob"]
    assert as_json["ratings"] == 3 and as_json["agreement"]["raters"] == 1

    out = tmp_path / "out"
    exported = rating_cli("export", "--set", "round1", "--out", str(out), "--db", str(db))
    assert exported.returncode == 0, exported.stderr
    assert sorted(p.name for p in out.iterdir()) == ["round1.xlsx", "round1_history.csv", "round1_ratings.csv",
                                                     "round1_summary.csv"]
    assert len(pd.read_csv(out / "round1_ratings.csv", encoding="utf-8-sig")) == 3

    listed = rating_cli("sets", "--db", str(db))
    assert listed.returncode == 0
    assert listed.stdout.split("\n")[0].split("\t") == ["round1", "3 images", "4 captions", "3 ratings", "1 raters"]


def test_user_mistakes_are_one_line(tmp_path, workbook, capsys):
    db = tmp_path / "r.sqlite"
    done = rating_cli("import", str(workbook), "--set", "s", "--db", str(db))  # scores, no rater
    assert done.returncode == 2 and done.stderr.startswith("error: ") and "no rater" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert main(["sets", "--db", str(db)]) == 0 and "no evaluation sets" in capsys.readouterr().out  # none made

    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("picture,text\na.png,hi\n")
    cases = [
        (["import", str(tmp_path / "nope.csv"), "--set", "s", "--db", str(db)], "not found"),
        (["import", str(workbook), "--set", "s", "--rater", "bob", "--sheet", "Nope", "--db", str(db)],
         "no sheet named 'Nope'"),
        (["import", str(workbook), "--set", "s", "--images", str(tmp_path / "none"), "--db", str(db)],
         "is not a folder"),
        (["import", str(bad_csv), "--set", "s", "--db", str(db)], "missing required column"),
        (["import", str(workbook), "--set", "s", "--rater", " ", "--db", str(db)], "rater name must not be empty"),
        (["results", "--set", "s", "--db", str(tmp_path / "missing.sqlite")], "no rating database"),
        (["results", "--set", "nope", "--db", str(db)], "'nope' not found"),
        (["export", "--set", "nope", "--out", str(tmp_path / "o"), "--db", str(db)], "'nope' not found"),
        (["export", "--set", "s", "--out", str(bad_csv), "--db", str(db)], "is a file"),
    ]
    for args, words in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if not line.startswith("warning:")]
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, err)


def test_gold_from_a_rater(tmp_path, capsys):
    db = tmp_path / "g.sqlite"
    with RatingStore(db) as store:
        store.create_or_open_set("g")
        store.add_image("h1", "a.png", 10, 10)
        store.save_caption("g", "h1", "alpha", "a dog", weights_hash=None, decoding=None)
        store.rate("g", "expert", "h1", "alpha", 2)
    assert main(["gold", "--set", "g", "--from-rater", "expert", "--db", str(db)]) == 0
    assert "1 caption(s) got expert's score as their gold score; set g has 1 gold caption(s)" in capsys.readouterr().out
    assert main(["gold", "--set", "g", "--from-rater", "nobody", "--db", str(db)]) == 2
    assert "error: 'nobody' has rated nothing in set 'g'" in capsys.readouterr().err
    with RatingStore(db) as store:
        assert store.gold_scores("g")["gold_score"].tolist() == [2]
