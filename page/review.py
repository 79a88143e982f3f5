"""The Review view: the captions of a set whose raters disagree, largest disagreement first, and the final score
its owner (or an admin) records for one of them, on the set's scale, with an optional note (`rating.review`).

Raw ratings are never changed: a final score sits beside them, and the Results tab's accuracy uses it and says
so (`rating.sets.set_results(...).message`). Agreement and the per-rater table keep resting on the raw ratings.

Who may review is `rating.access.may_manage`: the set's owner and the admins (with --login the accounts with role
admin, else the --admin users); anyone else is told who may. A caption is picked by clicking its row in the
table, or in the dropdown; its current final score and note (if any) fill the form.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import gradio as gr
import pandas as pd

from page.context import AppContext
from page.results import chosen_set
from page.session import admins_for, bind, esc, set_choices, user_errors, who
from rating import access, review

SHOWN_COLUMNS = {"file_name": "image", "model_name": "model", "caption": "caption", "scores": "scores",
                 "spread": "spread", "mean": "mean", "final_score": "final score", "note": "note",
                 "reviewer": "reviewer"}
HELP = ("Captions whose raters gave different scores, the largest disagreement first (spread = highest - lowest "
        "score). Pick one (click its row, or choose it below), give the final score and, if you like, a note, and "
        "click **Save final score**. The raters' own scores are kept; Results use the final score and say so. "
        "For the set's owner and the admins.")
KEY_SEPARATOR = "|"  # between image hash (hex) and model name in a caption's key


def caption_key(image_hash: str, model_name: str) -> str:
    return f"{image_hash}{KEY_SEPARATOR}{model_name}"


def split_key(key: Any) -> tuple[str, str]:
    """(image_hash, model_name) of a caption key; ValueError naming what to do for a missing one."""
    image_hash, sep, model = str(key or "").partition(KEY_SEPARATOR)
    if not sep or not image_hash or not model:
        raise ValueError("Pick a caption first: click its row in the table or choose it in the list.")
    return image_hash, model


def _manager(ctx: AppContext, session: dict[str, Any] | None, name: str, request: gr.Request | None
             ) -> tuple[str | None, str]:
    """(who is asking, "") when they may review set `name`, else (who, why not)."""
    asking = who(session, request)
    if access.may_manage(ctx.store, name, asking, admins_for(ctx, asking)):
        return asking, ""
    return asking, (f"Only {esc(access.managers_of(ctx.store, name, login=ctx.login))} may review its "
                    "disagreements" + (f"; you are {esc(asking)}." if asking else "; open the set with your name."))


@user_errors
def disagreements(ctx: AppContext, session: dict[str, Any] | None, eval_set: str | None, include_reviewed: bool,
                  request: gr.Request | None = None) -> tuple[pd.DataFrame, list[str], str]:
    """The disagreements of the chosen set (largest first) as the page shows them, the caption keys in the table's
    order, and a line about them. gr.Error for anyone but the set's owner and the admins."""
    name = chosen_set(session, eval_set)
    _, refused = _manager(ctx, session, name, request)
    if refused:
        raise gr.Error(refused, print_exception=False)
    found = review.disagreements(ctx.store, name, include_reviewed=bool(include_reviewed))
    keys = [caption_key(h, m) for h, m in zip(found["image_hash"], found["model_name"])]
    table = found[list(SHOWN_COLUMNS)].rename(columns=SHOWN_COLUMNS)
    reviewed = int(found["final_score"].notna().sum())
    if found.empty:
        text = (f"No caption of set '{esc(name)}' has raters who disagree" +
                ("." if include_reviewed else " and no final score yet (tick **show reviewed too** to see those)."))
    else:
        text = (f"{len(found)} caption(s) of set '{esc(name)}' where raters disagree, largest disagreement first"
                + (f"; {reviewed} have a final score." if include_reviewed else "; not reviewed yet."))
    return table, keys, text


def show_review(ctx: AppContext, session: dict[str, Any] | None, eval_set: str | None, include_reviewed: bool,
                request: gr.Request | None = None) -> tuple[Any, ...]:
    """`disagreements` as the page shows it: the table, the keys (a gr.State), the caption picker, the score
    choices on the set's scale, and a line; for anyone who may not review, only the line saying who may."""
    name = (eval_set or "").strip() or ((session or {}).get("eval_set") or "")
    nothing = (gr.Dataframe(visible=False), [], gr.Dropdown(choices=[], value=None), gr.Radio(choices=[], value=None))
    if not name:
        return (*nothing, "Open an evaluation set on the Compare tab (or choose one above) to review it.")
    if name not in set_choices(ctx):
        return (*nothing, f"There is no evaluation set '{esc(name)}'; choose one of the list.")
    _, refused = _manager(ctx, session, name, request)
    if refused:
        return (*nothing, refused)
    table, keys, text = disagreements(ctx, session, name, include_reviewed, request)
    choices = [(f"{row.image} · {row.model} · scores {row.scores}", key)
               for row, key in zip(table.itertuples(), keys)]
    low, high = ctx.store.set_scale(name)
    return (gr.Dataframe(table, visible=not table.empty), keys, gr.Dropdown(choices=choices, value=None),
            gr.Radio(choices=[(str(v), v) for v in range(low, high + 1)], value=None), text)


