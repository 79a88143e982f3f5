"""One browser session of the page and who is asking; opening a set; the helpers every view's handlers share.

A session is a `gr.State` dict (`new_session`): the open evaluation set, the rater, who is asking, the
grid's page, whether a blind set's names are revealed, and `version`, which changes whenever the grid must
be redrawn from the store. The browser remembers rater and set (`remember`) so a reload reopens them.

Who is asking (`who`): the logged-in user when the app runs with --auth (enforced per login), else the rater
name typed on the page (honour-based). Blind sets give their model names only to their owner and the
--admin users (`rating.access.may_see_names`).

A set's blind state is chosen when the set is created and shown on the set from then on: the Blind box is
editable only while the set name is new (`blind_control`), so it never carries over to another set.
"""

from __future__ import annotations

import html
import inspect
from collections.abc import Callable
from functools import partial, wraps
from typing import Any

import gradio as gr

from captioning.generation import PRESETS
from captioning.images import ImageLoadError
from captioning.zoo import ZooError
from page.context import AppContext
from rating import access, sets
from rating.sets import DEFAULT_PRESET
from rating.validation import validate_name

BLIND_NEW = "Blind: hide model names (chosen now, for this new set)"
BLIND_FIXED = "Blind (fixed when this set was created)"
NEED_SET = "Open an evaluation set first: type your rater name and a set name, then click Open set."
HISTORY_LIMIT = 200  # ratings the Undo button can take back, per browser session


def new_session() -> dict[str, Any]:
    """One browser session's state. `version` changes whenever the grid must be redrawn from the store;
    `focus` is the (image_hash, model) caption the next drawing puts the keyboard focus on."""
    return {"eval_set": None, "rater": None, "who": None, "blind": False, "revealed": False, "page": 0,
            "version": 0, "focus": None}


def who(session: dict[str, Any] | None, request: gr.Request | None) -> str | None:
    """Who is asking: the logged-in user when the app runs with --auth, else the rater of the session."""
    username = getattr(request, "username", None) if request is not None else None
    return username or (session or {}).get("who") or (session or {}).get("rater")


def esc(text: Any) -> str:
    """Text from files, models and users, made safe for the page (toasts and Markdown render HTML)."""
    return html.escape(str(text), quote=False)


def require_session(session: dict[str, Any] | None) -> tuple[str, str]:
    """The open set and rater, or a gr.Error saying how to open one."""
    if not session or not session.get("eval_set") or not session.get("rater"):
        raise gr.Error(NEED_SET, print_exception=False)
    return session["eval_set"], session["rater"]


def require_names(ctx: AppContext, set_name: str, asking: str | None) -> None:
    """Refuse (gr.Error) a blind set's model names to anyone but its owner and the admins."""
    if not access.may_see_names(ctx.store, set_name, asking, ctx.admins):
        raise gr.Error(esc(access.names_refused(set_name)), print_exception=False)


def bind(fn: Callable, *bound: Any, **keywords: Any) -> Callable:
    """`partial(fn, *bound, **keywords)` as a plain function: Gradio passes the gr.Request (the logged-in
    user) only to a function whose type hints it can read, which a partial object does not have."""

    @wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        return fn(*bound, *args, **keywords, **kwargs)

    call.__signature__ = inspect.signature(partial(fn, *bound, **keywords))
    return call


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
            raise gr.Error(esc(str(e)), print_exception=False) from None

    return wrapper


def no_empty_set_on_failure(fn: Callable) -> Callable:
    """For handlers called as (ctx, session, rater, set_name, ...) that may create the set: a failure leaves
    no new, empty set behind (rating.sets.undo_new_set_on_failure)."""

    @wraps(fn)
    def wrapper(ctx: AppContext, session: Any, rater: Any, set_name: Any, *args, **kwargs):
        with sets.undo_new_set_on_failure(ctx.store, set_name):
            return fn(ctx, session, rater, set_name, *args, **kwargs)

    return wrapper


