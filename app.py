"""Caption Zoo's comparison and rating app (Gradio 6): caption images with zoo models side by side, rate
every caption 0/1/2, and get per-model accuracy with intervals, rater agreement and spreadsheet exports.

Run it (offline; nothing is downloaded, no share link, no analytics):

    python app.py [--zoo model_zoo] [--db ratings.sqlite] [--host 127.0.0.1] [--port 7860] [--auth USER:PASS]
                  [--admin USER ...] [--api-token TOKEN] [--max-batch-wait-ms MS]

One process serves the page at / and the REST API (`server/`: /api/v1/caption, /api/v1/models, /healthz,
/readyz, /metrics, docs at /docs): `build_server` mounts the Gradio Blocks on the API's FastAPI app, uvicorn
runs it.

Blind sets are blind everywhere: the grid, the named API endpoints and the exports give a blind set's model
names only to its owner (who created it) and to the --admin users (`rating.access.may_see_names`). Who is
asking is the logged-in user with --auth (enforced per login), else the rater name typed on the page
(honour-based: the names are kept from raters who do not pretend to be the owner). A set from a database
older than owners has none: only the admins see its names. `python -m rating results/export` runs on the
server with the database file in hand, so it is an admin tool and shows names.

How it is put together (the usual Gradio order): the handler functions first, each a thin layer over the
`captioning` and `rating` libraries (the evaluation-set workflow itself, from opening a set to paging the
grid, is `rating.sets`, `.access`, `.grid` and `.intake`, shared with other front ends); they add only the
page's wording, warnings and errors; then `build_app`, which lays out the page with `gr.Blocks` and wires the
events; then `main`. App-level objects (the rating store, the model cache, the folders) live in one
`AppContext`; everything that belongs to one browser session (rater, evaluation set, page, blind reveal)
lives in a `gr.State` dict, never in module globals.

Where things are kept:
- ratings, captions and evaluation sets: the SQLite file given by --db (`rating.RatingStore`, WAL). Each
  rating is written the moment a radio button is clicked, so a page reload or an app restart loses nothing;
  the caption grid is always drawn from the store, so reopening a set shows its captions and your scores.
- images: an upright, downsized PNG copy per image, named by the hash of the file's bytes, in a cache folder
  (default: <system temp>/caption-zoo/images). That folder is what the page shows; the zoo folder and the
  database are never served (Gradio serves only its upload cache, its own cache and `allowed_paths`, and
  both are passed as `blocked_paths` as well). A file input naming a server path instead of an upload is
  refused with a message that names no path (`CaptionZooBlocks`).
"""

from __future__ import annotations

import argparse
import atexit
import errno
import hashlib
import html
import inspect
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial, wraps
from pathlib import Path
from typing import Any

# Before gradio / huggingface_hub are imported: no telemetry, no hub calls, ever.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import gradio as gr
import pandas as pd
import uvicorn
from fastapi import FastAPI
from gradio.exceptions import InvalidPathError  # raised by gradio itself for a file input it refuses

from captioning.card import limitations
from captioning.generation import PRESETS
from captioning.images import IMAGE_EXTENSIONS, ImageLoadError, find_images
from captioning.leaderboard import leaderboard_scope, metrics_source, read_leaderboard
from captioning.zoo import ModelCache, ZooError, list_zoo
from rating import access, grid, intake, pairwise, sets
from rating.grid import PAGE_SIZE, GridView
from rating.images import DEFAULT_DISPLAY_DIR
from rating.intake import CAPTION_BATCH
from rating.results import accuracy_chart
from rating.sets import DEFAULT_PRESET, rater_results_table, results_table
from rating.store import RatingStore
from rating.validation import validate_name

ROOT = Path(__file__).resolve().parent
DEFAULT_ZOO = "model_zoo"
DEFAULT_DB = "ratings.sqlite"
DEFAULT_SAMPLES = ROOT / "sample_images"
DEFAULT_IMAGE_CACHE = DEFAULT_DISPLAY_DIR  # shared with `python -m rating import`
DEFAULT_MAX_FILE_SIZE = "25mb"  # per uploaded file; a phone photo is 3-12 MB
MAX_IMAGES_PER_RUN = 200  # one "Caption" click; more is better done with `python -m captioning caption` + import
MAX_MODELS_IN_MEMORY = 6
# What the upload boxes accept: exactly the suffixes the image loader reads (phone formats included when it
# reads them). Listed as suffixes, not "image", because browsers do not map every photo format to image/*.
IMAGE_FILE_TYPES = sorted(IMAGE_EXTENSIONS)
UPLOADS_ONLY = "Only files uploaded through this page can be used; upload the file instead."

SCORE_LABELS = {0: "unrelated", 1: "partly right", 2: "fully accurate"}
SCORE_CHOICES = [(f"{score} · {label}", score) for score, label in SCORE_LABELS.items()]
RUBRIC = (
    "**Rate every caption:** **0** = unrelated to the image · **1** = partly right (some objects or "
    "attributes are right, something important is wrong or missing) · **2** = fully accurate. "
    "Each click is saved at once."
)
KEYS_LEGEND = (
    "**Keyboard:** click a caption (or Tab to it), then **0** / **1** / **2** rate it and go to the next one · "
    "**←** / **→** previous / next caption · **↑** / **↓** the same column on the image above / below · "
    "**PageUp** / **PageDown** (or **p** / **n**) previous / next page."
)
# The grid: one row per image, whatever the number of models. The image keeps a fixed width on the left and
# the caption cards stay beside it in one line that scrolls sideways (never wrapping below other images).
CSS = """
.grid-row { border-top: 1px solid var(--border-color-primary); padding-top: 8px;
            flex-wrap: nowrap !important; align-items: flex-start; }
.grid-image { flex: 0 0 168px !important; min-width: 168px !important; max-width: 168px; }
.caption-area { flex: 1 1 0 !important; min-width: 0 !important; }
.caption-strip { flex-wrap: nowrap !important; overflow-x: auto; gap: 8px; padding: 6px; }
.caption-card { flex: 1 0 140px !important; min-width: 140px !important;
                border: 1px solid var(--border-color-primary); border-radius: var(--radius-lg); padding: 4px; }
.caption-card:focus, .caption-card:focus-within { outline: 3px solid var(--color-accent); outline-offset: 2px; }
.caption-text [data-testid=block-info] { display: block; white-space: nowrap; overflow: hidden;
                                         text-overflow: ellipsis; }
.rating .wrap { gap: 4px; }
"""
# Keyboard rating, run once when the page loads. A key "rates" by clicking the radio input of the card in
# focus, so Gradio's own input event saves the score exactly as a mouse click does (no second save path).
# Cards are made focusable and their labels get the full model name as a tooltip each time the grid is drawn.
KEYBOARD_JS = """
() => {
  if (window.captionZooKeys) return;
  window.captionZooKeys = true;
  const CARD = ".caption-card";
  const cell = (i, j) => document.getElementById(`cell-${i}-${j}`);
  const place = (card) => card.id.split("-").slice(1).map(Number);
  let pageFocus = null;  // after a page change: focus the new page's first caption once it is drawn
  const prepare = () => {
    for (const card of document.querySelectorAll(CARD)) {
      if (!card.hasAttribute("tabindex")) card.tabIndex = 0;
      const label = card.querySelector(".caption-text [data-testid=block-info]");
      const name = label ? label.textContent.trim() : "";
      if (label && label.title !== name) label.title = name;  // the full name on hover
    }
    const line = document.getElementById("page-line"), first = cell(0, 0);
    if (pageFocus && !pageFocus.timer && Date.now() > pageFocus.until) pageFocus = null;
    if (pageFocus && line && first && line.textContent !== pageFocus.line) {
      // The new page arrives in several DOM updates: focus once they have stopped for a moment, so the
      // focus does not land on a card that is about to be replaced.
      clearTimeout(pageFocus.timer);
      pageFocus.timer = setTimeout(() => { pageFocus = null; const c = cell(0, 0); if (c) c.focus(); }, 300);
    }
  };
  new MutationObserver(prepare).observe(document.body, {childList: true, subtree: true});
  prepare();
  const typing = (el) => el.isContentEditable || ["TEXTAREA", "SELECT"].includes(el.tagName) ||
    (el.tagName === "INPUT" && !["radio", "checkbox", "button"].includes(el.type));
  const turnPage = (id) => {
    const button = document.getElementById(id);
    if (!button || button.disabled) return;
    const line = document.getElementById("page-line");
    pageFocus = {line: line ? line.textContent : "", until: Date.now() + 10000};
    button.click();
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
    const card = event.target.closest ? event.target.closest(CARD) : null;
    if (!card || typing(event.target)) return;  // keys act only on a caption card in focus
    const [i, j] = place(card);
    const key = event.key;
    let next = null;
    if (["0", "1", "2"].includes(key)) {
      const input = card.querySelector(`input[type=radio][value="${key}"]`);
      if (!input) return;
      input.click();
      const all = Array.from(document.querySelectorAll(CARD));
      next = all[all.indexOf(card) + 1] || card;
    } else if (key === "ArrowRight") next = cell(i, j + 1);
    else if (key === "ArrowLeft") next = cell(i, j - 1);
    else if (key === "ArrowDown" || key === "ArrowUp") {
      const row = i + (key === "ArrowDown" ? 1 : -1);
      next = cell(row, j) || Array.from(document.querySelectorAll(`[id^="cell-${row}-"]`)).pop() || null;
    } else if (key === "PageDown" || key === "n") turnPage("next-page");
    else if (key === "PageUp" || key === "p") turnPage("prev-page");
    else return;
    event.preventDefault();  // arrows would otherwise change the radio choice (and save it) or scroll
    if (next) next.focus();
  });
}
"""


