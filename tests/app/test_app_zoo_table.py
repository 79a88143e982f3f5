"""Protects the Compare tab's zoo table: the leaderboard's numbers (one split for every entry) are shown when
the zoo has one, and each entry's own metrics carry the split and dataset they came from, so numbers from
different test sets are never shown as comparable."""

import shutil

from captioning.leaderboard import read_leaderboard, write_leaderboard
from helpers import ROOT, build_tiny_zoo
from page import context as page_context
from page import zoo as page_zoo


def board(names):
    return {"split": "test", "data": "fresh-shapes", "images": 50, "dataset_fingerprint": "0123456789abcdef",
            "decoding": {"preset": "consistent"}, "created": "2026-01-01T00:00:00+00:00", "command": "x",
            "versions": {}, "entries": [{"name": n, "dtype": "float32", "metrics": {"cider": 1.5 + i, "bleu4": 0.25}}
                                        for i, n in enumerate(names)]}


def test_zoo_table_labels_own_metrics_and_shows_the_leaderboard(tmp_path):
    zoo = build_tiny_zoo(tmp_path / "zoo", ["alpha", "beta"])
    shutil.copytree(ROOT / "model_zoo" / "shapes-clip-mlp-k4", zoo / "shapes-clip-mlp-k4")
    ctx = page_context.make_context(zoo, tmp_path / "r.sqlite", image_dir=tmp_path / "display")
    rows, note = page_zoo.zoo_entries(ctx)
    table = page_zoo.zoo_table(rows).set_index("model")
    # the demo entry's metrics.json says "split": "test"; its training record names the dataset
    assert table.loc["shapes-clip-mlp-k4", "measured on"] == "own: test split of runs/demo/shapes-data"
    assert table.loc["shapes-clip-mlp-k4", "ranked by"].startswith("BLEU-4 ")
    assert "cider" in table.loc["shapes-clip-mlp-k4", "other metrics"]
    assert table.loc["alpha", "measured on"] == "own: unknown split of synthetic shapes split 0"
    assert table.loc["alpha", "ranked by"] == "BLEU-4 0.100" and "trainer.evaluate --zoo" in note

    write_leaderboard(board(["beta", "shapes-clip-mlp-k4"]), zoo / "leaderboard.json")
    rows, note = page_zoo.zoo_entries(ctx)
    assert [r["name"] for r in rows] == ["alpha", "beta", "shapes-clip-mlp-k4"]  # the files are not entries
    assert "test split of fresh-shapes, 50 images" in note and "these numbers compare" in note
    table = page_zoo.zoo_table(rows, read_leaderboard(zoo)).set_index("model")
    assert table.loc["beta", "ranked by"] == "BLEU-4 0.250" and table.loc["beta", "other metrics"] == "cider 1.500"
    assert table.loc["beta", "measured on"] == "leaderboard: test split of fresh-shapes"
    assert table.loc["shapes-clip-mlp-k4", "other metrics"] == "cider 2.500"
    # an entry not on the leaderboard shows its own number, labelled as its own
    assert table.loc["alpha", "ranked by"] == "BLEU-4 0.100" and table.loc["alpha", "measured on"].startswith("own: ")
    # the model picker shows the same number, with where it was measured, one line per model
    picker = dict((value, label) for label, value in page_zoo.model_choices(rows, read_leaderboard(zoo)))
    assert "BLEU-4 0.250 (leaderboard: test split of fresh-shapes)" in picker["beta"] and "\n" not in picker["beta"]
    assert "BLEU-4 0.100 (own: unknown split" in picker["alpha"]
    # the rescan button shows the same table
    assert page_zoo.rescan_zoo(ctx)[2].set_index("model").loc["beta", "ranked by"] == "BLEU-4 0.250"
    # the model cards say where each entry's metrics come from
    assert "metrics (test split of runs/demo/shapes-data)" in page_zoo.model_cards(ctx, ["shapes-clip-mlp-k4"])
    # an unreadable leaderboard is ignored rather than breaking the page
    (zoo / "leaderboard.json").write_text("{oops")
    assert set(page_zoo.zoo_table(rows, read_leaderboard(zoo))["measured on"].str[:4]) == {"own:"}
