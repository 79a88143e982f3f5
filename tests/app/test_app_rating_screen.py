"""Protects the rating screen's handlers (page/compare.py, page/session.py, page/results.py) without a browser:
undo and clear put the store back exactly, next unrated turns to the right page and marks the caption to
focus, the inputs fold once a set has captions, mistakes land next to their field, the Blind box is fixed for
an existing set and never carries over to a new one, and Results says what is left to rate (and shows no
placeholder tables before there is anything to show)."""

from __future__ import annotations

import pytest

from helpers import no_progress, write_images
from page import compare as page_compare
from page import results as page_results
from page import session as page_session

SET, RATER = "screen", "rita"



@pytest.fixture()
def captioned(ctx, tmp_path):
    """A set of 3 images x 2 models, drawn 2 images to a page."""
    files = write_images(tmp_path / "in", 3)
    session, _, _ = page_compare.caption(ctx, page_session.new_session(), RATER, SET, False,
                                         [str(f) for f in files], [], ["alpha", "beta"], "greedy",
                                         progress=no_progress)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(page_compare.grid_view, "__defaults__", (2,))
        yield session


def scores(ctx) -> dict[tuple[str, str], int]:
    table = ctx.store.ratings(SET, RATER)
    return {(r.image_hash, r.model_name): int(r.score) for r in table.itertuples()}


def test_caption_puts_the_focus_on_the_first_unrated_caption_and_folds_the_inputs(ctx, captioned):
    view = page_compare.grid_view(ctx, captioned)
    assert captioned["focus"] == [view.rows[0].image_hash, view.rows[0].cells[0].model_name]
    folded = page_compare.fold_setup(ctx, captioned, ["alpha", "beta"], "greedy")
    assert folded.open is False and "models: alpha, beta" in folded.label and "New images" in folded.label
    assert page_compare.fold_setup(ctx, page_session.new_session(), [], "greedy").open is True
    assert "0 of 6 rated" in page_compare.progress_html(ctx, captioned)
    assert page_compare.progress_html(ctx, page_session.new_session()) == ""  # no bar without a set


def test_undo_puts_back_the_previous_score_or_clears_it(ctx, captioned):
    row = page_compare.grid_view(ctx, captioned).rows[0]
    key = (row.image_hash, row.cells[0].model_name)
    history = []
    status, _, progress, history = page_compare.rate_caption(ctx, *key, "alpha on img0_0.png", captioned, 1, history)
    assert "Saved 1" in status and "1 of 6 rated" in progress
    _, _, _, history = page_compare.rate_caption(ctx, *key, "alpha on img0_0.png", captioned, 2, history)
    assert scores(ctx) == {key: 2} and [h["previous"] for h in history] == [None, 1]

    session, status, _, progress, history = page_compare.undo(ctx, captioned, history)
    assert scores(ctx) == {key: 1} and "back to 1" in status and session["focus"] == list(key)
    assert session["version"] > captioned["version"]  # the grid is redrawn with the old score
    session, status, _, progress, history = page_compare.undo(ctx, session, history)
    assert scores(ctx) == {} and "unrated again" in status and "0 of 6 rated" in progress
    assert page_compare.undo(ctx, session, history)[1] == "Nothing to undo in this set."


def test_undo_of_a_rating_on_another_page_turns_to_it(ctx, captioned):
    third = page_compare.grid_view(ctx, {**captioned, "page": 1}).rows[0]
    key = (third.image_hash, third.cells[1].model_name)
    *_, history = page_compare.rate_caption(ctx, *key, "beta", {**captioned, "page": 1}, 0, [])
    session, *_ = page_compare.undo(ctx, captioned, history)  # the rater has gone back to page 1 meanwhile
    assert session["page"] == 1 and session["focus"] == list(key) and scores(ctx) == {}


def test_clear_removes_the_score_and_can_be_undone(ctx, captioned):
    row = page_compare.grid_view(ctx, captioned).rows[1]
    key = (row.image_hash, row.cells[1].model_name)
    assert "no score to clear" in page_compare.clear_rating(ctx, *key, "beta", captioned, [])[1]
    *_, history = page_compare.rate_caption(ctx, *key, "beta", captioned, 2, [])
    session, status, _, progress, history = page_compare.clear_rating(ctx, *key, "beta", captioned, history)
    assert scores(ctx) == {} and "Cleared" in status and session["focus"] == list(key)
    page_compare.undo(ctx, session, history)
    assert scores(ctx) == {key: 2}