def pick_row(keys: list[str] | None, event: gr.SelectData) -> Any:
    """A click on a row of the table picks that row's caption in the dropdown."""
    row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
    return keys[row] if keys and isinstance(row, int) and 0 <= row < len(keys) else gr.skip()


def current_review(ctx: AppContext, session: dict[str, Any] | None, eval_set: str | None, key: str | None
                   ) -> tuple[Any, str]:
    """The final score and note already recorded for the picked caption (none: an empty form)."""
    try:
        name = chosen_set(session, eval_set)
        image_hash, model = split_key(key)
        done = review.reviews_of(ctx.store, name)
    except (ValueError, gr.Error):
        return None, ""
    row = done[(done["image_hash"] == image_hash) & (done["model_name"] == model)]
    if row.empty:
        return None, ""
    return int(row["final_score"].iloc[0]), row["note"].iloc[0] or ""


@user_errors
def save_review(ctx: AppContext, session: dict[str, Any] | None, eval_set: str | None, key: str | None, score: Any,
                note: str | None, request: gr.Request | None = None) -> str:
    """The Save final score button: record the picked caption's final score (and note) as the reviewer's, the
    signed-in account (or the session's rater). For the set's owner and the admins."""
    name = chosen_set(session, eval_set)
    asking, refused = _manager(ctx, session, name, request)
    if refused:
        raise gr.Error(refused, print_exception=False)
    image_hash, model = split_key(key)
    if score is None or score == "":
        low, high = ctx.store.set_scale(name)
        raise gr.Error(f"Choose the final score ({low} to {high}).", print_exception=False)
    review.record_review(ctx.store, name, image_hash, model, score, asking, note)
    return (f"Saved final score {int(score)} for {esc(model)} on image {esc(image_hash[:12])} (by {esc(asking)}). "
            "Results now use it for this caption.")


@user_errors
def clear_review(ctx: AppContext, session: dict[str, Any] | None, eval_set: str | None, key: str | None,
                 request: gr.Request | None = None) -> str:
    """The Remove final score button: the picked caption's raters' scores count again."""
    name = chosen_set(session, eval_set)
    _, refused = _manager(ctx, session, name, request)
    if refused:
        raise gr.Error(refused, print_exception=False)
    image_hash, model = split_key(key)
    if review.clear_review(ctx.store, name, image_hash, model):
        return f"Removed the final score of {esc(model)} on image {esc(image_hash[:12])}; its raters' scores count again."
    return f"{esc(model)} on image {esc(image_hash[:12])} had no final score."


def build_review_view(ctx: AppContext, shared: dict[str, Any], tab: gr.Tab) -> dict[str, Any]:
    """The Review tab's components and events (inside the open `tab`)."""
    session = shared["session"]
    gr.Markdown(HELP, elem_id="review-help")
    with gr.Row(equal_height=True):
        review_set = gr.Dropdown(choices=set_choices(ctx), value=None, allow_custom_value=True,
                                 label="Evaluation set (empty: the open one)", elem_id="review-set", scale=3)
        include_reviewed = gr.Checkbox(label="show reviewed too", value=False, elem_id="review-include", scale=1)
        show_btn = gr.Button("Show disagreements", variant="primary", elem_id="review-btn", scale=1)
    review_md = gr.Markdown(elem_id="review-status")
    table = gr.Dataframe(interactive=False, label="Disagreements (click a row to review it)", visible=False,
                         wrap=True, max_height=500, elem_id="review-table", elem_classes="fit-table")
    keys = gr.State([])  # the caption key of each row of the table
    with gr.Row(equal_height=True):
        picked = gr.Dropdown(choices=[], value=None, label="Caption to review", elem_id="review-caption", scale=3)
        score = gr.Radio(choices=[], label="Final score", elem_id="review-score", scale=2)
    note = gr.Textbox(label="Note (optional)", max_lines=3, elem_id="review-note")
    with gr.Row():
        save_btn = gr.Button("Save final score", variant="primary", elem_id="review-save")
        clear_btn = gr.Button("Remove final score", elem_id="review-clear")
    saved_md = gr.Markdown(elem_id="review-saved")

    inputs = [session, review_set, include_reviewed]
    shown = [table, keys, picked, score, review_md]
    for event in (show_btn.click, tab.select, include_reviewed.input):
        event(bind(show_review, ctx), inputs, shown, api_visibility="private")
    table.select(pick_row, keys, picked, api_visibility="private")
    picked.change(partial(current_review, ctx), [session, review_set, picked], [score, note],
                  api_visibility="private")
    for button, fn, given in ((save_btn, save_review, [score, note]), (clear_btn, clear_review, [])):
        button.click(bind(fn, ctx), [session, review_set, picked, *given], saved_md, api_visibility="private"
                     ).success(bind(show_review, ctx), inputs, shown, api_visibility="private")
    return {"review_set": review_set}
