"""Protects the Compare tab's zoo table: the leaderboard's numbers (one split for every entry) are shown when
the zoo has one, and each entry's own metrics carry the split and dataset they came from, so numbers from
different test sets are never shown as comparable."""

import shutil

import app
from captioning.leaderboard import write_leaderboard
from helpers import ROOT, build_tiny_zoo


def board(names):
    return {"split": "test", "data": "fresh-shapes", "images": 50, "dataset_fingerprint": "0123456789abcdef",
            "decoding": {"preset": "consistent"}, "created": "2026-01-01T00:00:00+00:00", "command": "x",
            "versions": {}, "entries": [{"name": n, "dtype": "float32", "metrics": {"cider": 1.5 + i, "bleu4": 0.25}}
                                        for i, n in enumerate(names)]}


def test_zoo_table_labels_own_metrics_and_shows_the_leaderboard(tmp_path):
    zoo = build_tiny_zoo(tmp_path / "zoo", ["alpha", "beta"])
    shutil.copytree(ROOT / "model_zoo" / "shapes-clip-mlp-k4", zoo / "shapes-clip-mlp-k4")
    ctx = app.make_context(zoo, tmp_path / "r.sqlite", image_dir=tmp_path / "display")
    rows, note = app.zoo_entries(ctx)
    table = app.zoo_table(rows).set_index("model")
    # the demo entry's metrics.json says "split": "test"; its training record names the dataset
    assert table.loc["shapes-clip-mlp-k4", "own metrics measured on"] == "test split of runs/demo/shapes-data"
    assert "cider" in table.loc["shapes-clip-mlp-k4", "own metrics"]
    assert table.loc["alpha", "own metrics measured on"] == "unknown split of synthetic shapes split 0"
    assert set(table["leaderboard"]) == {""} and "trainer.evaluate --zoo" in note

    write_leaderboard(board(["beta", "shapes-clip-mlp-k4"]), zoo / "leaderboard.json")
    rows, note = app.zoo_entries(ctx)
    assert [r["name"] for r in rows] == ["alpha", "beta", "shapes-clip-mlp-k4"]  # the files are not entries
    assert "test split of fresh-shapes, 50 images" in note and "these numbers compare" in note
    table = app.zoo_table(rows, app.read_leaderboard(zoo)).set_index("model")
    assert table.loc["beta", "leaderboard"] == "bleu4 0.250, cider 1.500"
    assert table.loc["shapes-clip-mlp-k4", "leaderboard"] == "bleu4 0.250, cider 2.500"
    assert table.loc["alpha", "leaderboard"] == "not on the leaderboard"
    # the rescan button shows the same table
    assert app.rescan_zoo(ctx)[2].set_index("model").loc["beta", "leaderboard"] == "bleu4 0.250, cider 1.500"
    # the model cards say where each entry's metrics come from
    assert "metrics (test split of runs/demo/shapes-data)" in app.model_cards(ctx, ["shapes-clip-mlp-k4"])
    # an unreadable leaderboard is ignored rather than breaking the page
    (zoo / "leaderboard.json").write_text("{oops")
    assert set(app.zoo_table(rows, app.read_leaderboard(zoo))["leaderboard"]) == {""}
