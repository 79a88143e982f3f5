"""The Compare & rate view: images and models in, captions out, and the rating grid.

Before any caption exists the inputs fill the tab (upload box, sample images, model picker, preset). Once the
set has captions, rating owns the screen: the inputs fold into one accordion line (which set, which models,
"new images"), a sticky bar keeps the progress ("23 of 40 rated"), Undo, Skip and Next unrated in view, and
the grid starts right under it, first unrated caption first in focus.

The grid is drawn from the store (`rating.grid.grid_page`) whenever the session's `version` changes; a click
on a radio saves at once (`rate_caption`). The Undo stack lives in its own `gr.State` (one per browser
session), so that saving a score does not redraw the grid.

A set with an overlap (R raters per caption) still shows every caption, but the ones that have their R ratings
(or whose free slots other raters hold) are greyed out ("complete"), the progress bar counts what is left to this
rater, and a rating the store refuses all the same (another rater took the slot meanwhile) is a warning that puts
the radio back, never an error.
"""

from __future__ import annotations

import time
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import gradio as gr

from captioning.generation import PRESETS
from captioning.images import IMAGE_EXTENSIONS, ImageLoadError, find_images, load_image
from captioning.leaderboard import read_leaderboard
from captioning.zoo import ZooError
from page.context import AppContext
from page.session import (
    HISTORY_LIMIT,
    acting_rater,
    admins_for,
    bind,
    ensure_session,
    esc,
    file_path,
    no_empty_set_on_failure,
    parse_overlap,
    require_session,
    session_summary,
    user_errors,
    warn_each,
    who,
)
from page.zoo import caveats, model_cards, model_choices, zoo_entries
from rating import access, grid, intake, queue, sets
from rating.grid import PAGE_SIZE, GridView
from rating.intake import CAPTION_BATCH
from rating.sets import DEFAULT_PRESET
from rating.store import OverlapFullError
from rating.validation import validate_name

MAX_IMAGES_PER_RUN = 200  # one "Caption" click; more is better done with `python -m captioning caption` + import
# What the upload boxes accept: exactly the suffixes the image loader reads (phone formats included when it
# reads them). Listed as suffixes, not "image", because browsers do not map every photo format to image/*.
IMAGE_FILE_TYPES = sorted(IMAGE_EXTENSIONS)
SCORE_LABELS = {0: "unrelated", 1: "partly right", 2: "fully accurate"}
SCORE_CHOICES = [(f"{score} · {label}", score) for score, label in SCORE_LABELS.items()]
RUBRIC = ("**0** = unrelated to the image · **1** = partly right (something important wrong or missing) · "
          "**2** = fully accurate. Each click is saved at once.")
KEYS_LEGEND = ("Keys: click a caption, then **0** / **1** / **2** rate it and move on · **Delete** clears · "
               "**s** skips · **u** next unrated · **Ctrl+Z** undo · **←** / **→** / **↑** / **↓** move · "
               "**PageUp** / **PageDown** (or **p** / **n**) pages · click an image to zoom.")
SETUP_LABEL = "Images and models"
COMPLETE_LABEL = "complete: enough raters have this caption"


