"""Protects the rating grid (`rating.grid`): it pages in natural file order with each rater's own scores; a blind
set's columns are shuffled per image and per rater, the same way on every reload (pinned, so sets being rated
keep their order), while a set that is not blind shows sorted model names to everyone; the column labels the API
gives (`blind_captions`) and takes back (`column_model`) agree with that rater's grid; `first_unrated` finds
the rater's next unrated caption across pages (wrapping around) and `left_to_rate` counts what is left.
"""

from __future__ import annotations

import pytest

from helpers import MODELS, fill_set
from rating import grid
from rating.store import RatingStore


@pytest.fixture()
def store(tmp_path):
    with RatingStore(tmp_path / "ratings.sqlite") as store:
        yield store


def orders_of(view: grid.GridView) -> list[list[str]]:
    return [[c.model_name for c in r.cells] for r in view.rows]


def test_grid_pages_in_natural_file_order_with_scores(store, tmp_path):
    names = [f"img{i}.png" for i in range(12)][::-1]  # stored in reverse, hashes in another order still
    fill_set(store, "s", names, models=("beta", "alpha"))
    first = grid.grid_page(store, "s", "alice", 0, 5)
    assert (first.pages, first.images, first.captions, first.blind) == (3, 12, 24, False)
    assert [r.file_name for r in first.rows] == ["img0.png", "img1.png", "img2.png", "img3.png", "img4.png"]
    assert all([c.label for c in r.cells] == ["alpha", "beta"] for r in first.rows)
    assert all(r.image_path is None for r in first.rows)  # no display copies anywhere
    last = grid.grid_page(store, "s", "alice", 99, 5)
    assert last.page == 2 and [r.file_name for r in last.rows] == ["img10.png", "img11.png"]
    assert grid.grid_page(store, "s", "alice", -3, 5).page == 0

    row = last.rows[1]
    store.rate("s", "alice", row.image_hash, "beta", 1)
    store.rate("s", "bob", row.image_hash, "alpha", 2)  # another rater's score is not alice's
    again = grid.grid_page(store, "s", "alice", 2, 5)
    assert [c.score for c in again.rows[1].cells] == [None, 1] and again.rated == 1

    display = tmp_path / "display"
    display.mkdir()
    (display / f"{row.image_hash}.png").write_bytes(b"")
    shown = grid.grid_page(store, "s", "alice", 2, 5, image_dir=display)
    assert [r.image_path for r in shown.rows] == [None, str(display / f"{row.image_hash}.png")]
    assert grid.natural_key("IMG10.jpg") > grid.natural_key("img9.jpg")


def test_blind_columns_are_shuffled_per_image_and_per_rater_the_same_way_every_time(store):
    # Pinned: sets being rated must keep each rater's column order across versions of this code.
    assert grid.column_order("set-1", "alice", "0" * 64, ["gamma", "alpha", "beta", "delta"]) == [
        "gamma", "beta", "delta", "alpha"]
    assert grid.column_order("set-1", "bob", "0" * 64, ["gamma", "alpha", "beta", "delta"]) == [
        "delta", "gamma", "alpha", "beta"]
    assert grid.column_order("set-1", "alice", "a" * 64, ["alpha", "beta", "gamma", "delta"]) == [
        "alpha", "gamma", "beta", "delta"]
    fill_set(store, "blind", [f"img{i}.png" for i in range(8)], blind=True)
    view = grid.grid_page(store, "blind", "alice", 0, 10)
    assert view.blind and {c.label for r in view.rows for c in r.cells} == {"Caption A", "Caption B", "Caption C"}
    alice = orders_of(view)
    assert len({tuple(o) for o in alice}) > 1  # differs between images
    assert alice == [grid.column_order("blind", "alice", r.image_hash, MODELS) for r in view.rows]
    assert orders_of(grid.grid_page(store, "blind", " alice ", 0, 10)) == alice  # a reload: the same order
    bob = orders_of(grid.grid_page(store, "blind", "bob", 0, 10))
    assert bob == [grid.column_order("blind", "bob", r.image_hash, MODELS) for r in view.rows]
    assert bob != alice and all(sorted(o) == sorted(MODELS) for o in bob)  # another rater, another order
    revealed = grid.grid_page(store, "blind", "alice", 0, 10, revealed=True)
    assert revealed.rows[0].cells[0].label == f"Caption A = {alice[0][0]}"

    fill_set(store, "open", [f"img{i}.png" for i in range(8)])  # not blind: model names, sorted, for everyone
    for rater in ("alice", "bob"):
        assert orders_of(grid.grid_page(store, "open", rater, 0, 10)) == [sorted(MODELS)] * 8