# ----------------------------------------------------------------------------------------------------------
# App-level context and per-session state


@dataclass
class AppContext:
    """What every session shares: the rating store, the loaded models and the folders the app uses."""

    zoo_dir: Path
    store: RatingStore
    cache: ModelCache
    samples_dir: Path
    image_dir: Path  # display copies, one PNG per image content hash
    work_dir: Path  # scratch space for exports and imports (inside the system temp dir; removed at exit)
    admins: tuple[str, ...] = ()  # --admin users: they may see every blind set's names and results
    metrics: Any = None  # server.metrics.ServerMetrics when served with the REST API (`build_server`)


def count_rating(ctx: AppContext, source: str) -> None:
    """One more rating saved, in the server's metrics (page, api or pairwise)."""
    if ctx.metrics is not None:
        ctx.metrics.rating_saved(source)


def make_context(zoo_dir: str | os.PathLike, db_path: str | os.PathLike, *,
                 samples_dir: str | os.PathLike | None = None, image_dir: str | os.PathLike | None = None,
                 max_models: int = MAX_MODELS_IN_MEMORY, admins: tuple[str, ...] | list[str] = ()) -> AppContext:
    """Open the store and prepare the folders; a missing zoo folder is allowed (the page explains it)."""
    image_dir = Path(image_dir) if image_dir is not None else DEFAULT_IMAGE_CACHE
    image_dir.mkdir(parents=True, exist_ok=True)
    store = RatingStore(db_path)
    work_dir = Path(tempfile.mkdtemp(prefix="caption-zoo-app-"))
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)  # Gradio serves its own copies of the files
    return AppContext(zoo_dir=Path(zoo_dir), store=store, cache=ModelCache(max_models=max_models),
                      samples_dir=Path(samples_dir) if samples_dir is not None else DEFAULT_SAMPLES,
                      image_dir=image_dir, work_dir=work_dir, admins=tuple(admins))


def new_session() -> dict[str, Any]:
    """One browser session's state. `version` changes whenever the grid must be redrawn from the store."""
    # `who`: whom the blind rule asks about (the logged-in user with --auth, else the rater), set on opening
    return {"eval_set": None, "rater": None, "who": None, "blind": False, "revealed": False, "page": 0,
            "version": 0}


def _who(session: dict[str, Any] | None, request: gr.Request | None) -> str | None:
    """Who is asking: the logged-in user when the app runs with --auth, else the rater of the session."""
    username = getattr(request, "username", None) if request is not None else None
    return username or (session or {}).get("who") or (session or {}).get("rater")


def _require_names(ctx: AppContext, set_name: str, who: str | None) -> None:
    """Refuse (gr.Error) a blind set's model names to anyone but its owner and the admins."""
    if not access.may_see_names(ctx.store, set_name, who, ctx.admins):
        raise gr.Error(_esc(access.names_refused(set_name)), print_exception=False)


def bind(fn: Callable, *bound: Any, **keywords: Any) -> Callable:
    """`partial(fn, *bound, **keywords)` as a plain function: Gradio passes the gr.Request (the logged-in
    user) only to a function whose type hints it can read, which a partial object does not have."""

    @wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*bound, *args, **keywords, **kwargs)

    call.__signature__ = inspect.signature(partial(fn, *bound, **keywords))
    return call


def _esc(text: str) -> str:
    """Text from files, models and users, made safe for the page (toasts and Markdown render HTML)."""
    return html.escape(str(text), quote=False)


def user_errors(fn: Callable) -> Callable:
    """Show the library's user-facing errors (bad names, files, zoo entries) as a gr.Error in the page."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error as e:
            e.print_exception = False  # a user mistake, said in the page: no traceback in the server's log
            raise
        except (ValueError, ZooError, ImageLoadError, FileNotFoundError) as e:  # ImageLoadError is a ValueError
            raise gr.Error(_esc(str(e)), print_exception=False) from None

    return wrapper


def no_empty_set_on_failure(fn: Callable) -> Callable:
    """For handlers called as (ctx, session, rater, set_name, ...) that may create the set: a failure leaves
    no new, empty set behind (rating.sets.undo_new_set_on_failure)."""

    @wraps(fn)
    def wrapper(ctx: AppContext, session: Any, rater: Any, set_name: Any, *args, **kwargs):
        with sets.undo_new_set_on_failure(ctx.store, set_name):
            return fn(ctx, session, rater, set_name, *args, **kwargs)

    return wrapper


def _require_session(session: dict[str, Any]) -> tuple[str, str]:
    if not session or not session.get("eval_set") or not session.get("rater"):
        raise gr.Error("Open an evaluation set first: type your rater name and a set name, then click Open set.")
    return session["eval_set"], session["rater"]


# ----------------------------------------------------------------------------------------------------------
# Zoo and sample images


def zoo_entries(ctx: AppContext) -> tuple[list[dict[str, Any]], str]:
    """The zoo listing and a message for the page when the zoo is missing, empty or has broken entries."""
    try:
        rows = list_zoo(ctx.zoo_dir)
    except ZooError as e:
        return [], f"⚠️ {e}. Captions made elsewhere can still be imported and rated (Import tab)."
    if not rows:
        return [], f"The zoo folder `{ctx.zoo_dir}` has no entries yet; add models with the trainer or import captions."
    broken = [r for r in rows if "error" in r]
    note = "".join(f"\n- ⚠️ `{r['name']}` cannot be used: {_esc(r['error'])}" for r in broken)
    board = read_leaderboard(ctx.zoo_dir)
    if board:  # say what the comparable numbers were measured on, and that the others are not comparable
        note += (f"\n\n**Leaderboard**: every entry scored on the {_esc(leaderboard_scope(board))}, decoding "
                 f"`{(board.get('decoding') or {}).get('preset', '')}` ({board.get('created')}); these numbers compare. "
                 "An entry's own metrics come from its training run's split (column *own metrics measured on*) "
                 "and compare only where that is the same.")
    else:
        note += ("\n\nEach entry's own metrics come from its training run's split (column *own metrics measured "
                 "on*); `python -m trainer.evaluate --zoo DIR --data D --split S` scores all of them on one split.")
    return rows, (f"{len(rows) - len(broken)} usable model(s) in `{ctx.zoo_dir}`." + note)


def _metrics_text(metrics: dict[str, Any] | None, limit: int = 5) -> str:
    if not metrics:
        return ""
    preferred = ["bleu4", "cider", "meteor", "rouge_l", "bertscore_f1", "object_accuracy", "val_loss"]
    keys = [k for k in preferred if k in metrics] + [k for k in metrics if k not in preferred]
    shown = [f"{k} {metrics[k]:.3f}" for k in keys if isinstance(metrics[k], (int, float))
             and not isinstance(metrics[k], bool)]
    return ", ".join(shown[:limit])


def zoo_table(rows: list[dict[str, Any]], leaderboard: dict[str, Any] | None = None) -> pd.DataFrame:
    """One line per zoo entry, as shown under the model picker: the leaderboard's numbers (one split for
    all entries) when the zoo has one, and each entry's own metrics labelled with the split they came from."""
    board = {e["name"]: e.get("metrics") or {} for e in (leaderboard or {}).get("entries", []) if "metrics" in e}
    records = []
    for r in rows:
        records.append({
            "model": r["name"], "encoder": r.get("encoder") or "", "decoder": r.get("decoder") or "",
            "K": "" if r.get("prefix_length") is None else r["prefix_length"], "mapper": r.get("mapper") or "",
            "parameters (M)": round(r["parameters"] / 1e6, 2) if r.get("parameters") else "",
            "size (MB)": r.get("size_mb", ""),
            "leaderboard": _metrics_text(board[r["name"]]) if r["name"] in board else (
                "not on the leaderboard" if leaderboard else ""),
            "own metrics": _metrics_text(r.get("metrics")),
            "own metrics measured on": metrics_source(r.get("metrics"), r.get("training_data")),
            "status": "broken: " + r["error"] if "error" in r else "ok"})
    columns = ["model", "encoder", "decoder", "K", "mapper", "parameters (M)", "size (MB)", "leaderboard",
               "own metrics", "own metrics measured on", "status"]
    return pd.DataFrame.from_records(records, columns=columns)


