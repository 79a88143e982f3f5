"""Protects the rules the page's team evaluation asks the library for (no UI here): who may create a set and who
counts as an admin with and without accounts (rating.access), which captions a set's overlap closes to a rater
(rating.queue.closed_captions, on both backends) and the grid's next-unrated skipping them, a set opened with an
overlap (rating.sets.open_set), an import that may hold one rater's scores only (rating.intake), and
`python -m rating import --overlap R --owner USER --blind`.
"""

from __future__ import annotations

import pytest

from rating import access, accounts, grid, intake, queue, sets
from rating.cli import main
from rating.store import RatingStore

SET = "team"


@pytest.fixture()
def store(tmp_path):
    store = RatingStore(tmp_path / "r.sqlite")
    yield store
    store.close()


def fill(store: RatingStore, *, overlap: int | None, images: int = 2) -> list[str]:
    sets.open_set(store, SET, "olga", overlap=overlap)
    hashes = [f"{i:064x}" for i in range(images)]
    for i, image in enumerate(hashes):
        store.add_image(image, f"img{i}.png", 8, 8)
        for model in ("alpha", "beta"):
            store.save_caption(SET, image, model, f"{model} {i}", weights_hash=None, decoding=None)
    return hashes


def test_who_creates_sets_and_who_is_admin_with_and_without_accounts(store):
    for name, role in (("ada", "admin"), ("olga", "owner"), ("rita", "rater")):
        accounts.add_user(store, name, role, "long enough password")
    assert [access.may_create_set(store, who, login=True) for who in ("ada", "olga", "rita", "nobody", None)] == [
        True, True, False, False, False]
    assert access.may_create_set(store, "anyone", login=False)  # typed names: everyone creates
    assert access.admins_of(store, "ada", ("rita",), login=True) == ("ada",)
    assert access.admins_of(store, "rita", ("rita",), login=True) == ()  # --admin names do not count with accounts
    assert access.admins_of(store, "rita", ("rita",), login=False) == ("rita",)
    fill(store, overlap=None)
    assert access.managers_of(store, SET, login=True) == "the owner of set 'team' (olga) and the accounts with role admin"
    assert access.managers_of(store, SET, login=False).endswith("and the --admin users")


def test_an_overlap_closes_captions_to_other_raters_and_next_unrated_skips_them(db):
    store = RatingStore(db)
    try:
        hashes = fill(store, overlap=1)
        assert sets.open_set(store, SET, "bob", overlap=5).overlap == 1  # fixed at creation
        assert queue.closed_captions(store, SET, "bob") == set()
        store.rate(SET, "ann", hashes[0], "alpha", 2)
        assert queue.closed_captions(store, SET, "bob") == {(hashes[0], "alpha")}
        assert queue.closed_captions(store, SET, "ann") == set()  # her own rating is not closed to her
        held = queue.next_item(store, SET, "cid")  # cid leases the next open image: its free slots are his now
        assert held["image_hash"] == hashes[0]
        assert queue.closed_captions(store, SET, "bob") == {(hashes[0], "alpha"), (hashes[0], "beta")}
        closed = queue.closed_captions(store, SET, "bob")
        assert grid.first_unrated(store, SET, "bob", page_size=1) == (0, 0, 0)
        assert grid.first_unrated(store, SET, "bob", page_size=1, skip=closed) == (1, 0, 0)
        sets.open_set(store, "everyone", "olga")
        assert queue.closed_captions(store, "everyone", "bob") == set()
    finally:
        store.close()


def test_an_import_may_be_limited_to_one_raters_scores(store, tmp_path):
    fill(store, overlap=None)
    table = tmp_path / "scores.csv"
    table.write_text("image_id,model_name,caption,score,rater\nimg9.png,alpha,a cat,2,olga\nimg9.png,beta,a dog,1,rita\n")
    with pytest.raises(ValueError, match=r"scores by olga; you may import only your own scores \(rita\)"):
        intake.import_captions_file(store, SET, table, rater="rita", only_rater="rita")
    assert store.ratings(SET).empty and len(store.get_captions(SET)) == 4  # nothing saved
    done = intake.import_captions_file(store, SET, table, rater="rita")
    assert done.ratings_saved == 2 and sorted(store.ratings(SET)["rater"]) == ["olga", "rita"]


def test_cli_import_makes_a_set_with_overlap_and_owner(tmp_path, capsys):
    table = tmp_path / "caps.csv"
    table.write_text("image_id,model_name,caption\nx.png,alpha,a red circle\n")
    db = str(tmp_path / "cli.sqlite")
    common = ["--db", db, "--display-dir", str(tmp_path / "display")]
    assert main(["import", str(table), "--set", "pairs", "--overlap", "2", "--owner", "olga", "--blind", *common]) == 0
    with RatingStore(db) as store:
        made = store.get_set("pairs")
        assert (made["overlap"], made["owner"], made["blind"]) == (2, "olga", True)
    capsys.readouterr()
    assert main(["import", str(table), "--set", "pairs", "--overlap", "3", *common]) == 0
    assert "warning: set 'pairs' exists with overlap 2; --overlap is used only when a set is created" in (
        capsys.readouterr().err)
    assert main(["import", str(table), "--set", "zero", "--overlap", "0", *common]) == 2
    assert capsys.readouterr().err.startswith("error: --overlap is the number of raters per caption, at least 1")
