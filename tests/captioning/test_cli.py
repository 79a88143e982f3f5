"""Protects the batch captioning command as a user runs it: `python -m captioning caption|list`.

A bad image is named on stderr and skipped while the others are captioned, and so is every other file that is
not an image we read (with the reason); phone photos (HEIC) are captioned; user mistakes give one clear line
and a non-zero exit, never a traceback; the CSV has the field's `image_id, model_name, caption` layout.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from captioning.tokenization import train_bpe_tokenizer
from helpers import tiny_zoo_entry

ROOT = Path(__file__).resolve().parents[2]


def run(*args, cwd=ROOT):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "captioning", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    tok = train_bpe_tokenizer(["a red circle", "a blue square"] * 10, vocab_size=280)
    for i, name in enumerate(["alpha", "beta"]):
        tiny_zoo_entry(root, name, tok, seed=i)
    return root


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ["a.png", "b.JPG", "c.jpeg"]:
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).convert("RGB").save(
            folder / name, format="PNG" if name.endswith("png") else "JPEG")
    (folder / "broken.jpg").write_text("this is not a picture")
    (folder / "notes.txt").write_text("ignored")
    return folder


def test_caption_folder_writes_csv_and_skips_bad_image(zoo, images, tmp_path):
    out = tmp_path / "captions.csv"
    res = run("caption", "--zoo", str(zoo), "--images", str(images), "--out", str(out), "--preset", "consistent",
              "--max-new-tokens", "6", "--quiet")
    assert res.returncode == 0, res.stderr
    assert "broken.jpg" in res.stderr and "Traceback" not in res.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[:3] == ["image_id", "model_name", "caption"]
    assert sorted({r["image_id"] for r in rows}) == ["a.png", "b.JPG", "c.jpeg"]
    assert {r["model_name"] for r in rows} == {"alpha", "beta"}
    assert len(rows) == 6 and all(r["preset"] == "consistent" and r["num_beams"] == "5" for r in rows)


def test_every_skipped_file_is_named_with_its_reason_and_heic_photos_are_captioned(zoo, tmp_path):
    pillow_heif.register_heif_opener()  # to write the HEIC file here; the CLI's loader registers its own
    folder = tmp_path / "phone"
    folder.mkdir()
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated, as phones store portrait photos
    photo.save(folder / "IMG_0001.HEIC", format="HEIF", exif=exif.tobytes())
    photo.save(folder / "IMG_0002.jpg", format="JPEG")
    (folder / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (folder / "notes.txt").write_text("not a picture")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden: passed over quietly
    (folder / "IMG_0002.jpg.xmp").write_text("<x:xmpmeta/>")  # a sidecar: passed over quietly
    out = tmp_path / "phone.csv"
    res = run("caption", "--zoo", str(zoo), "--images", str(folder), "--out", str(out), "--models", "alpha",
              "--max-new-tokens", "4", "--quiet")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert "skipped: drawing.svg: SVG is a vector format; export it as PNG or JPEG" in lines
    assert "skipped: notes.txt: not an image file (.txt)" in lines
    assert "DS_Store" not in res.stderr and ".xmp" not in res.stderr and "Traceback" not in res.stderr
    assert "skipped 2 file(s) that are not images" in lines[-1]
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["image_id"] for r in rows) == ["IMG_0001.HEIC", "IMG_0002.jpg"]


def test_a_folder_without_images_names_what_it_holds(zoo, tmp_path):
    folder = tmp_path / "drawings"
    folder.mkdir()
    (folder / "logo.svg").write_text("<svg/>")
    res = run("caption", "--zoo", str(zoo), "--images", str(folder), "--out", str(tmp_path / "x.csv"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "skipped: logo.svg: SVG is a vector format" in res.stderr
    assert "no images found" in res.stderr and ".heic" in res.stderr


def test_caption_selected_models_with_sampling(zoo, images, tmp_path):
    out = tmp_path / "c.csv"
    res = run("caption", "--zoo", str(zoo), "--images", str(images), "--out", str(out), "--models", "beta",
              "--preset", "safe_diverse", "--num-captions", "2", "--max-new-tokens", "5", "--quiet")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(out.open()))
    assert {r["model_name"] for r in rows} == {"beta"} and len(rows) == 6
    assert {r["temperature"] for r in rows} == {"0.55"} and {r["caption_index"] for r in rows} == {"0", "1"}


@pytest.mark.parametrize("args,message", [
    (["--models", "gamma"], "Model 'gamma' not found"),
    (["--preset", "wild"], "invalid choice"),
])
def test_user_mistakes_give_one_clear_line(zoo, images, tmp_path, args, message):
    res = run("caption", "--zoo", str(zoo), "--images", str(images), "--out", str(tmp_path / "x.csv"), *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_missing_folders_are_explained(zoo, tmp_path):
    res = run("caption", "--zoo", str(zoo), "--images", str(tmp_path / "nowhere"))
    assert res.returncode == 2 and "nowhere" in res.stderr and "Traceback" not in res.stderr
    res = run("list", "--zoo", str(tmp_path / "nozoo"))
    assert res.returncode == 2 and "does not exist" in res.stderr


def test_list_shows_entries(zoo):
    res = run("list", "--zoo", str(zoo))
    assert res.returncode == 0 and "alpha" in res.stdout and "beta" in res.stdout
    rows = json.loads(run("list", "--zoo", str(zoo), "--json").stdout)
    assert [r["name"] for r in rows] == ["alpha", "beta"] and rows[0]["prefix_length"] == 3