def file_path(file: Any) -> str:
    """gr.File gives paths (str); gradio_client-style dicts and file objects are accepted too."""
    if isinstance(file, dict):
        return file.get("path") or file.get("name")
    return str(getattr(file, "name", file))


def warn_each(problems: list[str], limit: int = 5) -> None:
    """One toast per problem, at most `limit` of them and a count of the rest."""
    for message in problems[:limit]:
        gr.Warning(esc(message))
    if len(problems) > limit:
        gr.Warning(f"... and {len(problems) - limit} more files could not be used.")


# ----------------------------------------------------------------------------------------------------------
# Opening a set


def set_choices(ctx: AppContext) -> list[str]:
    return [s["name"] for s in ctx.store.list_sets()]


def refresh_sets(ctx: AppContext) -> tuple[Any, Any]:
    """New choices for both set pickers (other people create sets too)."""
    names = set_choices(ctx)
    return gr.Dropdown(choices=names), gr.Dropdown(choices=names)


def blind_control(ctx: AppContext, set_name: str | None, fixed: bool = False) -> tuple[Any, bool]:
    """The Blind box for the set name typed or picked, and whether it is now fixed: an existing set shows its
    own state, fixed; a new name makes the box editable again, unticked when it was showing another set's
    fixed state (so a blind set never makes the next one blind) and as the user left it otherwise."""
    name = (set_name or "").strip()
    if name and name in set_choices(ctx):
        return gr.Checkbox(value=bool(ctx.store.get_set(name)["blind"]), interactive=False, label=BLIND_FIXED), True
    if fixed:
        return gr.Checkbox(value=False, interactive=True, label=BLIND_NEW), False
    return gr.skip(), False  # already a new set's box: leave it (and the user's choice) alone


def ensure_session(ctx: AppContext, session: dict[str, Any] | None, rater: str, set_name: str, blind: bool,
                   preset: str | None, request: gr.Request | None = None) -> tuple[dict[str, Any], sets.SetInfo]:
    """Open (or create) the evaluation set for this rater; returns the session and the stored set.

    An existing set keeps the blind flag, preset and owner it was created with, so every rater rates the same
    way. A new set's owner is the logged-in user with --auth, else the rater.
    """
    asking = getattr(request, "username", None) or validate_name(rater, "rater name")
    info = sets.open_set(ctx.store, set_name, rater, bool(blind), preset if preset in PRESETS else DEFAULT_PRESET,
                         owner=asking)
    session = dict(session or new_session())
    if (session.get("eval_set"), session.get("rater"), session.get("who")) != (info.name, info.rater, asking):
        session.update(new_session(), eval_set=info.name, rater=info.rater, who=asking,
                       version=session.get("version", 0) + 1)
    session["blind"] = info.blind
    return session, info


def session_summary(ctx: AppContext, session: dict[str, Any] | None, counts: sets.SetSummary | None = None) -> str:
    """One line about the open set: mode, preset, images, captions and how many this rater has rated.
    `counts`: the set's summary when the caller has it already."""
    if not session or not session.get("eval_set"):
        return ("No evaluation set open. Type your rater name and a set name (new or existing), then click "
                "**Open set**.")
    counts = counts or sets.set_summary(ctx.store, session["eval_set"], session["rater"])
    mode = ("🙈 blind: model names hidden, columns shuffled per image and per rater" if counts.blind
            else "model names shown")
    return (f"Set **{esc(counts.name)}** · {mode} · preset `{counts.preset}` · rater **{esc(session['rater'])}** · "
            f"{counts.images} images · {counts.captions} captions · you rated {counts.rated} of {counts.captions}")


@user_errors
def open_set(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool, preset: str,
             request: gr.Request | None = None) -> tuple[dict[str, Any], str, str, bool]:
    """The Open set button: returns the session, a status line, and the set's preset and blind flag (the
    page then fixes the Blind box with `blind_control`)."""
    session, info = ensure_session(ctx, session, rater, set_name, blind, preset, request)
    session["version"] += 1  # redraw the grid from the store even when the same set is opened again
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
