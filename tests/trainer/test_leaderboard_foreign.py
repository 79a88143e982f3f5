"""`python -m trainer.evaluate --zoo` scores another maker's model beside our own on the same split, lists it
with its family, and its numbers equal evaluating that entry alone."""

import json
import shutil

import pytest

from captioning.leaderboard import LEADERBOARD_MD, read_leaderboard
from foreign_models import build_git
from helpers import ROOT
from trainer.data import write_shapes_dataset
from trainer.evaluate import main as evaluate_main

METRICS = "bleu,cider"


def test_zoo_leaderboard_ranks_own_and_foreign_entries_together(tmp_path, capsys):
    data = tmp_path / "shapes"
    write_shapes_dataset(data, n=6, seed=5, splits=(0.0, 0.0, 1.0))
    zoo = tmp_path / "zoo"
    shutil.copytree(ROOT / "model_zoo" / "shapes-clip-grid-k9", zoo / "shapes-clip-grid-k9")
    build_git(zoo / "git-tiny")
    assert evaluate_main(["--zoo", str(zoo), "--data", str(data), "--metrics", METRICS, "--max-new-tokens", "12"]) == 0
    board = read_leaderboard(zoo)
    families = {e["name"]: e["family"] for e in board["entries"]}
    assert families == {"shapes-clip-grid-k9": "prefix captioner", "git-tiny": "GIT"}
    assert board["entries"][0]["name"] == "shapes-clip-grid-k9"  # trained on shapes: beats random weights
    assert "| git-tiny | GIT |" in (zoo / LEADERBOARD_MD).read_text()
    capsys.readouterr()
    assert evaluate_main(["--model", str(zoo / "git-tiny"), "--data", str(data), "--metrics", METRICS,
                          "--max-new-tokens", "12", "--json"]) == 0
    alone = json.loads(capsys.readouterr().out)["metrics"]
    assert next(e for e in board["entries"] if e["name"] == "git-tiny")["metrics"] == pytest.approx(alone)
