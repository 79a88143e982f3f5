"""The Pairwise view: two captions of the same image side by side, names hidden, one vote per pair.

The schedule, the vote store and the Bradley-Terry ranking are `rating.pairwise`; this view adds the page's
wording, keyboard shortcuts on the vote buttons (← A, → B, ↑ tie, ↓ both bad: `static/keys.js`), and an
end state: after the last pair the buttons are disabled and the page says so, with a link to the ranking.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from page.context import AppContext
from page.results import chosen_set
from page.session import bind, esc, require_names, require_session, user_errors, who
from rating import pairwise

ALL_PAIRS = "all"  # the Pairs per image box's default: every model pair on every image
PAIRWISE_ROUNDS = 1000  # bootstrap resamples for the pairwise intervals (about 1 s for a handful of models)
# The vote buttons, their shortcut shown on each.
VOTE_LABELS = {"a": "← A is better", "b": "B is better →", "both_good": "↑ Tie: both good",
               "both_bad": "↓ Both bad"}


def new_pair() -> dict[str, Any]:
    """The pair on screen, kept server-side (gr.State): which model is A and which is B never reaches the page."""
    return {"eval_set": None, "rater": None, "image_hash": None, "model_a": None, "model_b": None, "file_name": None}


def pairs_limit(choice: Any) -> int | None:
    """The Pairs per image box: "all" (None) or a number of pairs per image."""
    if choice in (None, "", ALL_PAIRS):
        return None
    try:
        limit = int(choice)
    except (TypeError, ValueError):
        raise gr.Error(f"Pairs per image must be '{ALL_PAIRS}' or a whole number, got {esc(str(choice))!r}.",
                       print_exception=False) from None
    if limit < 1:
        raise gr.Error(f"Pairs per image must be at least 1, got {limit}.", print_exception=False)
    return limit


def _show_pair(ctx: AppContext, eval_set: str, rater: str, limit: Any = ALL_PAIRS
               ) -> tuple[dict[str, Any], str | None, str, str, str]:
    """The next unvoted pair of the schedule: (pair state, image path, caption A, caption B, status line)."""
    per_image = pairs_limit(limit)
    view = pairwise.next_pair(ctx.store, eval_set, rater, ctx.image_dir, pairs_per_image=per_image)
    if view is None:
        done, total = pairwise.pair_progress(ctx.store, eval_set, rater, pairs_per_image=per_image)
        if not total:
            return (new_pair(), None, "", "", "No pairs to compare: the set needs captions from at least two models "
                    "for the same images.")
        return (new_pair(), None, "", "", f"All {total} pairs of this set voted. Thank you! The vote buttons are "
                "off now; [see the ranking](#pair-results-btn) with **Show pairwise results** below.")
    state = {"eval_set": eval_set, "rater": rater, "image_hash": view.image_hash, "model_a": view.model_a,
             "model_b": view.model_b, "file_name": view.file_name}
    status = f"Pair {view.done + 1} of {view.total} · image **{esc(view.file_name)}**"
    if view.identical:
        status += f" · {view.identical} pair(s) with identical captions counted as ties without asking"
    if view.image_path is None:
        status += " (not in the display cache any more; upload it again to see it)"
    return state, view.image_path, view.caption_a, view.caption_b, status


@user_errors
def pairwise_show(ctx: AppContext, session: dict[str, Any], limit: Any = ALL_PAIRS) -> tuple[Any, ...]:
    """The Show next pair button (and a newly opened set): the next pair this rater has not voted on."""
    if not session or not session.get("eval_set"):
        return new_pair(), None, "", "", "Open an evaluation set above, then click **Show next pair**."
    eval_set, rater = require_session(session)
    return _show_pair(ctx, eval_set, rater, limit)


@user_errors
def pairwise_vote(ctx: AppContext, outcome: str, session: dict[str, Any], pair: dict[str, Any] | None,
                  limit: Any = ALL_PAIRS) -> tuple[Any, ...]:
    """One of the four vote buttons: save the vote for the pair on screen, then show the next pair."""
    eval_set, rater = require_session(session)
    pair = pair or {}
    if pair.get("eval_set") != eval_set or pair.get("rater") != rater or not pair.get("image_hash"):
        raise gr.Error("No pair of this set is on screen: click Show next pair first.")
    ctx.store.vote(eval_set, rater, pair["image_hash"], pair["model_a"], pair["model_b"], outcome)
    ctx.count_rating("pairwise")
    *shown, status = _show_pair(ctx, eval_set, rater, limit)
    saved = f"Saved “{pairwise.OUTCOME_LABELS[outcome]}” for {esc(pair['file_name'] or 'the last image')}."
    return (*shown, f"{saved}  \n{status}")


def vote_buttons_state(pair: dict[str, Any] | None) -> tuple[Any, ...]:
    """The vote buttons work only while a pair is on screen (not before the first, not after the last)."""
    live = bool((pair or {}).get("image_hash"))
    return tuple(gr.Button(interactive=live) for _ in VOTE_LABELS)


def pairwise_table(board: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as shown in the page: rounded, the interval in one column."""
    return pd.DataFrame({
        "rank": board["rank"], "model": board["model"], "rating": board["rating"].round(0).astype(int),
        "95% CI": [f"{lo:.0f} – {hi:.0f}" for lo, hi in zip(board["ci_low"], board["ci_high"])],
        "votes": board["votes"], "wins": board["wins"], "ties": board["ties"], "losses": board["losses"],
        "win rate %": (100 * board["win_rate"]).round(1)})