def model_choices(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Checkbox choices for the usable entries: a one-line card summary as the label, the name as the value."""
    choices = []
    for r in rows:
        if "error" in r:
            continue
        k = f", K={r['prefix_length']}" if r.get("prefix_length") is not None else ""
        metrics = _metrics_text(r.get("metrics"), limit=2)
        label = f"{r['name']} ({r.get('encoder')} → {r.get('decoder')}{k})" + (f" · {metrics}" if metrics else "")
        choices.append((label, r["name"]))
    return choices


def model_cards(ctx: AppContext, names: list[str] | None) -> str:
    """Card summaries of the chosen models (base models, K, training data, metrics); loads them (cached)."""
    if not names:
        return "Choose one or more models above; their cards appear here."
    usable = {r["name"]: r for r in zoo_entries(ctx)[0] if "error" not in r}
    lines = []
    for name in names:
        if name not in usable:
            lines.append(f"- ⚠️ **{_esc(name)}** is not a usable entry of `{ctx.zoo_dir}`")
            continue
        try:
            s = ctx.cache.get(ctx.zoo_dir / name).summary()
        except ZooError as e:
            lines.append(f"- ⚠️ **{_esc(name)}** cannot be loaded: {_esc(str(e))}")
            continue
        k = f", K = {s['prefix_length']}" if s.get("prefix_length") is not None else ""
        training = s.get("training_data")
        training = training if isinstance(training, str) else (
            ", ".join(f"{a}: {b}" for a, b in training.items()) if isinstance(training, dict) else training)
        limits = limitations(s["metrics"])  # the card's own warning, e.g. a model that only knows coloured shapes
        lines.append(
            f"- **{_esc(s['name'])}**: encoder `{s['encoder']}` → decoder `{s['decoder']}` ({s['kind']}, mapper "
            f"{s['mapper']}{k}) · training data: {_esc(str(training or 'not recorded'))} · metrics"
            f"{' (' + _esc(metrics_source(s['metrics'], s.get('training_data'))) + ')' if s['metrics'] else ''}: "
            f"{_metrics_text(s['metrics'], limit=6) or 'none recorded'} · weights `{s['weights_hash']}`"
            + (f"  \n  ⚠️ {limits}" if limits else ""))
    return "\n".join(lines)


def rescan_zoo(ctx: AppContext) -> tuple[Any, str, pd.DataFrame]:
    """The Rescan button: entries added (or fixed) since the app started become choosable."""
    rows, note = zoo_entries(ctx)
    return gr.CheckboxGroup(choices=model_choices(rows)), note, zoo_table(rows, read_leaderboard(ctx.zoo_dir))


def sample_names(ctx: AppContext) -> list[str]:
    """File names of the images in the sample folder (empty when it is missing or empty)."""
    try:
        return [p.name for p in find_images(ctx.samples_dir)]
    except ImageLoadError:
        return []


# ----------------------------------------------------------------------------------------------------------
# Evaluation sets and sessions


def set_choices(ctx: AppContext) -> list[str]:
    return [s["name"] for s in ctx.store.list_sets()]


def refresh_sets(ctx: AppContext) -> tuple[Any, Any]:
    """New choices for both set pickers (other people create sets too)."""
    names = set_choices(ctx)
    return gr.Dropdown(choices=names), gr.Dropdown(choices=names)


def ensure_session(ctx: AppContext, session: dict[str, Any] | None, rater: str, set_name: str, blind: bool,
                   preset: str | None, request: gr.Request | None = None) -> tuple[dict[str, Any], sets.SetInfo]:
    """Open (or create) the evaluation set for this rater; returns the session and the stored set.

    An existing set keeps the blind flag, preset and owner it was created with, so every rater rates the same
    way. A new set's owner is the logged-in user with --auth, else the rater.
    """
    who = getattr(request, "username", None) or validate_name(rater, "rater name")
    info = sets.open_set(ctx.store, set_name, rater, bool(blind), preset if preset in PRESETS else DEFAULT_PRESET,
                         owner=who)
    session = dict(session or new_session())
    if (session.get("eval_set"), session.get("rater"), session.get("who")) != (info.name, info.rater, who):
        session.update(new_session(), eval_set=info.name, rater=info.rater, who=who,
                       version=session.get("version", 0) + 1)
    session["blind"] = info.blind
    return session, info


def session_summary(ctx: AppContext, session: dict[str, Any]) -> str:
    """One line about the open set: mode, preset, images, captions and how many this rater has rated."""
    if not session or not session.get("eval_set"):
        return "No evaluation set open. Type your rater name and a set name (new or existing), then click **Open set**."
    counts = sets.set_summary(ctx.store, session["eval_set"], session["rater"])
    mode = "blind (model names hidden, columns shuffled)" if counts.blind else "model names shown"
    return (f"Set **{_esc(counts.name)}** · {mode} · preset `{counts.preset}` · rater **{_esc(session['rater'])}** · "
            f"{counts.images} images · {counts.captions} captions · you rated {counts.rated} of {counts.captions}")


@user_errors
def open_set(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool, preset: str,
             request: gr.Request | None = None) -> tuple[dict[str, Any], str, str, bool]:
    """The Open set button: returns the session, a status line, and the set's preset and blind flag."""
    session, info = ensure_session(ctx, session, rater, set_name, blind, preset, request)
    session["version"] += 1  # redraw the grid from the store even when the same set is opened again
    if bool(blind) != info.blind:
        gr.Info(f"Set '{_esc(info.name)}' was created {'blind' if info.blind else 'with names shown'}; "
                "it stays that way so that every rater rates under the same conditions.")
    return session, session_summary(ctx, session), info.preset, info.blind


def remember(session: dict[str, Any]) -> dict[str, Any]:
    """What the browser keeps (localStorage) so that a page reload reopens the same set for the same rater."""
    return {"rater": session.get("rater"), "eval_set": session.get("eval_set")}


def restore_session(ctx: AppContext, remembered: dict[str, Any] | None, request: gr.Request | None = None
                    ) -> tuple[Any, ...]:
    """On page load: reopen the set this browser had open (only if it still exists); never creates one.

    Returns the session, its status line, and rater, set name, blind flag and preset for the controls.

    With nothing to restore every output is `gr.skip()`, so that a name typed while the page was still
    loading is not wiped out.
    """
    remembered = remembered or {}
    rater, name = remembered.get("rater") or "", remembered.get("eval_set") or ""
    if not (rater and name and name in set_choices(ctx)):
        return (gr.skip(),) * 6
    info = ctx.store.get_set(name)
    session = new_session()
    session.update(eval_set=name, rater=rater, who=getattr(request, "username", None) or rater,
                   blind=info["blind"], version=1)
    return session, session_summary(ctx, session), rater, name, info["blind"], info["preset"] or DEFAULT_PRESET


# ----------------------------------------------------------------------------------------------------------
# Uploaded files


def _file_path(file: Any) -> str:
    """gr.File gives paths (str); gradio_client-style dicts and file objects are accepted too."""
    if isinstance(file, dict):
        return file.get("path") or file.get("name")
    return str(getattr(file, "name", file))


def _warn_each(problems: list[str], limit: int = 5) -> None:
    for message in problems[:limit]:
        gr.Warning(_esc(message))
    if len(problems) > limit:
        gr.Warning(f"... and {len(problems) - limit} more files could not be used.")


# ----------------------------------------------------------------------------------------------------------
# Captioning


@user_errors
@no_empty_set_on_failure
def caption(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool,
            files: list[Any] | None, samples: list[str] | None, models: list[str] | None, preset: str,
            progress: Any = gr.Progress(), request: gr.Request | None = None) -> tuple[dict[str, Any], str, str]:
    """The Caption button: caption every image with every chosen model and save the captions in the set.

    Returns the session (its version bumped so the grid redraws), a status line and the session line.
    The work is `rating.intake.caption_into_set`: pairs (image, model) the set already has a caption for are
    kept, not regenerated, and images are read CAPTION_BATCH at a time so memory stays bounded.
    """
    validate_name(rater, "rater name")
    validate_name(set_name, "evaluation set name")
    if preset not in PRESETS:
        raise gr.Error(f"Unknown decoding preset {_esc(str(preset))!r}; choose one of {sorted(PRESETS)}")
    rows = {r["name"]: r for r in zoo_entries(ctx)[0]}
    if not models:
        raise gr.Error("Choose at least one model.")
    unknown = [m for m in models if m not in rows]
    if unknown:
        raise gr.Error(f"Model(s) {_esc(str(unknown))} not found in {ctx.zoo_dir}; "
                       f"available models = {sorted(rows)}")
    uploads = [(_file_path(f), Path(_file_path(f)).name) for f in (files or [])]
    available = set(sample_names(ctx))
    bad_samples = [s for s in samples or [] if s not in available]
    if bad_samples:
        raise gr.Error(f"Sample image(s) {_esc(str(bad_samples))} not found in {ctx.samples_dir}")
    sources = uploads + [(str(ctx.samples_dir / s), s) for s in samples or []]
    if not sources:
        raise gr.Error("Add images first: drop files on the upload box or tick sample images.")
    if len(sources) > MAX_IMAGES_PER_RUN:
        raise gr.Error(f"{len(sources)} images in one run; the app takes at most {MAX_IMAGES_PER_RUN} at a time. "
                       "Caption in several runs into the same set, or use `python -m captioning caption` and "
                       "import the CSV.")
    session, info = ensure_session(ctx, session, rater, set_name, blind, preset, request)
    if info.preset != preset:
        gr.Warning(f"Set '{_esc(info.name)}' uses preset '{info.preset}' (fixed when it was created, "
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
        _warn_each(problems)
        raise gr.Error("None of the chosen models could be loaded: " + _esc("; ".join(problems)))

    desc = f"Captioning {len(sources)} images x {len(loaded_models)} models"
    run = intake.caption_into_set(
        ctx.store, info.name, loaded_models, sources, info.preset, batch_size=CAPTION_BATCH, image_dir=ctx.image_dir,
        progress=lambda done, total: progress((done, total), desc=desc, unit="captions"))
    problems += run.problems
    _warn_each(problems)
    if not run.images:
        raise gr.Error("None of the images could be read: " + _esc("; ".join(problems)))

    session["version"] += 1
    session["page"] = 0
    message = (f"Captioned {run.images} image(s) x {len(loaded_models)} model(s) with preset `{run.preset}`: "
               f"{run.saved} new caption(s) in {time.perf_counter() - start:.1f} s")
    if run.kept:
        message += f"; {run.kept} already in the set (kept)"
    if problems:
        message += f"; {len(problems)} problem(s): " + _esc(" | ".join(problems[:3]))
    return session, message, session_summary(ctx, session)


# ----------------------------------------------------------------------------------------------------------
# The rating grid


def grid_view(ctx: AppContext, session: dict[str, Any], page_size: int = PAGE_SIZE) -> GridView:
    """The page of the caption grid for this session, drawn from the store (captions and this rater's scores).
    A blind set's names are shown only when the session asked for them and may see them (its owner, an admin)."""
    if not session or not session.get("eval_set"):
        return grid.EMPTY_GRID
    revealed = bool(session.get("revealed")) and access.may_see_names(ctx.store, session["eval_set"],
                                                                      _who(session, None), ctx.admins)
    return grid.grid_page(ctx.store, session["eval_set"], session["rater"], session.get("page") or 0, page_size,
                          revealed=revealed, image_dir=ctx.image_dir)


@user_errors
def rate_caption(ctx: AppContext, image_hash: str, model_name: str, label: str, session: dict[str, Any],
                 score: int | None) -> tuple[str, str]:
    """A rating radio was clicked: save the score at once; returns a confirmation and the session line.

    The grid binds the first four arguments; `label` is what the rater saw (e.g. "Caption B on cat.jpg").
    """
    eval_set, rater = _require_session(session)
    if score is None:
        return "Choose 0, 1 or 2.", gr.skip()
    ctx.store.rate(eval_set, rater, image_hash, model_name, score)
    count_rating(ctx, "page")
    counts = sets.set_summary(ctx.store, eval_set, rater)
    return (f"Saved {int(score)} ({SCORE_LABELS[int(score)]}) for {_esc(label)} · you rated {counts.rated} of "
            f"{counts.captions}", session_summary(ctx, session))


def change_page(ctx: AppContext, session: dict[str, Any], delta: int) -> dict[str, Any]:
    view = grid_view(ctx, session)
    session = dict(session)
    session["page"] = min(max(0, view.page + delta), max(0, view.pages - 1))
    return session


def toggle_reveal(session: dict[str, Any]) -> dict[str, Any]:
    return {**session, "revealed": not session.get("revealed")}


@user_errors
def reveal_names(ctx: AppContext, session: dict[str, Any], request: gr.Request | None = None) -> dict[str, Any]:
    """The Reveal/Hide model names button: only the set's owner and the admins may reveal a blind set."""
    eval_set, _ = _require_session(session)
    if not session.get("revealed") and not access.may_see_names(ctx.store, eval_set, _who(session, request),
                                                                 ctx.admins):
        raise gr.Error(f"Only the owner of blind set '{_esc(eval_set)}' can reveal its model names; ask them, or "
                       "start the app with --admin YOUR_NAME.", print_exception=False)
    return toggle_reveal(session)


# ----------------------------------------------------------------------------------------------------------
# Results and exports


def _chosen_set(session: dict[str, Any] | None, eval_set: str | None) -> str:
    name = (eval_set or "").strip() or ((session or {}).get("eval_set") or "")
    if not name:
        raise gr.Error("Choose an evaluation set (or open one on the Compare tab).")
    return name


def metric_text(per_model: pd.DataFrame | None, tau: pd.DataFrame | None) -> str:
    """Automatic metrics beside human accuracy on the images with reference captions, and whether each
    metric agrees with the raters (Kendall's tau per caption); empty when the set has no references."""
    if per_model is None or per_model.empty:
        return ""

    def fmt(value: Any, digits: int = 3) -> str:
        return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"

    lines = ["**Automatic metrics** on the images that have reference captions, beside the raters' accuracy on "
             "the same images:", "", "| model | images | BLEU-4 | CIDEr-D | BERTScore F1 | human accuracy % |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {_esc(r.model)} | {r.images_with_references} | {fmt(r.bleu4)} | {fmt(r.cider)} | "
              f"{fmt(r.bertscore_f1)} | {fmt(r.human_accuracy, 1)} |" for r in per_model.itertuples()]
    if tau is not None and not tau.empty:
        agree = " · ".join(f"{_esc(r.metric)} τ = {fmt(r.kendall_tau, 2)} (p = {fmt(r.p_value, 3)}, "
                           f"{r.n_captions} captions)" for r in tau.itertuples())
        lines += ["", f"Does the metric agree with your raters? Kendall's τ per caption: {agree}. "
                      "Near 1: it orders captions as your raters do; near 0: it does not tell good from bad."]
    return "\n".join(lines)


def agreement_text(result: dict[str, Any], raters: list[str]) -> str:
    if result["raters"] < 2:
        who = ", ".join(_esc(r) for r in raters) or "nobody yet"
        return (f"**Agreement** needs ratings of the same captions by two or more raters; so far: {who}. "
                "Ask a second person to open this set with their own name.")

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    text = (f"**Agreement** over {result['items']} caption(s) rated by at least two of {result['raters']} raters: "
            f"Krippendorff's α (ordinal) = {fmt(result['krippendorff_alpha_ordinal'])}")
    if result["raters"] == 2:
        text += (f" · Cohen's κ = {fmt(result['cohen_kappa'])} (quadratic-weighted "
                 f"{fmt(result['cohen_kappa_quadratic'])})")
    if result.get("percent_agreement") is not None:
        text += f" · exact agreement {result['percent_agreement']:.1f}%"
    if result.get("note"):
        text += f"  \n_{_esc(result['note'])}_"
    return text


@user_errors
def results(ctx: AppContext, session: dict[str, Any], eval_set: str | None, request: gr.Request | None = None
            ) -> tuple[pd.DataFrame, str, Any]:
    """The Results button: every model with its coverage and accuracy (model names revealed), what the figures
    rest on, agreement and the chart. A blind set's results are for its owner and the admins."""
    name = _chosen_set(session, eval_set)
    _require_names(ctx, name, _who(session, request))
    found = sets.set_results(ctx.store, name)
    figure = accuracy_chart(found.summary, title=f"Caption accuracy by model: {name}",
                            empty_text="No ratings yet" if found.ratings.empty else "No image rated for every model yet")
    text = _esc(found.message) + "\n\n" + agreement_text(found.agreement, found.raters)
    metrics = metric_text(found.metric_models, found.metric_tau)
    if metrics:
        text += "\n\n" + metrics
    return results_table(found.summary), text, figure


@user_errors
def rater_results(ctx: AppContext, session: dict[str, Any], eval_set: str | None,
                  request: gr.Request | None = None) -> pd.DataFrame:
    """After the Results button: one row per rater (progress, leniency, accuracy per model, gold agreement)."""
    name = _chosen_set(session, eval_set)
    _require_names(ctx, name, _who(session, request))
    return rater_results_table(sets.set_results(ctx.store, name, metrics=False).rater_table)


@user_errors
def mark_gold(ctx: AppContext, session: dict[str, Any], eval_set: str | None, expert: str | None,
              request: gr.Request | None = None) -> str:
    """The Gold button: the named rater's scores (an expert's) become the set's gold scores, and Results
    then show every rater's agreement with them. Raters are never told which captions are gold. For the
    set's owner and the admins only."""
    name = _chosen_set(session, eval_set)
    who = _who(session, request)
    if not access.may_manage(ctx.store, name, who, ctx.admins):
        raise gr.Error(f"Only the owner of set '{_esc(name)}' (or an --admin user) may mark gold scores.",
                       print_exception=False)
    expert = (expert or "").strip()
    if not expert:
        raise gr.Error("Type the name of the rater whose scores become the gold scores (e.g. your expert).",
                       print_exception=False)
    changed = sets.mark_gold(ctx.store, name, expert)
    total = len(ctx.store.gold_scores(name))
    return (f"{changed} caption(s) now have {_esc(expert)}'s score as their gold score; set '{_esc(name)}' has "
            f"{total} gold caption(s). Press Show results to see each rater's agreement with them.")


@user_errors
def export(ctx: AppContext, session: dict[str, Any], eval_set: str | None, request: gr.Request | None = None
           ) -> list[str]:
    """The Export button: summary + every raw rating as CSV (two files) and as one XLSX workbook (a blind
    set's: for its owner and the admins)."""
    name = _chosen_set(session, eval_set)
    _require_names(ctx, name, _who(session, request))
    folder = Path(tempfile.mkdtemp(prefix="export-", dir=ctx.work_dir))
    return [str(p) for p in sets.export_set(ctx.store, name, folder)]


# ----------------------------------------------------------------------------------------------------------
# Pairwise mode: two captions side by side, names hidden; the work is rating.pairwise


PAIRWISE_ROUNDS = 1000  # bootstrap resamples for the pairwise intervals (about 1 s for a handful of models)


def new_pair() -> dict[str, Any]:
    """The pair on screen, kept server-side (gr.State): which model is A and which is B never reaches the page."""
    return {"eval_set": None, "rater": None, "image_hash": None, "model_a": None, "model_b": None, "file_name": None}


def _show_pair(ctx: AppContext, eval_set: str, rater: str) -> tuple[dict[str, Any], str | None, str, str, str]:
    """The next unvoted pair of the schedule: (pair state, image path, caption A, caption B, status line)."""
    view = pairwise.next_pair(ctx.store, eval_set, rater, ctx.image_dir)
    if view is None:
        done, total = pairwise.pair_progress(ctx.store, eval_set, rater)
        if not total:
            return (new_pair(), None, "", "", "No pairs to compare: the set needs captions from at least two models "
                    "for the same images.")
        return new_pair(), None, "", "", f"All {total} pairs of this set voted. Thank you! See the results below."
    state = {"eval_set": eval_set, "rater": rater, "image_hash": view.image_hash, "model_a": view.model_a,
             "model_b": view.model_b, "file_name": view.file_name}
    status = f"Pair {view.done + 1} of {view.total} · image **{_esc(view.file_name)}**"
    if view.image_path is None:
        status += " (not in the display cache any more; upload it again to see it)"
    return state, view.image_path, view.caption_a, view.caption_b, status


@user_errors
def pairwise_show(ctx: AppContext, session: dict[str, Any]) -> tuple[Any, ...]:
    """The Show next pair button (and a newly opened set): the next pair this rater has not voted on."""
    if not session or not session.get("eval_set"):
        return new_pair(), None, "", "", "Open an evaluation set above, then click **Show next pair**."
    eval_set, rater = _require_session(session)
    return _show_pair(ctx, eval_set, rater)


@user_errors
def pairwise_vote(ctx: AppContext, outcome: str, session: dict[str, Any], pair: dict[str, Any] | None
                  ) -> tuple[Any, ...]:
    """One of the four vote buttons: save the vote for the pair on screen, then show the next pair."""
    eval_set, rater = _require_session(session)
    pair = pair or {}
    if pair.get("eval_set") != eval_set or pair.get("rater") != rater or not pair.get("image_hash"):
        raise gr.Error("No pair of this set is on screen: click Show next pair first.")
    ctx.store.vote(eval_set, rater, pair["image_hash"], pair["model_a"], pair["model_b"], outcome)
    count_rating(ctx, "pairwise")
    *shown, status = _show_pair(ctx, eval_set, rater)
    saved = f"Saved “{pairwise.OUTCOME_LABELS[outcome]}” for {_esc(pair['file_name'] or 'the last image')}."
    return (*shown, f"{saved}  \n{status}")


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
    name = _chosen_set(session, None)
    _require_names(ctx, name, _who(session, request))
    found = pairwise.set_pairwise_results(ctx.store, name, rounds=PAIRWISE_ROUNDS)
    if found.votes.empty:
        return pd.DataFrame(), pd.DataFrame(), f"No pairwise votes in set '{_esc(name)}' yet."
    matrix = (100 * found.win_rates).round(1).reset_index()
    text = (f"{len(found.votes)} vote(s) by {len(found.raters)} rater(s) in set '{_esc(name)}'. Rating: "
            "Bradley-Terry on an Elo-like scale (mean 1000; +200 = preferred 76% of the time), ties counting "
            "half a win each; 95% bootstrap interval over votes; models whose intervals overlap share a rank. "
            "Matrix: how often the row model's caption was preferred over the column model's (%).")
    return pairwise_table(found.leaderboard), matrix, text


@user_errors
def pairwise_export(ctx: AppContext, session: dict[str, Any], request: gr.Request | None = None) -> list[str]:
    """The pairwise export button: leaderboard, win rates and every vote as CSV files and one XLSX workbook
    (a blind set's: for its owner and the admins)."""
    name = _chosen_set(session, None)
    _require_names(ctx, name, _who(session, request))
    folder = Path(tempfile.mkdtemp(prefix="export-", dir=ctx.work_dir))
    return [str(p) for p in pairwise.export_set_pairwise(ctx.store, name, folder, rounds=PAIRWISE_ROUNDS)]


# ----------------------------------------------------------------------------------------------------------
# Importing captions made elsewhere


@user_errors
@no_empty_set_on_failure
def import_captions(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool, preset: str,
                    csv_file: Any, image_files: list[Any] | None, request: gr.Request | None = None
                    ) -> tuple[dict[str, Any], str, str]:
    """The Import button: read a captions CSV or Excel workbook (`image_id, model_name, caption`, comma or
    semicolon separated, e.g. from `python -m captioning caption`) and the images it names (optional) into the
    open set, ready to rate. A score column is saved as ratings by the rater named at the top of the page
    (or by the file's own rater column)."""
    if not csv_file:
        raise gr.Error("Upload a captions CSV or .xlsx workbook (columns image_id, model_name, caption).")
    session, _ = ensure_session(ctx, session, rater, set_name, blind, preset, request)
    folder = None
    if image_files:
        folder = Path(tempfile.mkdtemp(prefix="import-", dir=ctx.work_dir))
        for f in image_files:
            source = Path(_file_path(f))
            shutil.copyfile(source, folder / source.name)
    done = intake.import_captions_file(ctx.store, session["eval_set"], _file_path(csv_file), folder,
                                       image_dir=ctx.image_dir, rater=session["rater"])
    _warn_each(done.problems + done.invalid_scores)
    if not done.imported:
        raise gr.Error("No caption could be imported: " + _esc(" | ".join(done.problems[:5]) or done.message))
    session["version"] += 1
    session["page"] = 0
    message = (f"Imported {done.imported} caption(s) for {done.images} image(s) into set '{_esc(done.set_name)}'"
               + (f" ({done.unchanged} already there as given)" if done.unchanged else "") + ". "
               f"{_esc(done.message)}.")
    if done.without_image:
        message += f" {done.without_image} caption(s) have no picture (shown by their image name)."
    if done.ratings_saved or done.ratings_unchanged:
        message += f" Ratings: {done.ratings_saved} saved" + (
            f", {done.ratings_unchanged} already there" if done.ratings_unchanged else "") + "."
    if done.invalid_scores:
        shown = "; ".join(done.invalid_scores[:5]) + (" ..." if len(done.invalid_scores) > 5 else "")
        message += f" Not imported: {_esc(shown)}."
    if done.gold_saved or done.references_saved:
        message += f" Known scores: {done.gold_saved}; reference captions: {done.references_saved}."
    return session, message, session_summary(ctx, session)


# ----------------------------------------------------------------------------------------------------------
# Layout and wiring


class CaptionZooBlocks(gr.Blocks):
    """gr.Blocks whose refusal of a file input that was not uploaded names no server path.

    An API caller can send any server path as a file input; Gradio refuses it before a handler runs, but
    its message names the path as the server resolved it and, for a blocked one, every blocked path (the
    zoo folder, the database files). The refusal stays Gradio's; only its words change.
    """

    async def preprocess_data(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().preprocess_data(*args, **kwargs)
        except InvalidPathError:
            raise gr.Error(UPLOADS_ONLY, print_exception=False) from None


def build_app(zoo_dir: str | os.PathLike = DEFAULT_ZOO, db_path: str | os.PathLike = DEFAULT_DB, *,
              samples_dir: str | os.PathLike | None = None, image_dir: str | os.PathLike | None = None,
              context: AppContext | None = None, admins: tuple[str, ...] | list[str] = ()) -> gr.Blocks:
    """The whole app as a gr.Blocks; launch it with `demo.launch(**launch_options(demo.ctx, ...))`."""
    ctx = context or make_context(zoo_dir, db_path, samples_dir=samples_dir, image_dir=image_dir, admins=admins)
    entries, zoo_note = zoo_entries(ctx)
    samples = sample_names(ctx)

    with CaptionZooBlocks(title="Caption Zoo", analytics_enabled=False) as demo:  # no version check, no telemetry
        session = gr.State(new_session())
        # Rater and set name survive a page reload (and a server restart: the secret is stable per database).
        remembered = gr.BrowserState({}, storage_key="caption-zoo-session",
                                     secret=hashlib.sha256(str(ctx.store.path.resolve()).encode()).hexdigest()[:32])
        gr.Markdown("# Caption Zoo: compare and rate captioners")
        with gr.Row(equal_height=True):
            rater = gr.Textbox(label="Rater name", placeholder="e.g. alice", max_lines=1, elem_id="rater")
            set_name = gr.Textbox(label="Evaluation set", placeholder="new or existing name, e.g. shapes-v1",
                                  max_lines=1, elem_id="set-name")
            existing = gr.Dropdown(choices=set_choices(ctx), value=None, label="…or reopen an existing set",
                                   interactive=True, elem_id="existing-sets")
            blind = gr.Checkbox(label="Blind mode (hide model names, shuffle columns)", value=False, elem_id="blind")
            open_btn = gr.Button("Open set", scale=0, min_width=120, elem_id="open-set")
        session_line = gr.Markdown(session_summary(ctx, new_session()), elem_id="session-line")

        with gr.Tabs():
            with gr.Tab("Compare & rate", id="compare"):
                with gr.Row():
                    uploads = gr.File(label="Images (drop several files)", file_count="multiple",
                                      file_types=IMAGE_FILE_TYPES, elem_id="uploads", height=160)
                    sample_picks = gr.CheckboxGroup(
                        choices=samples, label="…or sample images", show_select_all=bool(samples),
                        info=None if samples else f"No sample images in {ctx.samples_dir}", elem_id="samples")
                models = gr.CheckboxGroup(choices=model_choices(entries), label="Models", elem_id="models",
                                          show_select_all=True)
                with gr.Accordion("Zoo", open=False):
                    zoo_md = gr.Markdown(zoo_note)
                    zoo_df = gr.Dataframe(zoo_table(entries, read_leaderboard(ctx.zoo_dir)), interactive=False, wrap=True)
                    rescan = gr.Button("Rescan zoo folder", size="sm")
                cards = gr.Markdown(model_cards(ctx, []), elem_id="model-cards")
                with gr.Row():
                    preset = gr.Dropdown(choices=list(PRESETS), value=DEFAULT_PRESET, label="Decoding preset",
                                         elem_id="preset")
                    caption_btn = gr.Button("Caption", variant="primary", elem_id="caption-btn")
                caption_status = gr.Markdown(elem_id="caption-status")
                gr.Markdown(RUBRIC, elem_id="rubric")
                gr.Markdown(KEYS_LEGEND, elem_id="keys-legend")
                rate_status = gr.Markdown(elem_id="rate-status")

                @gr.render(inputs=[session], triggers=[demo.load, session.change])
                def draw_grid(current: dict[str, Any]) -> None:
                    view = grid_view(ctx, current)
                    if not view.rows:
                        gr.Markdown("No captions in this set yet: add images, choose models and click **Caption**"
                                    " (or import a captions CSV)." if current.get("eval_set") else "")
                        return
                    with gr.Row(equal_height=True):
                        first = view.page * PAGE_SIZE + 1
                        gr.Markdown(f"Page {view.page + 1} of {view.pages} · images {first}–"
                                    f"{first + len(view.rows) - 1} of {view.images}", elem_id="page-line")
                        prev_btn = gr.Button("◀ Previous", size="sm", interactive=view.page > 0, elem_id="prev-page")
                        next_btn = gr.Button("Next ▶", size="sm", interactive=view.page + 1 < view.pages,
                                             elem_id="next-page")
                        prev_btn.click(partial(change_page, ctx, delta=-1), session, session, api_visibility="private")
                        next_btn.click(partial(change_page, ctx, delta=1), session, session, api_visibility="private")
                        if view.blind:
                            reveal = gr.Button("Hide model names" if view.revealed else "Reveal model names",
                                               size="sm", elem_id="reveal")
                            reveal.click(bind(reveal_names, ctx), session, session, api_visibility="private")
                    for i, row in enumerate(view.rows):
                        with gr.Row(elem_classes="grid-row"):
                            with gr.Column(scale=0, min_width=168, elem_classes="grid-image"):
                                if row.image_path:
                                    gr.Image(row.image_path, label=row.file_name, interactive=False, height=200,
                                             buttons=["fullscreen"], elem_id=f"image-{i}")
                                elif row.image_hash == intake.image_id_hash(row.file_name):
                                    gr.Markdown(f"**{_esc(row.file_name)}**: imported without its picture "
                                                "(rate the caption by the image name, or import the file again "
                                                "with the image).", elem_id=f"no-image-{i}")
                                else:
                                    gr.Markdown(f"**{_esc(row.file_name)}**: image not in the display cache "
                                                "any more; upload it again to see it (its captions are kept).")
                            with gr.Column(min_width=0, elem_classes="caption-area"), \
                                    gr.Row(elem_classes="caption-strip"):
                                for j, cell in enumerate(row.cells):
                                    with gr.Column(min_width=140, elem_id=f"cell-{i}-{j}", elem_classes="caption-card"):
                                        gr.Textbox(cell.caption, label=cell.label, interactive=False, lines=2,
                                                   elem_id=f"caption-{i}-{j}", elem_classes="caption-text")
                                        # One key per caption: a radio on the next page is a new one, not the
                                        # previous page's radio at the same place still showing its choice.
                                        radio = gr.Radio(SCORE_CHOICES, value=cell.score, show_label=False,
                                                         elem_id=f"rate-{i}-{j}", elem_classes="rating",
                                                         key=f"rate-{row.image_hash}-{j}",  # no model name
                                                         preserved_by_key=None)
                                        # `always_last`: after quick re-clicks the final choice is what is stored.
                                        radio.input(partial(rate_caption, ctx, row.image_hash, cell.model_name,
                                                            f"{cell.label} on {row.file_name}"),
                                                    [session, radio], [rate_status, session_line],
                                                    show_progress="hidden", trigger_mode="always_last",
                                                    concurrency_limit=None, api_visibility="private")

            with gr.Tab("Results", id="results"):
                gr.Markdown("Every model of the set, with how much of it is rated. Accuracy = total × 100 / "
                            "(images × 2); the ranked accuracy %, its rank (ties share a rank) and bootstrap 95% "
                            "interval use only the images rated for every model, so models are compared on the "
                            "same images; images rated and total score count all of the model's rated images. "
                            "Model names are shown here even for blind sets. Per rater: progress, leniency (their "
                            "score minus the others' mean on the same captions) and accuracy per model. The set's owner can "
                            "make an expert's scores the gold scores; raters are not told which captions are "
                            "gold, and the per-rater table then shows each one's agreement with them.")
                with gr.Row():
                    results_set = gr.Dropdown(choices=set_choices(ctx), value=None, allow_custom_value=True,
                                              label="Evaluation set (empty: the open one)", elem_id="results-set")
                    results_btn = gr.Button("Show results", variant="primary", elem_id="results-btn")
                summary_df = gr.Dataframe(interactive=False, label="Summary", elem_id="summary")
                agreement_md = gr.Markdown(elem_id="agreement")
                chart = gr.Plot(label="Accuracy with 95% intervals", elem_id="chart")
                raters_df = gr.Dataframe(interactive=False, label="Per rater", elem_id="raters")
                with gr.Row():
                    gold_rater = gr.Textbox(label="Gold scores from rater (owner only)", scale=3,
                                            placeholder="the expert whose scores become the set's gold scores",
                                            elem_id="gold-rater")
                    gold_btn = gr.Button("Mark their scores as gold", scale=1, elem_id="gold-btn")
                gold_md = gr.Markdown(elem_id="gold-status")
                export_btn = gr.Button("Export CSV + XLSX", elem_id="export-btn")
                export_files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                       elem_id="export-files")

            with gr.Tab("Pairwise", id="pairwise"):
                gr.Markdown("Compare two captions of the same image; which model wrote which stays hidden, and "
                            "sides are shuffled. Every rater gets the same pairs, and every pair of models comes "
                            "up about equally often. Uses the evaluation set opened above.")
                pair_state = gr.State(new_pair())
                pair_next = gr.Button("Show next pair", elem_id="pair-next")
                pair_status = gr.Markdown(elem_id="pair-status")
                with gr.Row(equal_height=True):
                    pair_image = gr.Image(label="Image", interactive=False, height=260, buttons=["fullscreen"],
                                          elem_id="pair-image")
                    with gr.Column():
                        caption_a = gr.Textbox(label="Caption A", interactive=False, lines=2, elem_id="caption-a")
                        caption_b = gr.Textbox(label="Caption B", interactive=False, lines=2, elem_id="caption-b")
                with gr.Row():
                    vote_buttons = {outcome: gr.Button(label, elem_id=f"vote-{outcome.replace('_', '-')}")
                                    for outcome, label in pairwise.OUTCOME_LABELS.items()}
                with gr.Row():
                    pair_results_btn = gr.Button("Show pairwise results", variant="primary",
                                                 elem_id="pair-results-btn")
                    pair_export_btn = gr.Button("Export pairwise CSV + XLSX", elem_id="pair-export-btn")
                pair_results_md = gr.Markdown(elem_id="pair-results-text")
                pair_board = gr.Dataframe(interactive=False, label="Bradley-Terry ratings", elem_id="pair-board")
                pair_matrix = gr.Dataframe(interactive=False, label="Win rate % (row over column)",
                                           elem_id="pair-matrix")
                pair_files = gr.File(label="Downloads", file_count="multiple", interactive=False,
                                     elem_id="pair-files")

            with gr.Tab("Import captions", id="import"):
                gr.Markdown("Rate captions made elsewhere: a CSV or Excel workbook (.xlsx, first sheet) from "
                            "`python -m captioning caption`, or from another CLIP-GPT2 project's batch inference, "
                            "with columns `image_id, model_name, caption` (comma or semicolon separated; other "
                            "columns are kept as the decoding settings). A `score` column (0/1/2) is saved as "
                            "ratings by the rater named above (or the file's `rater` column); `gold_score` and "
                            "`reference` columns are kept too. Upload the images it names as well if you have them: "
                            "a caption without its picture is kept and shown by its image name. "
                            "Everything goes into the evaluation set above.")
                with gr.Row():
                    import_csv = gr.File(label="Captions CSV or .xlsx", file_types=[".csv", ".txt", ".tsv", ".xlsx"],
                                         elem_id="import-csv")
                    import_images = gr.File(label="Its images", file_count="multiple", file_types=IMAGE_FILE_TYPES,
                                            elem_id="import-images")
                import_btn = gr.Button("Import captions", variant="primary", elem_id="import-btn")
                import_status = gr.Markdown(elem_id="import-status")

        # -- wiring ---------------------------------------------------------------------------------------
        open_btn.click(bind(open_set, ctx), [session, rater, set_name, blind, preset],
                       [session, session_line, preset, blind], api_name="open_set"
                       ).success(remember, session, remembered, api_visibility="private")
        existing.input(lambda name: name or "", existing, set_name, api_visibility="private").then(
            bind(open_set, ctx), [session, rater, set_name, blind, preset], [session, session_line, preset, blind],
            api_visibility="private").success(remember, session, remembered, api_visibility="private")
        caption_btn.click(bind(caption, ctx),
                          [session, rater, set_name, blind, uploads, sample_picks, models, preset],
                          [session, caption_status, session_line], api_name="caption", concurrency_limit=1
                          ).success(remember, session, remembered, api_visibility="private")
        models.change(partial(model_cards, ctx), models, cards, api_visibility="private")

        rescan.click(partial(rescan_zoo, ctx), None, [models, zoo_md, zoo_df], api_visibility="private")
        results_btn.click(bind(results, ctx), [session, results_set], [summary_df, agreement_md, chart],
                          api_name="results"
                          ).success(bind(rater_results, ctx), [session, results_set], raters_df,
                                    api_visibility="private")
        export_btn.click(bind(export, ctx), [session, results_set], export_files, api_name="export")
        gold_btn.click(bind(mark_gold, ctx), [session, results_set, gold_rater], gold_md, api_name="mark_gold")
        import_btn.click(bind(import_captions, ctx),
                         [session, rater, set_name, blind, preset, import_csv, import_images],
                         [session, import_status, session_line], api_name="import_captions"
                         ).success(remember, session, remembered, api_visibility="private")

        pair_shown = [pair_state, pair_image, caption_a, caption_b, pair_status]
        pair_next.click(partial(pairwise_show, ctx), session, pair_shown, api_visibility="private")
        session.change(partial(pairwise_show, ctx), session, pair_shown, api_visibility="private")
        for outcome, button in vote_buttons.items():
            # trigger_mode "once": a second click while the vote is saving is dropped, so a double click
            # cannot land on the next pair before the rater has seen it
            button.click(partial(pairwise_vote, ctx, outcome), [session, pair_state], pair_shown,
                         trigger_mode="once", api_visibility="private")
        pair_results_btn.click(bind(pairwise_results, ctx), session, [pair_board, pair_matrix, pair_results_md],
                               api_name="pairwise_results")
        pair_export_btn.click(bind(pairwise_export, ctx), session, pair_files, api_name="pairwise_export")
        session.change(partial(refresh_sets, ctx), None, [existing, results_set], api_visibility="private")
        demo.load(partial(refresh_sets, ctx), None, [existing, results_set], api_visibility="private")
        demo.load(bind(restore_session, ctx), remembered, [session, session_line, rater, set_name, blind, preset],
                  api_visibility="private")

        # -- plain API endpoints (for gradio_client and scripts) --------------------------------------------
        # gr.api takes the endpoint's parameter types from the function's own signature, hence closures here.
        # A blind set's model names go only to its owner and the admins (access.may_see_names): anyone else gets
        # the grid's column labels ("Caption A") from /captions and rates by them.
        def rate(eval_set: str, rater: str, image_hash: str, model_name: str, score: int,
                 request: gr.Request | None = None) -> str:
            """Store one rating (0, 1 or 2) of a caption already in the set; returns a confirmation. For a blind
            set whose names the caller may not see, `model_name` is the caption's `column` from /captions."""
            try:
                model = model_name
                if not access.may_see_names(ctx.store, eval_set, _who({"rater": rater}, request), ctx.admins):
                    model = grid.column_model(ctx.store, eval_set, rater, image_hash, model_name)
                ctx.store.rate(eval_set, rater, image_hash, model, score)
                count_rating(ctx, "api")
            except ValueError as e:
                raise gr.Error(_esc(str(e)), print_exception=False) from None
            return f"saved {int(score)} by {rater} for {model_name} on {image_hash[:12]}"

        def captions(eval_set: str, rater: str = "", request: gr.Request | None = None) -> list[dict]:
            """Every caption of the set: image_hash, file_name, model_name, caption, decoding. For a blind set,
            to anyone but its owner (the logged-in user with --auth, else `rater`) and the admins: image_hash,
            file_name, column ("Caption A", as in the grid) and caption, no model name."""
            try:
                if not access.may_see_names(ctx.store, eval_set, _who({"rater": rater}, request), ctx.admins):
                    return grid.blind_captions(ctx.store, eval_set, rater)
                rows = ctx.store.get_captions(eval_set)
            except ValueError as e:
                raise gr.Error(_esc(str(e)), print_exception=False) from None
            return [{k: r[k] for k in ("image_hash", "file_name", "model_name", "caption", "decoding")} for r in rows]

        gr.api(rate, api_name="rate", concurrency_limit=None)
        gr.api(captions, api_name="captions", concurrency_limit=None)

    demo.ctx = ctx  # for launch_options and tests
    return demo


def launch_options(ctx: AppContext, *, host: str = "127.0.0.1", port: int | None = 7860,
                   auth: tuple[str, str] | None = None, max_file_size: str | int = DEFAULT_MAX_FILE_SIZE
                   ) -> dict[str, Any]:
    """The keyword arguments for `demo.launch`: local only, no share link, upload limit, nothing private served.

    Only the display-image cache is allowed to be served (it holds downsized copies of uploaded images);
    the zoo and the database are also listed as blocked, in case a future allowed path ever contains them.
    """
    db = ctx.store.path.resolve()
    blocked = [str(ctx.zoo_dir.resolve()), str(db), str(db) + "-wal", str(db) + "-shm"]
    return dict(server_name=host, server_port=port, share=False, auth=auth, max_file_size=max_file_size,
                allowed_paths=[str(ctx.image_dir.resolve())], blocked_paths=blocked, footer_links=["api"],
                theme=gr.themes.Soft(), css=CSS, js=KEYBOARD_JS, show_error=True, ssr_mode=False, mcp_server=False)


def build_server(demo: gr.Blocks, *, host: str = "127.0.0.1", port: int | None = 7860,
                 auth: tuple[str, str] | list[tuple[str, str]] | None = None,
                 max_file_size: str | int = DEFAULT_MAX_FILE_SIZE, api_token: str | None = None,
                 max_batch_wait_ms: float = 10.0, max_batch: int = 32) -> FastAPI:
    """One FastAPI app serving the REST API, /healthz, /readyz, /metrics and /docs (`server.api`) with the page
    mounted at / (`gr.mount_gradio_app`, with everything `launch_options` gives `demo.launch`). The API uses
    the page's model cache, its auth (HTTP Basic there) plus the optional bearer token, and its upload limit."""
    from server.api import ApiConfig, create_app

    ctx: AppContext = demo.ctx
    pairs = [auth] if isinstance(auth, tuple) else list(auth or [])
    api = create_app(ApiConfig(zoo_dir=ctx.zoo_dir, auth=pairs, api_token=api_token,
                               max_batch_wait_ms=max_batch_wait_ms, max_batch=max_batch), cache=ctx.cache)
    ctx.metrics = api.state.api.metrics
    options = launch_options(ctx, host=host, port=port, auth=auth, max_file_size=max_file_size)
    options.pop("share")  # a mounted app has no share link either way
    gr.mount_gradio_app(api, demo, path="/", **options)
    # Gradio checks that a file input names an uploaded file (not the database, not the zoo) only once the
    # Blocks "has launched", which launch() sets and mount_gradio_app (Gradio 6.31) does not: set it here.
    demo.has_launched = True
    api.state.api.config.max_file_size = demo.max_file_size  # as Gradio parsed it: the page's limit exactly
    return api


def listen(host: str, port: int) -> socket.socket:
    """The server's listening socket, bound now, so that a port taken meanwhile fails here (OSError)."""
    address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    family, kind, proto, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
    except OSError:
        sock.close()
        raise
    return sock


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """'USER:PASS' -> ('USER', 'PASS'); the password may itself contain ':'."""
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"--auth must look like USER:PASS (both non-empty), got {value!r}")
    return user, password


def parse_admins(values: list[str] | None) -> tuple[str, ...]:
    """The --admin values ('alice', 'bob,carol', repeatable) as validated names."""
    names = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    return tuple(dict.fromkeys(validate_name(name, "--admin user name") for name in names))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Caption Zoo: compare zoo captioners side by side and rate captions.")
    parser.add_argument("--zoo", default=DEFAULT_ZOO, help=f"zoo folder (default: {DEFAULT_ZOO})")
    parser.add_argument("--db", default=DEFAULT_DB, help=f"SQLite file for ratings (default: {DEFAULT_DB})")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    parser.add_argument("--auth", default=None, help="require a login, given as USER:PASS")
    parser.add_argument("--admin", action="append", default=[], metavar="USER",
                        help="a user who may see every blind set's model names and results, besides the set's "
                             "owner (repeatable or comma-separated); the login name with --auth, else the rater name")
    parser.add_argument("--samples", default=str(DEFAULT_SAMPLES),
                        help="folder of sample images (default: sample_images)")
    parser.add_argument("--image-cache", default=str(DEFAULT_IMAGE_CACHE),
                        help="folder for the display copies of images (default: <temp>/caption-zoo/images)")
    parser.add_argument("--max-file-size", default=DEFAULT_MAX_FILE_SIZE,
                        help="largest upload accepted, on the page and per image in the REST API (default: 25mb)")
    parser.add_argument("--api-token", default=os.environ.get("CAPTION_ZOO_API_TOKEN") or None, metavar="TOKEN",
                        help="also accept `Authorization: Bearer TOKEN` on the REST API and /metrics (default: "
                             "$CAPTION_ZOO_API_TOKEN; with neither this nor --auth the API is open)")
    parser.add_argument("--max-batch-wait-ms", type=float, default=10.0, metavar="MS",
                        help="how long a REST caption request waits for others to be captioned in one batch "
                             "(default: 10; 0 = no micro-batching)")
    parser.add_argument("--max-batch", type=int, default=32, metavar="IMAGES",
                        help="most images in one micro-batch (default: 32)")
    return parser


def port_problem(host: str, port: int) -> str | None:
    """Why the server cannot listen on host:port, as one line naming the fix; None when it can."""
    if not 1 <= port <= 65535:
        return f"--port must be between 1 and 65535, got {port}"
    address = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        family, kind, proto, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            # As the server's own socket does: a port left in TIME_WAIT by a previous run counts as free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(where)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            return (f"port {port} is already in use on {host} (another program, or another Caption Zoo, is "
                    f"listening there); start on a free port with --port, e.g. --port {port + 1 if port < 65535 else 7860}")
        return (f"cannot listen on {host}:{port} ({e.strerror or e}); use an address of this machine with --host "
                "(default 127.0.0.1) and a free port with --port")
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        auth = parse_auth(args.auth)
        problem = port_problem(args.host, args.port)  # before anything is opened: a busy port fails at once
        if problem:
            raise ValueError(problem)
        if args.max_batch_wait_ms < 0 or args.max_batch < 1:
            raise ValueError(f"--max-batch-wait-ms must be >= 0 and --max-batch >= 1, got "
                             f"{args.max_batch_wait_ms:g} and {args.max_batch}")
        demo = build_app(args.zoo, args.db, samples_dir=args.samples, image_dir=args.image_cache,
                         admins=parse_admins(args.admin))
        demo.queue(default_concurrency_limit=4)
        server = build_server(demo, host=args.host, port=args.port, auth=auth, max_file_size=args.max_file_size,
                              api_token=args.api_token, max_batch_wait_ms=args.max_batch_wait_ms,
                              max_batch=args.max_batch)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        listener = listen(args.host, args.port)
    except OSError as e:  # taken between the check and now
        print(f"error: {port_problem(args.host, args.port) or e}", file=sys.stderr)
        return 2
    shown = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
    print(f"Caption Zoo on http://{shown}:{args.port} (REST API /api/v1, docs /docs, metrics /metrics)", flush=True)
    # Gradio keeps event streams open; do not wait for them for ever on Ctrl+C
    uvicorn.Server(uvicorn.Config(server, log_level="warning", timeout_graceful_shutdown=3)).run(sockets=[listener])
    return 0


if __name__ == "__main__":
    sys.exit(main())