class FieldError(gr.Error):
    """A user mistake that belongs next to one field of the page: `field` is "names", "models" or "images".
    Anything calling the handler directly (tests, the Gradio API) gets it as a plain gr.Error."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, print_exception=False)
        self.field = field


# ----------------------------------------------------------------------------------------------------------
# Images in


def sample_names(ctx: AppContext) -> list[str]:
    """File names of the images in the sample folder (empty when it is missing or empty)."""
    try:
        return [p.name for p in find_images(ctx.samples_dir)]
    except ImageLoadError:
        return []


@lru_cache(maxsize=4096)
def _read_problem(path: str, size: int, mtime: float) -> str | None:
    """Why the file cannot be used as an image, or None; cached per file version (uploads are read once)."""
    try:
        load_image(path, name=Path(path).name)
    except (ImageLoadError, OSError) as e:
        return str(e)
    return None


def unreadable(paths: list[str]) -> dict[str, str]:
    """{path: why} for the files that are not readable images."""
    found = {}
    for path in paths:
        try:
            stat = Path(path).stat()
            problem = _read_problem(path, stat.st_size, stat.st_mtime)
        except OSError as e:
            problem = f"{Path(path).name}: cannot be read ({e.strerror or e})"
        if problem:
            found[path] = problem
    return found


def check_uploads(files: list[Any] | None) -> str:
    """When files are added to the upload box: name each one that cannot be used, once, next to the box."""
    problems = list(dict.fromkeys(unreadable([file_path(f) for f in files or []]).values()))
    if not problems:
        return ""
    listed = "".join(f"\n- {esc(p)}" for p in problems)
    return (f"⚠️ {len(problems)} file(s) cannot be used and will be left out; remove them from the box (×) or "
            f"replace them:{listed}")


# ----------------------------------------------------------------------------------------------------------
# Captioning


@user_errors
@no_empty_set_on_failure
def caption(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool,
            files: list[Any] | None, samples: list[str] | None, models: list[str] | None, preset: str,
            progress: Any = gr.Progress(), request: gr.Request | None = None, *, overlap: Any = None
            ) -> tuple[dict[str, Any], str, str]:
    """The Caption button: caption every image with every chosen model and save the captions in the set
    (created, with `overlap` raters per caption, when it is new).

    Returns the session (its version bumped so the grid redraws), a status line and the session line.
    The work is `rating.intake.caption_into_set`: pairs (image, model) the set already has a caption for are
    kept, not regenerated, and images are read CAPTION_BATCH at a time so memory stays bounded. Uploads
    that are not readable images were named when they were added (`check_uploads`); they are left out here
    and counted in the status line, not reported again.
    """
    try:
        rater = acting_rater(ctx, rater, request)  # with --login: the signed-in account, whatever the box says
        validate_name(set_name, "evaluation set name")
        parse_overlap(overlap)
    except ValueError as e:
        raise FieldError("names", esc(str(e))) from None
    if preset not in PRESETS:
        raise gr.Error(f"Unknown decoding preset {esc(str(preset))!r}; choose one of {sorted(PRESETS)}")
    rows = {r["name"]: r for r in zoo_entries(ctx)[0]}
    if not models:
        raise FieldError("models", "Choose at least one model.")
    unknown = [m for m in models if m not in rows]
    if unknown:
        raise FieldError("models", f"Model(s) {esc(str(unknown))} not found in {ctx.zoo_dir}; "
                                   f"available models = {sorted(rows)}")
    uploads = [(file_path(f), Path(file_path(f)).name) for f in (files or [])]
    available = set(sample_names(ctx))
    bad_samples = [s for s in samples or [] if s not in available]
    if bad_samples:
        raise FieldError("images", f"Sample image(s) {esc(str(bad_samples))} not found in {ctx.samples_dir}")
    sources = uploads + [(str(ctx.samples_dir / s), s) for s in samples or []]
    if not sources:
        raise FieldError("images", "Add images first: drop files on the upload box or tick sample images.")
    if len(sources) > MAX_IMAGES_PER_RUN:
        raise FieldError("images", f"{len(sources)} images in one run; the app takes at most {MAX_IMAGES_PER_RUN} "
                                   "at a time. Caption in several runs into the same set, or use `python -m "
                                   "captioning caption` and import the CSV.")
    bad = unreadable([path for path, _ in sources])
    sources = [(path, name) for path, name in sources if path not in bad]
    if not sources:
        raise FieldError("images", "None of the images could be read: " + esc("; ".join(bad.values())))
    session, info = ensure_session(ctx, session, rater, set_name, blind, preset, request, overlap=overlap)
    if info.preset != preset:
        gr.Warning(f"Set '{esc(info.name)}' uses preset '{info.preset}' (fixed when it was created, "
                   f"so all its captions are made the same way); captioning with it. Start a new set to "
                   f"compare another preset.")

    start = time.perf_counter()
    progress(0, desc="Loading models")
    loaded_models, problems = [], []
    for name in models:
        if "error" in rows[name]:
            problems.append(f"Model {name} cannot be used: {rows[name]['error']}")
            continue
        try:
            loaded_models.append(ctx.cache.get(ctx.zoo_dir / name))
        except ZooError as e:
            problems.append(str(e))
    if not loaded_models:
        warn_each(problems)
        raise FieldError("models", "None of the chosen models could be loaded: " + esc("; ".join(problems)))

    desc = f"Captioning {len(sources)} images x {len(loaded_models)} models"
    run = intake.caption_into_set(
        ctx.store, info.name, loaded_models, sources, info.preset, batch_size=CAPTION_BATCH, image_dir=ctx.image_dir,
        progress=lambda done, total: progress((done, total), desc=desc, unit="captions"))
    problems += run.problems
    warn_each(problems)
    if not run.images:
        raise FieldError("images", "None of the images could be read: " + esc("; ".join(problems)))

    session["version"] += 1
    session["page"] = 0
    session["focus"] = _first_unrated(ctx, session)
    message = (f"Captioned {run.images} image(s) x {len(loaded_models)} model(s) with preset `{run.preset}`: "
               f"{run.saved} new caption(s) in {time.perf_counter() - start:.1f} s")
    if run.kept:
        message += f"; {run.kept} already in the set (kept)"
    if bad:
        message += (f"; {len(bad)} unreadable file(s) left out: {esc(', '.join(Path(p).name for p in bad))} (why: "
                    "under the upload box)")
    if problems:
        message += f"; {len(problems)} problem(s): " + esc(" | ".join(problems[:3]))
    return session, message, session_summary(ctx, session)


def caption_on_page(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool,
                    files: list[Any] | None, samples: list[str] | None, models: list[str] | None, preset: str,
                    overlap: Any = None, progress: Any = gr.Progress(), request: gr.Request | None = None
                    ) -> tuple[Any, ...]:
    """`caption` as the page calls it: a mistake about one field is said next to that field (and cleared
    when the field changes) instead of in a toast. Returns session, status, session line, the inputs'
    accordion (folded in the same update that draws the grid, so the grid does not jump after it is drawn)
    and the three field errors (names, models, images)."""
    errors = {"names": "", "models": "", "images": ""}
    try:
        session, status, line = caption(ctx, session, rater, set_name, blind, files, samples, models, preset,
                                        progress=progress, request=request, overlap=overlap)
    except FieldError as e:
        errors[e.field] = "⚠️ " + e.message
        return (gr.skip(), "", gr.skip(), gr.skip(), *errors.values())
    return (session, status, line, fold_setup(ctx, session, models, preset), *errors.values())


def fold_setup(ctx: AppContext, session: dict[str, Any] | None, models: list[str] | None, preset: str | None
               ) -> Any:
    """The inputs' accordion: open while the set has no captions; folded to one line once it has, saying which
    models and preset the next Caption click uses, so that the grid owns the screen."""
    counts = (sets.set_summary(ctx.store, session["eval_set"], session["rater"])
              if session and session.get("eval_set") else None)
    if not counts or not counts.captions:
        return gr.Accordion(open=True, label=SETUP_LABEL)
    chosen = ", ".join(models or []) or "none chosen"
    return gr.Accordion(open=False, label=f"+ New images · models: {chosen} · preset {preset or DEFAULT_PRESET}")


# ----------------------------------------------------------------------------------------------------------
# The rating grid


def grid_view(ctx: AppContext, session: dict[str, Any], page_size: int = PAGE_SIZE) -> GridView:
    """The page of the caption grid for this session, drawn from the store (captions and this rater's scores).
    A blind set's names are shown only when the session asked for them and may see them (its owner, an admin)."""
    if not session or not session.get("eval_set"):
        return grid.EMPTY_GRID
    asking = who(session, None)
    revealed = bool(session.get("revealed")) and access.may_see_names(ctx.store, session["eval_set"], asking,
                                                                    admins_for(ctx, asking))
    return grid.grid_page(ctx.store, session["eval_set"], session["rater"], session.get("page") or 0, page_size,
                          revealed=revealed, image_dir=ctx.image_dir)


def progress_html(ctx: AppContext, session: dict[str, Any] | None, counts: sets.SetSummary | None = None) -> str:
    """The rating bar's progress: "23 of 40 rated" and a bar (empty before a set with captions is open); for a
    set with an overlap, this rater's own count and what is still left to them ("7 rated · 5 left for you", from
    `rating.queue.progress`), since nobody rates every caption there. `counts`: the set's summary when the
    caller has it already."""
    if not session or not session.get("eval_set"):
        return ""
    counts = counts or sets.set_summary(ctx.store, session["eval_set"], session["rater"])
    if not counts.captions:
        return ""
    if counts.overlap is not None:
        mine = queue.progress(ctx.store, session["eval_set"], session["rater"])["rater"]
        done, total, left = mine["rated"], mine["rated"] + mine["left"], mine["left"]
        text = f"{done} rated · " + (f"{left} left for you" if left else "nothing left for you, thank you!")
    else:
        done, total, left = counts.rated, counts.captions, counts.captions - counts.rated
        text = f"{done} of {total} rated · " + ("all rated, thank you!" if not left else f"{left} left")
    return (f'<div class="rate-progress"><span id="progress-text">{text}</span>'
            f'<progress value="{done}" max="{max(total, 1)}"></progress></div>')


def _page_size() -> int:
    return grid_view.__defaults__[0]  # the grid's page size (tests draw smaller pages by changing it)


def _caption_at(ctx: AppContext, session: dict[str, Any], place: tuple[int, int, int] | None) -> list[str] | None:
    """The (image_hash, model) at a (page, row, column) of this rater's grid."""
    if place is None:
        return None
    page, row, column = place
    cell_row = grid_view(ctx, {**session, "page": page}).rows[row]
    return [cell_row.image_hash, cell_row.cells[column].model_name]


def _first_unrated(ctx: AppContext, session: dict[str, Any]) -> list[str] | None:
    """The (image_hash, model) of the rater's first unrated caption, or None."""
    closed = queue.closed_captions(ctx.store, session["eval_set"], session["rater"])
    return _caption_at(ctx, session, grid.first_unrated(ctx.store, session["eval_set"], session["rater"],
                                                        _page_size(), skip=closed))


def _after_rating(ctx: AppContext, session: dict[str, Any], what: str) -> tuple[str, str, str]:
    """The confirmation, session line and progress bar after a rating changed, from one count of the set."""
    counts = sets.set_summary(ctx.store, session["eval_set"], session["rater"])
    return (f"{what} · you rated {counts.rated} of {counts.captions}", session_summary(ctx, session, counts),
            progress_html(ctx, session, counts))


def _push(history: list[dict[str, Any]] | None, eval_set: str, rater: str, image_hash: str, model: str,
          label: str, previous: int | None) -> list[dict[str, Any]]:
    entry = {"eval_set": eval_set, "rater": rater, "image_hash": image_hash, "model": model, "label": label,
             "previous": previous}
    return ([*(history or []), entry])[-HISTORY_LIMIT:]


@user_errors
def rate_caption(ctx: AppContext, image_hash: str, model_name: str, label: str, session: dict[str, Any],
                 score: int | None, history: list[dict[str, Any]] | None = None) -> tuple[Any, ...]:
    """A rating radio was clicked: save the score at once. Returns a confirmation, the session line, the
    progress bar and the Undo stack (the score it replaced goes on it).

    The grid binds the first four arguments; `label` is what the rater saw (e.g. "Caption B on cat.jpg").
    """
    eval_set, rater = require_session(session)
    if score is None:
        return "Choose 0, 1 or 2.", gr.skip(), gr.skip(), gr.skip()
    previous = ctx.store.score(eval_set, rater, image_hash, model_name)
    try:
        ctx.store.rate(eval_set, rater, image_hash, model_name, score)
    except OverlapFullError as e:  # the set's overlap: enough raters have this caption (a warning, not an error)
        gr.Warning(esc(str(e)))
        return f"⚠️ Not saved for {esc(label)}: {esc(str(e))}", gr.skip(), progress_html(ctx, session), history
    ctx.count_rating("page")
    history = _push(history, eval_set, rater, image_hash, model_name, label, previous)
    return (*_after_rating(ctx, session, f"Saved {int(score)} ({SCORE_LABELS[int(score)]}) for {esc(label)}"),
            history)


def rate_from_grid(ctx: AppContext, image_hash: str, model_name: str, label: str, session: dict[str, Any],
                   score: int | None, history: list[dict[str, Any]] | None = None) -> tuple[Any, ...]:
    """`rate_caption` as a grid radio calls it, plus the radio itself: put back to what is stored when the score
    was not saved (the overlap was full), so the grid never shows a score the store does not have."""
    out = rate_caption(ctx, image_hash, model_name, label, session, score, history)
    stored = ctx.store.score(session["eval_set"], session["rater"], image_hash, model_name)
    return (*out, gr.skip() if score is None or stored == int(score) else gr.Radio(value=stored))


@user_errors
def clear_rating(ctx: AppContext, image_hash: str, model_name: str, label: str, session: dict[str, Any],
                 history: list[dict[str, Any]] | None = None) -> tuple[Any, ...]:
    """A card's Clear button (or Delete on it): remove this rater's score of the caption. Returns the session
    (redrawn, the card in focus), a confirmation, the session line, the progress bar and the Undo stack."""
    eval_set, rater = require_session(session)
    previous = ctx.store.score(eval_set, rater, image_hash, model_name)
    if previous is None:
        return gr.skip(), f"{esc(label)} has no score to clear.", gr.skip(), gr.skip(), gr.skip()
    ctx.store.delete_rating(eval_set, rater, image_hash, model_name)
    history = _push(history, eval_set, rater, image_hash, model_name, label, previous)
    session = {**session, "focus": [image_hash, model_name], "version": session.get("version", 0) + 1}
    return session, *_after_rating(ctx, session, f"Cleared the score of {esc(label)}"), history


@user_errors
def undo(ctx: AppContext, session: dict[str, Any], history: list[dict[str, Any]] | None) -> tuple[Any, ...]:
    """The Undo button (Ctrl+Z): put back the score the last rating or clearing replaced (none: clear it).
    Returns the session (redrawn at that caption, in focus), a confirmation, the session line, the progress
    bar and the shortened Undo stack."""
    eval_set, rater = require_session(session)
    history = [h for h in history or [] if (h["eval_set"], h["rater"]) == (eval_set, rater)]
    if not history:
        return gr.skip(), "Nothing to undo in this set.", gr.skip(), gr.skip(), []
    last = history.pop()
    if last["previous"] is None:
        ctx.store.delete_rating(eval_set, rater, last["image_hash"], last["model"])
        done = f"Undone: {esc(last['label'])} is unrated again"
    else:
        ctx.store.rate(eval_set, rater, last["image_hash"], last["model"], last["previous"])
        done = f"Undone: {esc(last['label'])} is back to {last['previous']}"
    target = [last["image_hash"], last["model"]]
    page = grid.page_of(ctx.store, eval_set, last["image_hash"], _page_size())
    session = {**session, "page": page, "focus": target, "version": session.get("version", 0) + 1}
    return session, *_after_rating(ctx, session, done), history


@user_errors
def next_unrated(ctx: AppContext, session: dict[str, Any]) -> tuple[Any, ...]:
    """The Next unrated button (key u, or s to skip when the page on screen has no other unrated caption; the
    page script finds those itself): turn to the next page with a caption this rater has not scored, wrapping
    round, and put the focus on it."""
    eval_set, rater = require_session(session)
    view = grid_view(ctx, session)
    end = (view.rows[-1].image_hash, view.rows[-1].cells[-1].model_name) if view.rows else None
    closed = queue.closed_captions(ctx.store, eval_set, rater)  # a set's overlap: enough raters have these
    place = grid.first_unrated(ctx.store, eval_set, rater, _page_size(), after=end, skip=closed)
    if place is None:
        rest = " or has enough raters already" if closed else ""
        return gr.skip(), f"Every caption of set '{esc(eval_set)}' has your score{rest}. See the Results tab."
    session = {**session, "page": place[0], "focus": _caption_at(ctx, session, place),
               "version": session.get("version", 0) + 1}
    return session, ""


def change_page(ctx: AppContext, session: dict[str, Any], delta: int) -> dict[str, Any]:
    """The Previous / Next buttons (PageUp / PageDown, p / n): the other page, its first caption in focus."""
    view = grid_view(ctx, session)
    session = dict(session)
    session["page"] = min(max(0, view.page + delta), max(0, view.pages - 1))
    first = grid_view(ctx, session).rows
    session["focus"] = [first[0].image_hash, first[0].cells[0].model_name] if first and first[0].cells else None
    session["version"] = session.get("version", 0) + 1  # a new drawing: its marked caption gets the focus
    return session


def toggle_reveal(session: dict[str, Any]) -> dict[str, Any]:
    return {**session, "revealed": not session.get("revealed")}


@user_errors
def reveal_names(ctx: AppContext, session: dict[str, Any], request: gr.Request | None = None) -> dict[str, Any]:
    """The Reveal/Hide model names button: only the set's owner and the admins may reveal a blind set."""
    eval_set, _ = require_session(session)
    asking = who(session, request)
    if not session.get("revealed") and not access.may_see_names(ctx.store, eval_set, asking,
                                                               admins_for(ctx, asking)):
        raise gr.Error(f"Only the owner of blind set '{esc(eval_set)}' can reveal its model names; ask them, or "
                       "start the app with --admin YOUR_NAME.", print_exception=False)
    return toggle_reveal(session)


# ----------------------------------------------------------------------------------------------------------
# Layout


def build_compare_view(ctx: AppContext, demo: gr.Blocks, shared: dict[str, Any]) -> dict[str, Any]:
    """The Compare & rate tab (inside an open gr.Tab). `shared` holds the page-wide components: session,
    history, rater, set_name, blind, session_line, names_error. Returns this view's components by name."""
    session, history, session_line = shared["session"], shared["history"], shared["session_line"]
    entries, _ = zoo_entries(ctx)
    samples = sample_names(ctx)
    with gr.Accordion(SETUP_LABEL, open=True, elem_id="setup") as setup:
        with gr.Row():
            with gr.Column(scale=3):
                uploads = gr.File(label="Images (drop several files)", file_count="multiple",
                                  file_types=IMAGE_FILE_TYPES, elem_id="uploads", height=140)
            sample_picks = gr.CheckboxGroup(
                choices=samples, label="…or sample images", show_select_all=bool(samples), scale=2,
                info=None if samples else f"No sample images in {ctx.samples_dir}", elem_id="samples")
        images_error = gr.Markdown(elem_id="images-error", elem_classes="field-error")
        models = gr.CheckboxGroup(choices=model_choices(entries, read_leaderboard(ctx.zoo_dir)), label="Models",
                                  info="one line each: family · size · the score it is ranked by (where it was "
                                       "measured); the Zoo tab has the details", elem_id="models",
                                  show_select_all=True)
        models_error = gr.Markdown(elem_id="models-error", elem_classes="field-error")
        caveat = gr.Markdown(elem_id="model-caveat")
        with gr.Accordion("Model cards", open=False, elem_id="model-cards-box"):
            cards = gr.Markdown(model_cards(ctx, []), elem_id="model-cards")
        with gr.Row(equal_height=True):
            preset = gr.Dropdown(choices=list(PRESETS), value=DEFAULT_PRESET, label="Decoding preset",
                                 elem_id="preset", scale=2)
            caption_btn = gr.Button("Caption", variant="primary", elem_id="caption-btn", scale=1)
    caption_status = gr.Markdown(elem_id="caption-status")

    with gr.Row(elem_id="rating-bar"):
        progress = gr.HTML(progress_html(ctx, None), elem_id="progress")
        undo_btn = gr.Button("↶ Undo (Ctrl+Z)", size="sm", elem_id="undo-btn")
        next_btn = gr.Button("Next unrated (u)", size="sm", elem_id="next-unrated")
    rate_status = gr.Markdown(elem_id="rate-status")
    gr.Markdown(RUBRIC, elem_id="rubric")
    gr.Markdown(KEYS_LEGEND, elem_id="keys-legend")

    @gr.render(inputs=[session], triggers=[demo.load, session.change])
    def draw_grid(current: dict[str, Any]) -> None:
        view = grid_view(ctx, current)
        if not view.rows:
            gr.Markdown("No captions in this set yet: add images, choose models and click **Caption** (or import "
                        "a captions file on the Import tab)." if current.get("eval_set") else "",
                        elem_id="grid-empty")
            return
        focus = tuple(current.get("focus") or ())
        closed = queue.closed_captions(ctx.store, current["eval_set"], current["rater"])  # overlap reached
        size = _page_size()
        with gr.Row(equal_height=True):
            first = view.page * size + 1
            gr.Markdown(f"Page {view.page + 1} of {view.pages} · images {first}–{first + len(view.rows) - 1} of "
                        f"{view.images}" + (" · columns shuffled per image and per rater" if view.blind else ""),
                        elem_id="page-line")
            prev_page = gr.Button("◀ Previous", size="sm", interactive=view.page > 0, elem_id="prev-page", scale=0,
                                  min_width=110)
            next_page = gr.Button("Next ▶", size="sm", interactive=view.page + 1 < view.pages, elem_id="next-page",
                                  scale=0, min_width=110)
            prev_page.click(partial(change_page, ctx, delta=-1), session, session, api_visibility="private")
            next_page.click(partial(change_page, ctx, delta=1), session, session, api_visibility="private")
            if view.blind:
                reveal = gr.Button("Hide model names" if view.revealed else "Reveal model names", size="sm",
                                   elem_id="reveal", scale=0, min_width=170)
                reveal.click(bind(reveal_names, ctx), session, session, api_visibility="private")
        for i, row in enumerate(view.rows):
            with gr.Row(elem_classes="grid-row"):
                with gr.Column(scale=0, min_width=340, elem_classes="grid-image"):
                    if row.image_path:
                        gr.Image(row.image_path, show_label=False, interactive=False, buttons=["fullscreen"],
                                 elem_id=f"image-{i}", elem_classes="image-frame")
                        gr.Markdown(esc(row.file_name), elem_id=f"file-name-{i}", elem_classes="file-name")
                    elif row.image_hash == intake.image_id_hash(row.file_name):
                        gr.Markdown(f"**{esc(row.file_name)}**: imported without its picture (rate the caption by "
                                    "the image name, or import the file again with the image).",
                                    elem_id=f"no-image-{i}")
                    else:
                        gr.Markdown(f"**{esc(row.file_name)}**: image not in the display cache any more; upload "
                                    "it again to see it (its captions are kept).")
                with gr.Column(min_width=0, elem_classes="caption-area"), gr.Row(elem_classes="caption-strip"):
                    for j, cell in enumerate(row.cells):
                        # The caption to focus carries this drawing's version, so the page script focuses it
                        # once per drawing even where Gradio reuses the card's element.
                        classes = ["caption-card"] + (["focus-me", f"focus-v{current.get('version', 0)}"]
                                                      if focus == (row.image_hash, cell.model_name) else [])
                        complete = (row.image_hash, cell.model_name) in closed
                        classes += ["caption-complete"] if complete else []
                        with gr.Column(min_width=170, elem_id=f"cell-{i}-{j}", elem_classes=classes):
                            gr.Textbox(cell.caption, label=cell.label, interactive=False, lines=2,
                                       elem_id=f"caption-{i}-{j}", elem_classes="caption-text")
                            # One key per caption: a radio on the next page is a new one, not the previous
                            # page's radio at the same place still showing its choice.
                            radio = gr.Radio(SCORE_CHOICES, value=cell.score, show_label=complete,
                                             label=COMPLETE_LABEL if complete else None, interactive=not complete,
                                             elem_id=f"rate-{i}-{j}", elem_classes="rating",
                                             key=f"rate-{row.image_hash}-{j}",  # no model name
                                             preserved_by_key=None)
                            clear = gr.Button("Clear", size="sm", elem_id=f"clear-{i}-{j}",
                                              elem_classes="clear-rating", key=f"clear-{row.image_hash}-{j}")
                            where = f"{cell.label} on {row.file_name}"
                            # `always_last`: after quick re-clicks the final choice is what is stored.
                            radio.input(partial(rate_from_grid, ctx, row.image_hash, cell.model_name, where),
                                        [session, radio, history],
                                        [rate_status, session_line, progress, history, radio],
                                        show_progress="hidden", trigger_mode="always_last", concurrency_limit=None,
                                        api_visibility="private")
                            clear.click(partial(clear_rating, ctx, row.image_hash, cell.model_name, where),
                                        [session, history], [session, rate_status, session_line, progress, history],
                                        show_progress="hidden", api_visibility="private")

    undo_btn.click(partial(undo, ctx), [session, history], [session, rate_status, session_line, progress, history],
                   show_progress="hidden", api_visibility="private")
    next_btn.click(partial(next_unrated, ctx), session, [session, rate_status],
                   show_progress="hidden", api_visibility="private")
    models.change(partial(model_cards, ctx), models, cards, api_visibility="private")
    models.change(partial(caveats, ctx), models, caveat, api_visibility="private")
    models.change(lambda: "", None, models_error, api_visibility="private")
    uploads.change(check_uploads, uploads, images_error, api_visibility="private")
    sample_picks.change(lambda files: check_uploads(files), uploads, images_error, api_visibility="private")
    return {"setup": setup, "uploads": uploads, "sample_picks": sample_picks, "models": models, "preset": preset,
            "caption_btn": caption_btn, "caption_status": caption_status, "progress": progress,
            "rate_status": rate_status, "images_error": images_error, "models_error": models_error}


def wire_caption(ctx: AppContext, view: dict[str, Any], shared: dict[str, Any]) -> Any:
    """The Caption button's event, and the Gradio API endpoint "caption" (the same handler without the page's
    field errors: an API caller gets the error), on a button that is never shown."""
    session, rater, set_name, blind = shared["session"], shared["rater"], shared["set_name"], shared["blind"]
    inputs = [session, rater, set_name, blind, view["uploads"], view["sample_picks"], view["models"], view["preset"]]
    api_button = gr.Button(visible=False)
    api_button.click(bind(caption, ctx), inputs, [session, view["caption_status"], shared["session_line"]],
                     api_name="caption", concurrency_id="caption", concurrency_limit=1)
    return view["caption_btn"].click(
        bind(caption_on_page, ctx), [*inputs, shared["overlap"]],
        [session, view["caption_status"], shared["session_line"], view["setup"], shared["names_error"],
         view["models_error"], view["images_error"]], api_visibility="private", concurrency_id="caption",
        concurrency_limit=1)
