"""Tests for trainer/data/: every dataset reader, format detection, the inspect CLI, the shapes
dataset generator, the object-accuracy metric and the per-epoch subset sampler.

They protect: what counts as a kept/skipped/missing/dropped caption or image in each format (so training
never sees a missing file or an empty caption, and the user is told what was left out), that split names
and seeded splits are stable, that the CLI fails with one line instead of a traceback, and that the
shapes dataset is deterministic and its captions agree with the objects drawn, and that one file named
two ways (or through a symlink) is one image in one split in every reader. All data is generated in
tmp_path; nothing is downloaded.
"""
from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from trainer.data import (
    CaptionRecord,
    DatasetError,
    Split,
    SubsetSampler,
    caption_objects,
    detect_format,
    inspect_dataset,
    load_dataset,
    main,
    object_accuracy,
    subset_indices,
    write_shapes_dataset,
)

REPO = Path(__file__).resolve().parents[2]


def _png(path: Path, color=(200, 10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), color).save(path)
    return path


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.data", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


# ----------------------------------------------------------------------------------------------------
# Dataset builders (small files for every reader)
# ----------------------------------------------------------------------------------------------------


def _make_coco(root: Path) -> Path:
    """train2014: 3 images (one file missing); captions incl. an over-long one, an empty one, messy
    whitespace and one pointing at an unknown image. val2014: 1 image."""
    _png(root / "train2014" / "COCO_train2014_1.jpg")
    _png(root / "train2014" / "COCO_train2014_2.jpg")
    # image 3 is named in the json but its file is missing
    _png(root / "val2014" / "COCO_val2014_9.jpg")
    train = {
        "images": [
            {"id": 1, "file_name": "COCO_train2014_1.jpg"},
            {"id": 2, "file_name": "COCO_train2014_2.jpg"},
            {"id": 3, "file_name": "COCO_train2014_3.jpg"},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "caption": "  A dog\n runs   on\tgrass. "},
            {"id": 11, "image_id": 1, "caption": "A brown dog outside."},
            {"id": 12, "image_id": 2, "caption": "A cat sleeping."},
            {"id": 13, "image_id": 2, "caption": "one two three four five six seven eight nine ten eleven"},
            {"id": 14, "image_id": 2, "caption": "   "},
            {"id": 15, "image_id": 3, "caption": "A bird whose image is missing."},
            {"id": 16, "image_id": 99, "caption": "An image that is not listed."},
        ],
    }
    val = {"images": [{"id": 9, "file_name": "COCO_val2014_9.jpg"}],
           "annotations": [{"id": 20, "image_id": 9, "caption": "A boat."}]}
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "captions_train2014.json").write_text(json.dumps(train))
    (root / "annotations" / "captions_val2014.json").write_text(json.dumps(val))
    return root


def _make_karpathy(root: Path) -> Path:
    images = []
    for index, split in enumerate(["train", "restval", "val", "test", "train"]):
        name = f"img{index}.jpg"
        _png(root / "Images" / name)
        images.append({"filename": name, "imgid": index, "split": split,
                       "sentences": [{"raw": f"caption {index} a", "tokens": []},
                                     {"raw": f"caption {index} b", "tokens": []}]})
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_flickr8k.json").write_text(json.dumps({"images": images, "dataset": "flickr8k"}))
    return root


def _make_flickr_token(root: Path) -> Path:
    text_dir = root / "Flickr8k_text"
    text_dir.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _png(root / "Flicker8k_Dataset" / name)
    lines = [
        "a.jpg#0\tA child in a pink dress .",
        "a.jpg#1\tA girl climbing stairs .",
        "b.jpg#0\tA black dog .",
        "b.jpg this line has no tab",  # line 4: malformed (no tab)
        "b.jpg\tA caption without the #n suffix",  # line 5: malformed (no #n)
        "c.jpg#0\t   ",  # line 6: malformed (empty caption)
        "c.jpg#1\tA man on a bike .",
        "",
    ]
    (text_dir / "Flickr8k.token.txt").write_text("\n".join(lines))
    (text_dir / "Flickr_8k.trainImages.txt").write_text("a.jpg\nb.jpg\n")
    (text_dir / "Flickr_8k.devImages.txt").write_text("c.jpg\n")
    (text_dir / "Flickr_8k.testImages.txt").write_text("")
    return root