def test_api_column_labels_agree_with_each_raters_grid(store):
    fill_set(store, "blind", [f"img{i}.png" for i in range(8)], blind=True)
    labels_of = {}
    for rater in ("alice", "bob"):
        cells = {(r.image_hash, c.label): c.model_name for r in grid.grid_page(store, "blind", rater, 0, 10).rows
                 for c in r.cells}
        rows = grid.blind_captions(store, "blind", rater)
        assert "model_name" not in rows[0] and len(rows) == len(cells) == 24
        assert {(r["image_hash"], r["column"]) for r in rows} == set(cells)
        for (image_hash, label), model in cells.items():  # the label a rater rates by maps back to their model
            assert grid.column_model(store, "blind", rater, image_hash, label) == model
        labels_of[rater] = {(r["image_hash"], r["caption"]): r["column"] for r in rows}
    assert labels_of["alice"] != labels_of["bob"]
    with pytest.raises(ValueError, match="has no column 'alpha'") as refused:
        grid.column_model(store, "blind", "bob", f"{0:064x}", "alpha")
    assert "beta" not in str(refused.value) and "gamma" not in str(refused.value)  # names no model
    with pytest.raises(ValueError, match="rater name"):
        grid.blind_captions(store, "blind", " ")


def test_first_unrated_walks_the_raters_grid_across_pages(store):
    hashes = fill_set(store, "blind", [f"img{i}.png" for i in range(5)], blind=True)
    page_size = 2

    def cell(position):
        page, row, column = position
        return grid.grid_page(store, "blind", "bob", page, page_size).rows[row].cells[column]

    in_order = [(h, m) for h in hashes for m in grid.column_order("blind", "bob", h, MODELS)]  # bob's grid order
    assert grid.first_unrated(store, "blind", "bob", page_size) == (0, 0, 0)
    assert grid.left_to_rate(store, "blind", "bob") == 15
    for image_hash, model in in_order[:7]:  # the first two images and one caption of the third
        store.rate("blind", "bob", image_hash, model, 1)
    store.rate("blind", "alice", hashes[2], in_order[7][1], 2)  # alice's scores are not bob's
    found = grid.first_unrated(store, "blind", "bob", page_size)
    assert found == (1, 0, 1) and cell(found).score is None and cell(found).model_name == in_order[7][1]
    assert grid.left_to_rate(store, "blind", "bob") == 8

    # after a position: the next unrated one after it, wrapping around past the end
    assert grid.first_unrated(store, "blind", "bob", page_size, after=in_order[9]) == (1, 1, 1)
    store.rate("blind", "bob", *in_order[7], 0)
    assert grid.first_unrated(store, "blind", "bob", page_size, after=in_order[14]) == (1, 0, 2)
    assert grid.first_unrated(store, "blind", "bob", page_size, after=("no-such-image", "alpha")) == (1, 0, 2)
    # the page that shows an image, as grid_page lays the pages out
    for page in range(2):
        for row in grid.grid_page(store, "blind", "bob", page, page_size).rows:
            assert grid.page_of(store, "blind", row.image_hash, page_size) == page
    assert grid.page_of(store, "blind", "no-such-image", page_size) == 0
    assert grid.first_unrated(store, "blind", "bob", 10) == (0, 2, 2)  # counted with the page size given
    for image_hash, model in in_order[8:]:
        store.rate("blind", "bob", image_hash, model, 2)
    assert grid.first_unrated(store, "blind", "bob", page_size) is None
    assert grid.left_to_rate(store, "blind", "bob") == 0
    with pytest.raises(ValueError, match="page_size"):
        grid.first_unrated(store, "blind", "bob", 0)