@user_errors
def pairwise_results(ctx: AppContext, session: dict[str, Any], request: gr.Request | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The pairwise results button (open set): Bradley-Terry leaderboard, win-rate matrix (%), a summary line
    (a blind set's: for its owner and the admins)."""
    name = chosen_set(session, None)
    require_names(ctx, name, who(session, request))
    found = pairwise.set_pairwise_results(ctx.store, name, rounds=PAIRWISE_ROUNDS)
    if found.votes.empty:
        return pd.DataFrame(), pd.DataFrame(), f"No pairwise votes in set '{esc(name)}' yet."
    matrix = (100 * found.win_rates).round(1).reset_index()
    text = (f"{len(found.votes)} vote(s) by {len(found.raters)} rater(s) in set '{esc(name)}'. Rating: "
            "Bradley-Terry on an Elo-like scale (mean 1000; +200 = preferred 76% of the time), ties counting "
            "half a win each; 95% bootstrap interval over votes; models whose intervals overlap share a rank. "
            "Matrix: how often the row model's caption was preferred over the column model's (%).")
    return pairwise_table(found.leaderboard), matrix, text


def show_pairwise_results(ctx: AppContext, session: dict[str, Any], request: gr.Request | None = None
                          ) -> tuple[Any, ...]:
    """`pairwise_results` as the page shows it: the tables appear only once there are votes."""
    board, matrix, text = pairwise_results(ctx, session, request)
    return (gr.Dataframe(board, visible=not board.empty), gr.Dataframe(matrix, visible=not matrix.empty),
            text if not board.empty else text + " Vote on pairs above; the ranking appears here.")


@user_errors
def pairwise_export(ctx: AppContext, session: dict[str, Any], request: gr.Request | None = None) -> list[str]:
    """The pairwise export button: leaderboard, win rates and every vote as CSV files and one XLSX workbook
    (a blind set's: for its owner and the admins)."""
    name = chosen_set(session, None)
    require_names(ctx, name, who(session, request))
    folder = Path(tempfile.mkdtemp(prefix="export-", dir=ctx.work_dir))
    return [str(p) for p in pairwise.export_set_pairwise(ctx.store, name, folder, rounds=PAIRWISE_ROUNDS)]


def build_pairwise_view(ctx: AppContext, shared: dict[str, Any]) -> dict[str, Any]:
    """The Pairwise tab's components and events (inside an open gr.Tab)."""
    session = shared["session"]
    gr.Markdown("Compare two captions of the same image; which model wrote which stays hidden, and sides are "
                "shuffled. Every pair of models comes up on every image, in the same order for every rater; two "
                "identical captions are recorded as a tie without asking. Keys: **←** A, **→** B, **↑** tie, "
                "**↓** both bad. Uses the evaluation set opened above.", elem_id="pair-help")
    pair_state = gr.State(new_pair())
    with gr.Row(equal_height=True):
        limit = gr.Dropdown([ALL_PAIRS, "1", "2", "3", "4", "5"], value=ALL_PAIRS, label="Pairs per image",
                            info="all: every model pair on every image; a number deals that many per image so that "
                                 "every model pair still comes up equally often (raters of one set should agree)",
                            allow_custom_value=True, elem_id="pair-limit", scale=2)
        pair_next = gr.Button("Show next pair", elem_id="pair-next", scale=1)
    pair_status = gr.Markdown("Open an evaluation set above, then click **Show next pair**.", elem_id="pair-status")
    with gr.Row(equal_height=True):
        pair_image = gr.Image(show_label=False, interactive=False, height=320, buttons=["fullscreen"],
                              elem_id="pair-image", elem_classes="image-frame")
        with gr.Column():
            caption_a = gr.Textbox(label="Caption A", interactive=False, lines=2, elem_id="caption-a")
            caption_b = gr.Textbox(label="Caption B", interactive=False, lines=2, elem_id="caption-b")
    with gr.Row(elem_classes="vote-row"):
        vote_buttons = {outcome: gr.Button(label, interactive=False, elem_id=f"vote-{outcome.replace('_', '-')}")
                        for outcome, label in VOTE_LABELS.items()}
    with gr.Row():
        pair_results_btn = gr.Button("Show pairwise results", variant="primary", elem_id="pair-results-btn")
        pair_export_btn = gr.Button("Export pairwise CSV + XLSX", elem_id="pair-export-btn")
    pair_results_md = gr.Markdown(elem_id="pair-results-text")
    pair_board = gr.Dataframe(interactive=False, label="Bradley-Terry ratings", elem_id="pair-board", visible=False,
                              wrap=True, elem_classes="fit-table")
    pair_matrix = gr.Dataframe(interactive=False, label="Win rate % (row over column)", elem_id="pair-matrix",
                               visible=False, wrap=True, elem_classes="fit-table")
    pair_files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="pair-files",
                         visible=False)  # shown once there is something to download

    pair_shown = [pair_state, pair_image, caption_a, caption_b, pair_status]
    buttons = list(vote_buttons.values())
    for event in (pair_next.click, session.change, limit.input):
        event(partial(pairwise_show, ctx), [session, limit], pair_shown, api_visibility="private"
              ).then(vote_buttons_state, pair_state, buttons, api_visibility="private")
    for outcome, button in vote_buttons.items():
        # trigger_mode "once": a second click while the vote is saving is dropped, so a double click
        # cannot land on the next pair before the rater has seen it
        button.click(partial(pairwise_vote, ctx, outcome), [session, pair_state, limit], pair_shown,
                     trigger_mode="once", api_visibility="private"
                     ).then(vote_buttons_state, pair_state, buttons, api_visibility="private")
    pair_results_btn.click(bind(show_pairwise_results, ctx), session, [pair_board, pair_matrix, pair_results_md],
                           api_visibility="private")
    gr.Button(visible=False).click(bind(pairwise_results, ctx), session, [pair_board, pair_matrix, pair_results_md],
                                   api_name="pairwise_results")
    pair_export_btn.click(bind(pairwise_export, ctx), session, pair_files, api_name="pairwise_export"
                          ).success(lambda: gr.File(visible=True), None, pair_files, api_visibility="private")
    return {"pair_state": pair_state}