def _make_kaggle(root: Path, n_images: int = 10) -> Path:
    root.mkdir(parents=True)
    with open(root / "captions.txt", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        for index in range(n_images):
            _png(root / "Images" / f"k{index}.jpg")
            writer.writerow([f"k{index}.jpg", f'A dog, named "Rex {index}", runs .'])
            writer.writerow([f"k{index}.jpg", f"plain caption {index}"])
    return root


# ----------------------------------------------------------------------------------------------------
# COCO
# ----------------------------------------------------------------------------------------------------


def test_coco_folder_counts_missing_long_and_bad_captions(tmp_path):
    root = _make_coco(tmp_path / "coco")
    assert detect_format(root) == "coco"
    split = load_dataset(root, split="train", max_caption_tokens=8)
    assert isinstance(split, Split) and split.name == "train"
    report = split.report
    assert (report.images, report.captions) == (2, 3)
    assert report.missing_images == 1  # image 3
    assert report.dropped_captions == 1  # the eleven-word caption
    assert report.skipped_lines == 2  # empty caption + unknown image_id 99
    assert split.references == {"1": ["A dog runs on grass.", "A brown dog outside."], "2": ["A cat sleeping."]}
    assert split.image_paths["1"] == root / "train2014" / "COCO_train2014_1.jpg"
    assert split.records[0] == CaptionRecord(root / "train2014" / "COCO_train2014_1.jpg",
                                             "A dog runs on grass.", "1")
    assert all(r.image_path.is_file() for r in split.records)
    assert split.objects is None
    assert any("COCO_train2014_3.jpg" in note for note in report.notes)
    assert any("99" in note for note in report.notes)


def test_coco_options_and_errors(tmp_path):
    root = _make_coco(tmp_path / "coco")
    # "validation" maps to the val file; the other split is not read.
    val = load_dataset(root, split="validation")
    assert val.name == "val" and val.references == {"9": ["A boat."]}
    # A json passed directly: its split comes from its name.
    direct = load_dataset(root / "annotations" / "captions_train2014.json", split="train")
    assert direct.report.captions == 4 and direct.report.missing_images == 1
    with pytest.raises(DatasetError, match="has no 'val' split"):
        load_dataset(root / "annotations" / "captions_train2014.json", split="val")
    # count_tokens decides what is "too long": counting characters, only "A cat sleeping." fits in 16.
    by_chars = load_dataset(root, split="train", max_caption_tokens=16, count_tokens=len)
    assert by_chars.references == {"2": ["A cat sleeping."]}
    # Without image checks the missing image stays in.
    unchecked = load_dataset(root, split="train", check_images=False)
    assert "3" in unchecked.references and unchecked.report.missing_images == 0
    with pytest.raises(DatasetError, match="COCO_train2014_3.jpg"):
        load_dataset(root, split="train", missing_images="error")
    with pytest.raises(DatasetError, match="has no 'test' split; it has: train, val"):
        load_dataset(root, split="test")
    with pytest.raises(DatasetError, match="'skip' or 'error'"):
        load_dataset(root, split="train", missing_images="ignore")
    with pytest.raises(DatasetError, match="did you mean 'coco'"):
        load_dataset(root, split="train", format="cocoo")
    with pytest.raises(DatasetError, match="Unknown split"):
        load_dataset(root, split="holdout")


# ----------------------------------------------------------------------------------------------------
# Karpathy
# ----------------------------------------------------------------------------------------------------


def test_karpathy_restval_joins_train_and_images_found_in_subfolder(tmp_path):
    root = _make_karpathy(tmp_path / "karpathy")
    assert detect_format(root) == "karpathy"
    assert detect_format(root / "dataset_flickr8k.json") == "karpathy"
    train = load_dataset(root, split="train")
    assert sorted(train.references) == ["img0.jpg", "img1.jpg", "img4.jpg"]  # img1 is restval
    assert train.references["img1.jpg"] == ["caption 1 a", "caption 1 b"]
    assert train.image_paths["img1.jpg"] == root / "Images" / "img1.jpg"
    assert train.report.captions == 6 and train.report.missing_images == 0
    assert list(load_dataset(root, split="val").references) == ["img2.jpg"]
    assert list(load_dataset(root, split="test").references) == ["img3.jpg"]


def test_karpathy_coco_uses_filepath_and_cocoid(tmp_path):
    root = tmp_path / "kc"
    _png(root / "val2014" / "COCO_val2014_42.jpg")
    data = {"dataset": "coco", "images": [
        {"filepath": "val2014", "filename": "COCO_val2014_42.jpg", "cocoid": 42, "split": "restval",
         "sentences": [{"raw": "A red bus .", "tokens": ["a", "red", "bus"]}, {"tokens": ["a", "bus"]}]},
        {"filepath": "val2014", "filename": "COCO_val2014_43.jpg", "cocoid": 43, "split": "train",
         "sentences": [{"raw": "missing image"}]},
    ]}
    (root / "dataset_coco.json").write_text(json.dumps(data))
    train = load_dataset(root / "dataset_coco.json", split="train")
    assert train.references == {"42": ["A red bus .", "a bus"]}
    assert train.image_paths["42"] == root / "val2014" / "COCO_val2014_42.jpg"
    assert train.report.missing_images == 1


# ----------------------------------------------------------------------------------------------------
# Flickr8k
# ----------------------------------------------------------------------------------------------------


def test_flickr8k_token_file_skips_malformed_lines_with_line_numbers(tmp_path):
    root = _make_flickr_token(tmp_path / "flickr")
    assert detect_format(root) == "flickr8k"
    assert detect_format(root / "Flickr8k_text" / "Flickr8k.token.txt") == "flickr8k"
    train = load_dataset(root, split="train")
    assert train.references == {"a.jpg": ["A child in a pink dress .", "A girl climbing stairs ."],
                                "b.jpg": ["A black dog ."]}
    assert train.image_paths["a.jpg"] == root / "Flicker8k_Dataset" / "a.jpg"
    assert train.report.skipped_lines == 3
    notes = " ".join(train.report.notes)
    assert "line 4" in notes and "line 5" in notes and "line 6" in notes
    val = load_dataset(root, split="dev")  # Flickr's "dev" is our "val"
    assert val.references == {"c.jpg": ["A man on a bike ."]}
    # Pointing at the token file itself finds the same images.
    same = load_dataset(root / "Flickr8k_text" / "Flickr8k.token.txt", split="train")
    assert same.references == train.references


def test_kaggle_captions_txt_commas_quotes_and_seeded_split(tmp_path):
    root = _make_kaggle(tmp_path / "kaggle", n_images=10)
    assert detect_format(root) == "flickr8k"
    splits = {name: load_dataset(root, split=name) for name in ("train", "val", "test")}
    sizes = {name: split.report.images for name, split in splits.items()}
    assert sizes == {"train": 8, "val": 1, "test": 1}
    ids = [set(split.references) for split in splits.values()]
    assert set().union(*ids) == {f"k{i}.jpg" for i in range(10)}
    assert sum(map(len, ids)) == 10  # disjoint: an image is in exactly one split
    any_image = next(iter(splits["train"].references))
    index = any_image[1:-4]
    assert splits["train"].references[any_image] == [f'A dog, named "Rex {index}", runs .', f"plain caption {index}"]
    assert any("seed" in note for note in splits["train"].report.notes)
    # Deterministic: reading again gives the same split.
    assert set(load_dataset(root, split="train").references) == ids[0]


def test_kaggle_captions_txt_unquoted_comma_and_bad_row(tmp_path):
    root = tmp_path / "k2"
    root.mkdir()
    _png(root / "Images" / "x.jpg")
    (root / "captions.txt").write_text("image,caption\nx.jpg,a dog , running\nx.jpg,\n,no image\n")
    result = inspect_dataset(root)
    total = {key: sum(s[key] for s in result["splits"].values()) for key in ("images", "captions")}
    assert total == {"images": 1, "captions": 1}
    captions = [c for name in result["splits"] for c in load_dataset(root, split=name).references.get("x.jpg", [])]
    assert captions == ["a dog , running"]
    assert all(s["skipped_lines"] == 2 for s in result["splits"].values())


# ----------------------------------------------------------------------------------------------------
# Folder (captions.csv / captions.jsonl)
# ----------------------------------------------------------------------------------------------------


def test_folder_csv_semicolons_bom_and_split_column(tmp_path):
    root = tmp_path / "mine"
    for name in ("p1.png", "p2.png", "p3.png"):
        _png(root / name)
    rows = [
        "file_name;caption;split",
        "p1.png;Een kat, op de mat;train",
        "p1.png;A cat; still the same cat? no: this row has too many fields;train",
        "p2.png;\"Quoted; with semicolon\";train",
        "p3.png;A view;validation",
        "p3.png;   ;val",
        "p4.png;A missing picture;test",
        "p2.png;Odd split;holdout",
    ]
    (root / "captions.csv").write_bytes(("\ufeff" + "\n".join(rows) + "\n").encode("utf-8"))
    assert detect_format(root) == "folder"
    train = load_dataset(root, split="train")
    assert train.references == {"p1.png": ["Een kat, op de mat"], "p2.png": ["Quoted; with semicolon"]}
    # too many fields + empty caption + unknown split
    assert train.report.skipped_lines == 3
    assert "line 3" in " ".join(train.report.notes)
    assert load_dataset(root, split="val").references == {"p3.png": ["A view"]}
    test = load_dataset(root, split="test")
    assert test.report.missing_images == 1 and test.records == []


def test_folder_csv_without_split_column_is_split_deterministically(tmp_path):
    root = tmp_path / "plain"
    lines = ["image,caption"]
    for index in range(20):
        _png(root / "images" / f"i{index:02d}.jpg")
        lines.append(f"i{index:02d}.jpg,picture number {index}")
    (root / "captions.csv").write_text("\n".join(lines))
    train = load_dataset(root, split="train")
    val = load_dataset(root, split="val")
    test = load_dataset(root, split="test")
    assert (train.report.images, val.report.images, test.report.images) == (16, 2, 2)
    assert not set(train.references) & set(val.references)
    assert {path.parent for path in train.image_paths.values()} == {root / "images"}
    assert set(load_dataset(root, split="val").references) == set(val.references)


def test_folder_jsonl_skips_bad_json_lines(tmp_path):
    root = tmp_path / "jl"
    _png(root / "a.jpg")
    _png(root / "b.jpg")
    lines = [
        json.dumps({"image": "a.jpg", "caption": "first", "split": "train"}),
        '{"image": "b.jpg", "caption": "broken json", ',
        json.dumps({"file_name": "b.jpg", "captions": ["one", "  two  words "], "split": "train"}),
        json.dumps({"image": "a.jpg"}),
        json.dumps(["not", "an", "object"]),
        json.dumps({"image": "a.jpg", "caption": "for testing", "split": "test"}),
    ]
    (root / "captions.jsonl").write_text("\n".join(lines) + "\n")
    assert detect_format(root) == "folder"
    train = load_dataset(root, split="train")
    assert train.references == {"a.jpg": ["first"], "b.jpg": ["one", "two words"]}
    assert train.report.skipped_lines == 3
    notes = " ".join(train.report.notes)
    assert "line 2" in notes and "line 4" in notes and "line 5" in notes
    assert load_dataset(root, split="test").references == {"a.jpg": ["for testing"]}
    with pytest.raises(DatasetError, match="no 'val' split"):
        load_dataset(root, split="val")


# ----------------------------------------------------------------------------------------------------
# Detection, inspection and the CLI
# ----------------------------------------------------------------------------------------------------


def test_detect_format_errors_say_what_was_looked_for(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as error:
        detect_format(empty)
    for looked_for in ("captions_*.json", "dataset_*.json", "Flickr8k.token.txt", "captions.csv"):
        assert looked_for in str(error.value)
    with pytest.raises(DatasetError, match="does not exist"):
        detect_format(tmp_path / "nope")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(DatasetError, match="neither COCO"):
        detect_format(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text('{"images": [')
    with pytest.raises(DatasetError, match="not valid JSON"):
        detect_format(tmp_path / "broken.json")


def test_inspect_dataset_reports_every_split(tmp_path):
    result = inspect_dataset(_make_flickr_token(tmp_path / "flickr"))
    assert result["format"] == "flickr8k"
    assert result["splits"]["train"] == {"images": 2, "captions": 3, "missing_images": 0,
                                         "skipped_lines": 3, "dropped_captions": 0}
    assert result["splits"]["val"]["images"] == 1
    assert result["splits"]["test"]["images"] == 0


def test_inspect_table_and_format_errors_in_process(tmp_path, capsys):
    root = _make_coco(tmp_path / "coco")
    assert main(["inspect", str(root)]) == 0
    table = capsys.readouterr().out
    assert "missing_images" in table and "COCO_train2014_3.jpg" in table
    assert [line.split()[:3] for line in table.splitlines() if line.startswith(("train", "val"))] == \
        [["train", "2", "4"], ["val", "1", "1"]]
    assert main(["inspect", str(root), "--format", "karpathy"]) == 2
    assert "Karpathy split file" in capsys.readouterr().err


def test_inspect_cli_json_and_clean_errors(tmp_path):
    root = _make_coco(tmp_path / "coco")
    done = _run_cli("inspect", str(root), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["format"] == "coco"
    assert result["splits"]["train"] == {"images": 2, "captions": 4, "missing_images": 1,
                                         "skipped_lines": 2, "dropped_captions": 0}
    assert result["splits"]["val"]["captions"] == 1 and "test" not in result["splits"]

    bad = _run_cli("inspect", str(tmp_path / "does-not-exist"))
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "does not exist" in bad.stderr


# ----------------------------------------------------------------------------------------------------
# Shapes dataset and object accuracy
# ----------------------------------------------------------------------------------------------------


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_shapes_dataset_is_deterministic(tmp_path):
    first = write_shapes_dataset(tmp_path / "a", n=30, seed=3)
    write_shapes_dataset(tmp_path / "b", n=30, seed=3)
    write_shapes_dataset(tmp_path / "c", n=30, seed=4)
    assert first["splits"] == {"train": 24, "val": 3, "test": 3}
    assert first["captions"] == 150
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    train_a = (tmp_path / "a" / "annotations" / "captions_train.json").read_text()
    train_c = (tmp_path / "c" / "annotations" / "captions_train.json").read_text()
    assert train_a != train_c
    # Rewriting a folder with fewer images leaves no stale images behind.
    write_shapes_dataset(tmp_path / "a", n=10, seed=3)
    assert len(list((tmp_path / "a" / "train").glob("*.png"))) == 8


def test_shapes_round_trip_with_objects(tmp_path):
    summary = write_shapes_dataset(tmp_path / "shapes", n=40, seed=0, image_size=48)
    assert detect_format(tmp_path / "shapes") == "coco"
    val = load_dataset(tmp_path / "shapes", split="val")
    assert val.report.images == summary["splits"]["val"] == 4 and val.report.missing_images == 0
    assert val.objects is not None and set(val.objects) == set(val.references)
    for image_id, objects in val.objects.items():
        assert 1 <= len(objects) <= 3
        assert all(set(o) == {"shape", "color", "size", "position"} for o in objects)
        assert len(val.references[image_id]) == 5 and len(set(val.references[image_id])) == 5
        with Image.open(val.image_paths[image_id]) as image:
            assert image.size == (48, 48) and image.mode == "RGB"
    # Every reference caption names exactly the objects drawn (and their sizes).
    train = load_dataset(tmp_path / "shapes", split="train")
    for position in range(5):
        captions = {image_id: refs[position] for image_id, refs in train.references.items()}
        result = object_accuracy(captions, train.objects)
        assert result["object_accuracy"] == 1.0 and result["images"] == 32
        assert set(result["by_objects"]) <= {1, 2, 3} and all(v == 1.0 for v in result["by_objects"].values())
    for image_id, refs in train.references.items():
        for caption in refs:
            for obj in train.objects[image_id]:
                assert f"{obj['size']} {obj['color']} {obj['shape']}" in caption


def test_shapes_pixels_show_the_named_colours(tmp_path):
    write_shapes_dataset(tmp_path / "s", n=10, seed=1)
    split = load_dataset(tmp_path / "s", split="train")
    from trainer.data import COLORS

    for image_id, objects in split.objects.items():
        with Image.open(split.image_paths[image_id]) as image:
            pixels = set(image.convert("RGB").getdata())
        for obj in objects:  # the shape's interior has its exact colour
            assert COLORS[obj["color"]] in pixels


def test_object_accuracy_cases():
    objects = {"1": [{"shape": "circle", "color": "red", "size": "large", "position": "left"},
                     {"shape": "square", "color": "blue", "size": "small", "position": "right"}],
               "2": [{"shape": "triangle", "color": "green", "size": "small", "position": "center"},
                     {"shape": "triangle", "color": "green", "size": "large", "position": "top"}]}
    right = {"1": "a large red circle and a small blue square", "2": "two green triangles"}
    assert object_accuracy(right, objects) == {"object_accuracy": 1.0, "images": 2, "by_objects": {2: 1.0}}
    assert object_accuracy({"1": "a red large circle next to a blue square"}, objects)["object_accuracy"] == 1.0
    assert object_accuracy({"1": "a large green circle and a small blue square"}, objects)["object_accuracy"] == 0.0
    assert object_accuracy({"1": "a red circle, a blue square and a yellow star triangle"},
                           objects)["object_accuracy"] == 0.0
    assert object_accuracy({"1": "a red circle"}, objects)["object_accuracy"] == 0.0  # blue square not named
    assert object_accuracy({"1": right["1"], "2": "a green circle"}, objects) == {"object_accuracy": 0.5, "images": 2,
                                                                                  "by_objects": {2: 0.5}}
    one = {**objects, "3": [{"shape": "triangle", "color": "yellow", "size": "small", "position": "top"}]}
    by_objects = object_accuracy({"1": "a red circle", "2": right["2"], "3": "a yellow triangle"}, one)["by_objects"]
    assert by_objects == {1: 1.0, 2: 0.5}  # image 1 misses its blue square; the one-object image is right
    assert caption_objects("red and blue squares") == {("blue", "square")}
    assert caption_objects("a red shape that is a circle") == set()  # too far apart
    with pytest.raises(ValueError, match="without objects"):
        object_accuracy({"3": "a red circle"}, objects)


# ----------------------------------------------------------------------------------------------------
# Subset sampling
# ----------------------------------------------------------------------------------------------------


def test_subset_sampler_draws_captions_per_image_afresh_each_epoch():
    # 30 images with 5 captions each (records 5i..5i+4) and one image with 2 captions (records 150, 151).
    groups = [list(range(5 * i, 5 * i + 5)) for i in range(30)] + [[150, 151]]
    sampler = SubsetSampler(152, 1.0, seed=3, groups=groups, per_group=1)
    epochs = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == 31  # one caption of every image
        assert sorted(i // 5 for i in order if i < 150) == list(range(30)) and (150 in order) != (151 in order)
        epochs.append(sorted(order))
    assert len({tuple(e) for e in epochs}) == 4  # a different caption per image each epoch
    sampler.set_epoch(1)
    assert sorted(sampler) == epochs[1]  # reproducible for a (seed, epoch)
    two = SubsetSampler(152, 1.0, seed=3, groups=groups, per_group=2)
    assert len(two) == 62 and set(two.indices()) >= {150, 151}  # the short image gives both its captions
    half = SubsetSampler(152, 0.5, seed=3, groups=groups, per_group=1)
    assert len({i // 5 for i in half}) == len(half) == 16  # the ratio applies to images: round(31 / 2)
    with pytest.raises(ValueError, match="per_group"):
        SubsetSampler(152, 1.0, groups=groups, per_group=0)


def test_subset_indices_fresh_each_epoch_and_reproducible():
    first = subset_indices(1000, 0.1, epoch=0, seed=7)
    assert len(first) == 100 and first == sorted(set(first)) and all(0 <= i < 1000 for i in first)
    assert subset_indices(1000, 0.1, epoch=0, seed=7) == first
    assert subset_indices(1000, 0.1, epoch=1, seed=7) != first
    assert subset_indices(1000, 0.1, epoch=0, seed=8) != first
    seen = set().union(*(subset_indices(1000, 0.1, epoch=e, seed=7) for e in range(60)))
    assert len(seen) > 990  # over many epochs nearly the whole dataset is used
    assert subset_indices(5, 1.0, epoch=3, seed=0) == [0, 1, 2, 3, 4]
    assert subset_indices(5, 0.01, epoch=0, seed=0).__len__() == 1
    with pytest.raises(ValueError, match="ratio"):
        subset_indices(10, 0.0, epoch=0, seed=0)

    sampler = SubsetSampler(50, 0.2, seed=1)
    sampler.set_epoch(2)
    order = list(sampler)
    assert len(order) == len(sampler) == 10
    assert sorted(order) == subset_indices(50, 0.2, epoch=2, seed=1)


# ----------------------------------------------------------------------------------------------------
# One file named two ways is one image, in every reader
# ----------------------------------------------------------------------------------------------------


def _resolved_by_split(root: Path) -> dict[str, set[Path]]:
    return {name: {p.resolve() for p in load_dataset(root, split=name).image_paths.values()}
            for name in ("train", "val", "test")}


def test_coco_one_file_under_two_ids_is_one_image(tmp_path):
    root = _make_coco(tmp_path / "coco")
    data = json.loads((root / "annotations" / "captions_train2014.json").read_text())
    data["images"].append({"id": 5, "file_name": "./COCO_train2014_1.jpg"})
    data["annotations"].append({"id": 30, "image_id": 5, "caption": "The same dog, again."})
    (root / "annotations" / "captions_train2014.json").write_text(json.dumps(data))
    train = load_dataset(root, split="train", max_caption_tokens=8)
    assert (train.report.images, train.report.captions) == (2, 4)
    assert train.references["1"] == ["A dog runs on grass.", "A brown dog outside.", "The same dog, again."]
    assert "5" not in train.references
    assert any("'5' is '1'" in note for note in train.report.notes)


def test_karpathy_one_file_named_two_ways_is_one_image(tmp_path):
    root = _make_karpathy(tmp_path / "karpathy")
    data = json.loads((root / "dataset_flickr8k.json").read_text())
    data["images"].append({"filename": "./img0.jpg", "split": "train", "sentences": [{"raw": "caption 0 c"}]})
    (root / "dataset_flickr8k.json").write_text(json.dumps(data))
    train = load_dataset(root, split="train")
    assert sorted(train.references) == ["img0.jpg", "img1.jpg", "img4.jpg"]
    assert train.references["img0.jpg"] == ["caption 0 a", "caption 0 b", "caption 0 c"]
    assert inspect_dataset(root)["splits"]["train"]["images"] == 3


def test_flickr_token_file_one_file_named_two_ways_is_one_image(tmp_path):
    root = _make_flickr_token(tmp_path / "flickr")
    token = root / "Flickr8k_text" / "Flickr8k.token.txt"
    token.write_text(token.read_text() + "./a.jpg#2\tThe same child .\n")
    (root / "Flickr8k_text" / "Flickr_8k.trainImages.txt").write_text("a.jpg\n./b.jpg\n")  # split list says ./b.jpg
    train = load_dataset(root, split="train")
    assert train.references == {"a.jpg": ["A child in a pink dress .", "A girl climbing stairs .", "The same child ."],
                                "b.jpg": ["A black dog ."]}
    assert inspect_dataset(root)["splits"]["train"]["images"] == 2


def test_kaggle_seeded_split_keeps_every_name_of_a_file_together(tmp_path):
    root = _make_kaggle(tmp_path / "kaggle", n_images=10)
    with open(root / "captions.txt", "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([[f"./k{i}.jpg", f"again {i}"] for i in range(10)])
    by_split = _resolved_by_split(root)
    assert sum(map(len, by_split.values())) == 10  # ten files, each counted once
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    train = load_dataset(root, split="train")
    assert all(len(captions) == 3 for captions in train.references.values())


def _folder_named_two_ways(root: Path, n: int = 20) -> Path:
    lines = ["image,caption"]
    for index in range(n):
        _png(root / "imgs" / f"p{index}.png")
        lines += [f"imgs/p{index}.png,picture {index}", f"./imgs/p{index}.png,the same picture {index}"]
    (root / "captions.csv").write_text("\n".join(lines) + "\n")
    return root


def test_folder_file_named_two_ways_is_one_image_in_one_split(tmp_path):
    root = _folder_named_two_ways(tmp_path / "two")
    (root / "imgs" / "link.png").symlink_to(root / "imgs" / "p0.png")  # a third name, through a symlink
    with open(root / "captions.csv", "a") as handle:
        handle.write("imgs/link.png,still picture 0\n")
    by_split = _resolved_by_split(root)
    assert sum(map(len, by_split.values())) == 20
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"]) \
        and not (by_split["val"] & by_split["test"]), "a train/test leak"
    summary = inspect_dataset(root)
    assert sum(s["images"] for s in summary["splits"].values()) == 20
    assert sum(s["captions"] for s in summary["splits"].values()) == 41
    split_of_p0 = next(name for name, paths in by_split.items() if (root / "imgs" / "p0.png").resolve() in paths)
    p0 = load_dataset(root, split=split_of_p0).references["imgs/p0.png"]
    assert p0 == ["picture 0", "the same picture 0", "still picture 0"]


def test_inspect_cli_counts_a_file_named_two_ways_once(tmp_path):
    root = _folder_named_two_ways(tmp_path / "two", n=10)
    done = _run_cli("inspect", str(root), "--json")
    assert done.returncode == 0, done.stderr
    splits = json.loads(done.stdout)["splits"]
    assert sum(s["images"] for s in splits.values()) == 10
    assert sum(s["captions"] for s in splits.values()) == 20
