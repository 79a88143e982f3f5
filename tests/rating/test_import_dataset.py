"""Protects bringing a dataset split into an evaluation set (`python -m rating import-dataset`, over
`rating.intake.import_dataset_split`): the split's images with the dataset's captions as references, a seeded
`--limit` draw, captioning with zoo models so Results can set automatic metrics beside the raters, nothing
doubled on a re-run, clear one-line errors and no empty set left by a failed first import; and an image
imported by name first and with its file later being one image, its scores kept."""
from __future__ import annotations

import csv

import pytest

from helpers import MODELS, build_tiny_zoo, write_images
from rating import intake, sets
from rating.cli import main
from rating.store import RatingStore


@pytest.fixture()
def dataset(tmp_path):
    """A captions folder: 5 test images (2 captions each) and 3 train images."""
    root = tmp_path / "data"
    images = write_images(root / "images", 8)
    with open(root / "captions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption", "split"])
        for i, path in enumerate(images):
            split = "test" if i < 5 else "train"
            writer.writerow([f"images/{path.name}", f"a picture number {i}", split])
            writer.writerow([f"images/{path.name}", f"image {i} with noise", split])
    return root


def test_import_dataset_adds_images_with_references_once(tmp_path, dataset, capsys):
    db, display = tmp_path / "r.sqlite", tmp_path / "display"
    args = ["import-dataset", str(dataset), "--set", "refs", "--db", str(db), "--display-dir", str(display)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "5 image(s) of the test split (of 5), 10 reference caption(s) added" in out
    assert "no models given" in out
    assert len(list(display.glob("*.png"))) == 5
    with RatingStore(db) as store:
        references = store.references("refs")
        assert len(references) == 5 and all(len(r) == 2 for r in references.values())
        assert sorted(r[0] for r in references.values()) == [f"a picture number {i}" for i in range(5)]
    assert main(args) == 0  # again: nothing doubled
    assert "0 reference caption(s) added" in capsys.readouterr().out
    with RatingStore(db) as store:
        assert sum(len(r) for r in store.references("refs").values()) == 10


def test_limit_is_a_seeded_draw(tmp_path, dataset):
    def drawn(seed: int, db_name: str) -> list[str]:
        db = tmp_path / db_name
        assert main(["import-dataset", str(dataset), "--set", "s", "--limit", "2", "--seed", str(seed),
                     "--db", str(db), "--display-dir", str(tmp_path / "d")]) == 0
        with RatingStore(db) as store:
            return sorted(ref for refs in store.references("s").values() for ref in refs if "number" in ref)

    first = drawn(0, "a.sqlite")
    assert len(first) == 2 and drawn(0, "b.sqlite") == first
    assert any(drawn(seed, f"c{seed}.sqlite") != first for seed in (1, 2, 3))


def test_captioned_split_gets_metrics_beside_the_raters(tmp_path, dataset, capsys):
    zoo = build_tiny_zoo(tmp_path / "zoo", MODELS[:2])
    db = tmp_path / "r.sqlite"
    assert main(["import-dataset", str(dataset), "--set", "cap", "--models", ",".join(MODELS[:2]),
                 "--zoo", str(zoo), "--db", str(db), "--display-dir", str(tmp_path / "d")]) == 0
    assert "10 new caption(s)" in capsys.readouterr().out
    with RatingStore(db) as store:
        captions = store.get_captions("cap")
        assert len(captions) == 10 and {c["model_name"] for c in captions} == set(MODELS[:2])
        for c in captions:
            store.rate("cap", "ann", c["image_hash"], c["model_name"], 2 if c["model_name"] == MODELS[0] else 0)
        found = sets.set_results(store, "cap", metric_bertscore=False)
    assert found.metric_models is not None and set(found.metric_models["model"]) == set(MODELS[:2])


def test_mistakes_are_one_line_and_leave_no_set(tmp_path, dataset, capsys):
    db = tmp_path / "r.sqlite"
    assert main(["import-dataset", str(tmp_path / "nowhere"), "--set", "x", "--db", str(db)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["import-dataset", str(dataset), "--set", "x", "--models", "nope", "--zoo",
                 str(build_tiny_zoo(tmp_path / "zoo", MODELS[:1])), "--db", str(db)]) == 2
    assert "Model 'nope' not found" in capsys.readouterr().err
    assert main(["import-dataset", str(dataset), "--set", "x", "--split", "val", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    with RatingStore(db) as store:
        assert [s["name"] for s in store.list_sets()] == []


def test_image_imported_by_name_then_with_its_file_is_one_image(tmp_path):
    images = write_images(tmp_path / "in", 1)
    sheet = tmp_path / "caps.csv"
    sheet.write_text(f"image_id,model_name,caption,score\n{images[0].name},m1,a dog,2\n")
    with RatingStore(tmp_path / "r.sqlite") as store:
        sets.open_set(store, "s", "ann")
        intake.import_captions_file(store, "s", sheet, rater="ann")  # no images: kept under its name
        later = intake.import_captions_file(store, "s", sheet, tmp_path / "in", rater="ann")
        assert later.attached == 2 and not later.problems  # the caption and its score moved onto the file
        captions = store.get_captions("s")
        assert len(captions) == 1 and captions[0]["image_hash"] != intake.image_id_hash(images[0].name)
        ratings = store.ratings("s")
        assert len(ratings) == 1 and int(ratings["score"].iloc[0]) == 2
        assert ratings["image_hash"].iloc[0] == captions[0]["image_hash"]
