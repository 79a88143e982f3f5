"""Protects `python -m trainer.evaluate --captions` and `--zoo`: captions made anywhere (our CSV, a peer's
image_id/model_name/caption CSV, a COCO results JSON) score exactly as evaluating the entry that wrote them;
ids are matched to the split by the rating import's loose rules; the leaderboard scores every entry on one
split and records split, fingerprint, decoding and versions; the zoo listing ignores it."""

import csv
import json
import shutil

import pytest

from captioning.commands.cli import main as caption_main
from captioning.generation import get_settings
from captioning.leaderboard import LEADERBOARD_JSON, LEADERBOARD_MD, read_leaderboard
from captioning.zoo import list_zoo, load_entry
from helpers import ROOT
from trainer.captions_file import match_to_split, read_captions
from trainer.data import load_dataset, write_shapes_dataset
from trainer.evaluate import main as evaluate_main
from trainer.scoring import evaluate_split

ENTRY = ROOT / "model_zoo" / "shapes-clip-grid-k9"  # the demo's tiny shapes captioner: real captions in ms
METRICS = ["bleu", "cider", "object_accuracy"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_shapes_dataset(root, n=10, seed=7, splits=(0.0, 0.0, 1.0))
    return root


def evaluate_json(capsys, *args):
    capsys.readouterr()
    assert evaluate_main([*args, "--metrics", ",".join(METRICS), "--max-new-tokens", "20", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_captions_file_scores_equal_the_entry_that_wrote_them(shapes, tmp_path, capsys):
    split = load_dataset(shapes, split="test")
    direct, _ = evaluate_split(load_entry(ENTRY), split, settings=get_settings("consistent", max_new_tokens=20),
                               metrics=METRICS)
    assert direct["cider"] > 1  # real captions, so equality below means something
    for out in ("captions.csv", "results.json"):
        assert caption_main(["caption", "--zoo", str(ENTRY.parent), "--models", ENTRY.name, "--images",
                             str(shapes / "test"), "--out", str(tmp_path / out), "--max-new-tokens", "20",
                             "--quiet"]) == 0
        result = evaluate_json(capsys, "--captions", str(tmp_path / out), "--data", str(shapes), "--split", "test")
        block = result["models"][ENTRY.name]
        assert block["metrics"] == pytest.approx(direct) and block["unmatched_ids"] == []
    # the COCO results file is what the COCO tools read
    results = json.loads((tmp_path / "results.json").read_text())
    assert {tuple(sorted(r)) for r in results} == {("caption", "image_id", "model_name")} and len(results) == 10


def test_peer_csv_gives_one_block_per_model_and_matches_ids_loosely(shapes, tmp_path, capsys):
    split = load_dataset(shapes, split="test")
    ids = sorted(split.image_paths)
    file_names = {i: split.image_paths[i].name for i in ids}
    good = {i: " and ".join(f"a {o['size']} {o['color']} {o['shape']}" for o in split.objects[i]) for i in ids}
    path = tmp_path / "peer.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Image", "Model", "Caption"])
        for i in ids:  # the peer names images in its own way: upper case, no extension, a folder in front
            writer.writerow([file_names[i].upper(), "peer-good", good[i]])
            writer.writerow([f"photos/{file_names[i].removesuffix('.png')}", "peer-bad", "a photo of a cat"])
        writer.writerow(["not_in_split.png", "peer-bad", "a dog"])
    result = evaluate_json(capsys, "--captions", str(path), "--data", str(shapes))
    assert set(result["models"]) == {"peer-good", "peer-bad"}
    assert result["models"]["peer-good"]["metrics"]["object_accuracy"] == 1.0
    assert result["models"]["peer-bad"]["metrics"]["object_accuracy"] == 0.0
    assert result["models"]["peer-bad"]["unmatched_ids"] == ["not_in_split.png"]
    assert result["models"]["peer-good"]["captioned_images"] == 10
    # a COCO results file keyed by the COCO ids (ints) matches the split's own ids
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps([{"image_id": int(i), "caption": good[i]} for i in ids]))
    assert read_captions(coco) == {"coco": {i: good[i] for i in ids}}
    assert match_to_split("coco", read_captions(coco)["coco"], split).captions == good


def test_captions_file_mistakes_are_one_line(shapes, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    for text, expected in (('{"a": 1}', "non-empty list"), ('[{"caption": "x"}]', "entry [0]"), ("[", "not valid JSON")):
        bad.write_text(text)
        capsys.readouterr()
        assert evaluate_main(["--captions", str(bad), "--data", str(shapes)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err
    bad.write_text(json.dumps([{"image_id": "elsewhere.jpg", "caption": "x"}]))
    assert evaluate_main(["--captions", str(bad), "--data", str(shapes)]) == 2
    assert "name an image of the annotations; split 'test' has" in capsys.readouterr().err
    assert evaluate_main(["--captions", str(tmp_path / "missing.csv"), "--data", str(shapes)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_zoo_leaderboard(shapes, tmp_path, capsys):
    zoo = tmp_path / "zoo"
    for name in ("shapes-clip-grid-k9", "shapes-frozen-clip-k4"):
        shutil.copytree(ROOT / "model_zoo" / name, zoo / name)
    (zoo / "broken").mkdir()
    capsys.readouterr()
    assert evaluate_main(["--zoo", str(zoo), "--data", str(shapes), "--metrics", ",".join(METRICS),
                          "--max-new-tokens", "20"]) == 0
    assert "| 1 | shapes-clip-grid-k9 |" in capsys.readouterr().out
    board = read_leaderboard(zoo)
    assert board["split"] == "test" and board["images"] == 10 and len(board["dataset_fingerprint"]) == 16
    assert board["decoding"]["max_new_tokens"] == 20 and board["versions"]["torch"]
    assert [e["name"] for e in board["entries"]] == ["shapes-clip-grid-k9", "shapes-frozen-clip-k4", "broken"]
    assert "error" in board["entries"][2]
    # the numbers are the entry's evaluation on that split, and the files do not become zoo entries
    direct = evaluate_json(capsys, "--model", str(zoo / "shapes-frozen-clip-k4"), "--data", str(shapes))
    assert board["entries"][1]["metrics"] == pytest.approx(direct["metrics"])
    assert direct["dataset_fingerprint"] == board["dataset_fingerprint"]
    assert (zoo / LEADERBOARD_MD).read_text().count("| shapes-") == 2 and (zoo / LEADERBOARD_JSON).is_file()
    assert [r["name"] for r in list_zoo(zoo)] == ["broken", "shapes-clip-grid-k9", "shapes-frozen-clip-k4"]