def test_next_unrated_turns_to_the_next_page_with_one_and_wraps(ctx, captioned):
    first_page = page_compare.grid_view(ctx, captioned).rows
    for row in first_page:  # page 1 fully rated
        for cell in row.cells:
            page_compare.rate_caption(ctx, row.image_hash, cell.model_name, "x", captioned, 2)
    session, message = page_compare.next_unrated(ctx, captioned)
    second = page_compare.grid_view(ctx, {**captioned, "page": 1}).rows[0]
    assert session["page"] == 1 and session["focus"] == [second.image_hash, second.cells[0].model_name]
    for cell in second.cells:
        page_compare.rate_caption(ctx, second.image_hash, cell.model_name, "x", captioned, 1)
    assert "Every caption" in page_compare.next_unrated(ctx, session)[1]


def test_page_turns_focus_the_new_pages_first_caption(ctx, captioned):
    session = page_compare.change_page(ctx, captioned, 1)
    second = page_compare.grid_view(ctx, session).rows[0]
    assert session["page"] == 1 and session["focus"] == [second.image_hash, second.cells[0].model_name]
    assert session["version"] > captioned["version"]


def test_mistakes_are_said_next_to_their_field(ctx, tmp_path):
    files = [str(f) for f in write_images(tmp_path / "in", 1)]
    out = page_compare.caption_on_page(ctx, page_session.new_session(), " ", SET, False, files, [], ["alpha"],
                                       "greedy", progress=no_progress)
    names, models, images = out[-3:]
    assert "rater name must not be empty" in names and models == "" and images == ""
    out = page_compare.caption_on_page(ctx, page_session.new_session(), RATER, SET, False, files, [], [],
                                       "greedy", progress=no_progress)
    assert out[-3:] == ("", "⚠️ Choose at least one model.", "")
    out = page_compare.caption_on_page(ctx, page_session.new_session(), RATER, SET, False, [], [], ["alpha"],
                                       "greedy", progress=no_progress)
    assert "Add images first" in out[-1]
    assert SET not in page_session.set_choices(ctx)  # no empty set left behind by a failed first Caption


def test_blind_is_fixed_for_an_existing_set_and_never_carries_over(ctx):
    page_session.open_set(ctx, page_session.new_session(), RATER, "hidden", True, "greedy")
    box, _, fixed = page_session.set_controls(ctx, "hidden")
    assert box.value is True and box.interactive is False and fixed is True
    box, _, fixed = page_session.set_controls(ctx, "a-new-set", fixed)  # from the blind set to a new name
    assert box.value is False and box.interactive is True and fixed is False
    box, _, _ = page_session.set_controls(ctx, "a-new-set-2", False)  # typing on: the user's own choice stays
    assert box == page_session.gr.skip()


def test_results_say_what_is_left_and_show_no_placeholder_tables(ctx, captioned):
    summary, text, chart, raters, empty, seen = page_results.show_results(ctx, page_session.new_session(), None)
    assert summary.visible is False and chart.visible is False and "Open an evaluation set" in empty
    summary, text, chart, raters, empty, seen = page_results.show_results(ctx, captioned, None)
    assert summary.visible is False and "No ratings in set" in empty and "6 of 6 caption(s) have no score" in empty
    row = page_compare.grid_view(ctx, captioned).rows[0]
    page_compare.rate_caption(ctx, row.image_hash, row.cells[0].model_name, "x", captioned, 2)
    assert page_results.refresh_if_new(ctx, captioned, None, seen)[0].visible is True  # a new rating: redrawn
    summary, text, chart, raters, empty, seen = page_results.show_results(ctx, captioned, None)
    assert summary.visible is True and empty == "" and seen == [SET, 1]
    assert "5 of 6 caption(s) have no score yet (alpha 2, beta 3)" in text and "You (rita) have 5 left" in text
    assert page_results.refresh_if_new(ctx, captioned, None, seen) == (page_results.gr.skip(),) * 6  # nothing new
