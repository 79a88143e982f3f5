"""Protects the app's Pairwise tab, its handlers called as plain Python functions: a vote is saved for the pair
on screen and the next pair follows, model names never reach the page before (or after) voting, a vote with
no pair on screen or a bad outcome is a clear gr.Error, and the results and export show the leaderboard.
The pairwise library underneath has its own tests in tests/rating/test_pairwise.py."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from page import blocks as page_blocks
from page import context as page_context
from page import pairwise as page_pairwise
from page import session as page_session

MODELS = ["secret-alpha", "secret-beta", "secret-gamma"]
SET = "pw-set"


@pytest.fixture()
def ctx(tmp_path):
    context = page_context.make_context(tmp_path / "no-zoo", tmp_path / "ratings.sqlite", samples_dir=tmp_path / "samples",
                               image_dir=tmp_path / "display")
    context.store.create_or_open_set(SET)
    for i in range(3):
        context.store.add_image(f"hash{i}", f"photo{i}.jpg", 32, 32)
        Image.new("RGB", (32, 32), "blue").save(context.image_dir / f"hash{i}.png")
        for model in MODELS:
            context.store.save_caption(SET, f"hash{i}", model, f"caption {i} by {model[-4:]}", weights_hash=None,
                                       decoding=None)
    yield context
    context.store.close()


def opened(ctx) -> dict:
    session, line, _, _ = page_session.open_set(ctx, page_session.new_session(), "alice", SET, False, "greedy")
    assert "pw-set" in line
    return session


def test_vote_is_saved_and_the_next_pair_shown_without_model_names(ctx):
    session = opened(ctx)
    pair, image, caption_a, caption_b, status = page_pairwise.pairwise_show(ctx, session)
    assert status.startswith("Pair 1 of 9") and "photo" in status  # 3 images x 3 models: every pair on every image
    assert Path(image).name == f"{pair['image_hash']}.png"
    assert caption_a.startswith("caption") and caption_a != caption_b
    page = " ".join(map(str, (image, caption_a, caption_b, status)))
    assert not any(name in page for name in MODELS)  # names stay server-side, in the pair state

    shown = page_pairwise.pairwise_vote(ctx, "a", session, pair)
    votes = ctx.store.votes(SET)
    assert votes[["rater", "image_hash", "model_a", "model_b", "outcome"]].values.tolist() == [
        ["alice", pair["image_hash"], pair["model_a"], pair["model_b"], "a"]]
    assert votes["caption_a"].tolist() == [caption_a]
    next_pair, *page_after = shown
    assert "Saved “A is better”" in page_after[-1] and "Pair 2 of 9" in page_after[-1]
    assert (next_pair["image_hash"], {next_pair["model_a"], next_pair["model_b"]}) != (
        pair["image_hash"], {pair["model_a"], pair["model_b"]})
    assert not any(name in " ".join(map(str, page_after)) for name in MODELS)

    shown = page_pairwise.pairwise_vote(ctx, "both_bad", session, next_pair)
    for _ in range(7):
        shown = page_pairwise.pairwise_vote(ctx, "b", session, shown[0])
    assert shown[0]["image_hash"] is None and "All 9 pairs of this set voted" in shown[-1]
    assert sorted(ctx.store.votes(SET)["outcome"]) == ["a"] + ["b"] * 7 + ["both_bad"]


def test_bad_votes_are_clear_errors(ctx):
    with pytest.raises(gr.Error, match="Open an evaluation set first"):
        page_pairwise.pairwise_vote(ctx, "a", page_session.new_session(), page_pairwise.new_pair())
    session = opened(ctx)
    with pytest.raises(gr.Error, match="No pair of this set is on screen"):
        page_pairwise.pairwise_vote(ctx, "a", session, page_pairwise.new_pair())
    pair = page_pairwise.pairwise_show(ctx, session)[0]
    with pytest.raises(gr.Error, match="outcome must be one of"):
        page_pairwise.pairwise_vote(ctx, "tie", session, pair)
    other = {**session, "rater": "bob"}  # a pair shown to alice is not bob's to vote on
    with pytest.raises(gr.Error, match="No pair of this set is on screen"):
        page_pairwise.pairwise_vote(ctx, "a", other, pair)
    assert ctx.store.votes(SET).empty
    assert "Open an evaluation set" in page_pairwise.pairwise_show(ctx, page_session.new_session())[-1]


def test_results_and_export_show_the_leaderboard(ctx):
    session = opened(ctx)
    board, matrix, text = page_pairwise.pairwise_results(ctx, session)
    assert board.empty and "No pairwise votes" in text
    pair = page_pairwise.pairwise_show(ctx, session)[0]
    for _ in range(9):
        winner = "a" if "alpha" in pair["model_a"] or "beta" in pair["model_b"] else "b"  # alpha > gamma > beta
        pair = page_pairwise.pairwise_vote(ctx, winner, session, pair)[0]
    board, matrix, text = page_pairwise.pairwise_results(ctx, session)
    assert board["model"].tolist() == ["secret-alpha", "secret-gamma", "secret-beta"]
    assert list(board.columns) == ["rank", "model", "rating", "95% CI", "votes", "wins", "ties", "losses",
                                   "win rate %"]
    assert matrix.set_index("model").loc["secret-alpha", "secret-beta"] == 100.0
    assert "9 vote(s) by 1 rater(s)" in text
    files = page_pairwise.pairwise_export(ctx, session)
    assert [Path(f).name for f in files] == ["pw-set_pairwise.csv", "pw-set_win_rates.csv", "pw-set_votes.csv",
                                             "pw-set_pairwise.xlsx"]


def test_the_page_has_the_pairwise_tab(ctx):
    demo = page_blocks.build_app(context=ctx)
    ids = {block.elem_id for block in demo.blocks.values()}
    assert {"pair-next", "caption-a", "caption-b", "vote-a", "vote-b", "vote-both-good", "vote-both-bad",
            "pair-board", "pair-matrix"} <= ids


def test_the_rater_can_limit_the_pairs_per_image(ctx):
    session = opened(ctx)
    status = page_pairwise.pairwise_show(ctx, session, "1")[-1]
    assert status.startswith("Pair 1 of 3")  # one pair per image instead of all three
    pair = page_pairwise.pairwise_show(ctx, session, "1")[0]
    for _ in range(3):
        pair, *_, status = page_pairwise.pairwise_vote(ctx, "a", session, pair, "1")
    assert "All 3 pairs of this set voted" in status and pair["image_hash"] is None
    assert page_pairwise.pairwise_show(ctx, session, "all")[-1].startswith("Pair 4 of 9")  # the rest, if wanted
    for bad in ("0", "many"):
        with pytest.raises(gr.Error, match="Pairs per image must be"):
            page_pairwise.pairwise_show(ctx, session, bad)


def test_vote_buttons_work_only_while_a_pair_is_on_screen():
    assert all(b.interactive is True for b in page_pairwise.vote_buttons_state({"image_hash": "h"}))
    assert all(b.interactive is False for b in page_pairwise.vote_buttons_state(page_pairwise.new_pair()))
