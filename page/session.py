"""One browser session of the page and who is asking; opening a set; the helpers every view's handlers share.

A session is a `gr.State` dict (`new_session`): the open evaluation set, the rater, who is asking, the
grid's page, whether a blind set's names are revealed, and `version`, which changes whenever the grid must
be redrawn from the store. The browser remembers rater and set (`remember`) so a reload reopens them.

Who is asking (`who`): the logged-in user when the app runs with --auth or --login (enforced per login), else
the rater name typed on the page (honour-based). With --login the signed-in account also IS the rater
(`acting_rater`): the rater box shows it and cannot be edited, and every handler rates as that account whatever
a box or an API call names; only owners and admins create sets; the admins are the accounts with role admin
(`admins_for`). Blind sets give their model names only to their owner and the admins
(`rating.access.may_see_names`).

A set's blind state and overlap (raters per caption) are chosen when the set is created and shown on the set from
then on: the Blind and overlap boxes are editable only while the set name is new (`set_controls`), so they never
carry over to another set.
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
OVERLAP_NEW = "Raters per caption (overlap; 0 = everyone)"
OVERLAP_FIXED = "Raters per caption (fixed when this set was created)"
OVERLAP_BLANK = "blank = everyone rates everything"  # the browser sends 0 for a blank box: the same
SIGNED_IN = "Rater (signed in)"
NEED_SET = "Open an evaluation set first: type your rater name and a set name, then click Open set."
HISTORY_LIMIT = 200  # ratings the Undo button can take back, per browser session


def new_session() -> dict[str, Any]:
    """One browser session's state. `version` changes whenever the grid must be redrawn from the store;
    `focus` is the (image_hash, model) caption the next drawing puts the keyboard focus on."""
    return {"eval_set": None, "rater": None, "who": None, "blind": False, "revealed": False, "page": 0,
            "version": 0, "focus": None}


def who(session: dict[str, Any] | None, request: gr.Request | None) -> str | None:
    """Who is asking: the logged-in user when the app runs with --auth or --login, else the rater of the
    session."""
    username = getattr(request, "username", None) if request is not None else None
    return username or (session or {}).get("who") or (session or {}).get("rater")


def acting_rater(ctx: AppContext, rater: Any, request: gr.Request | None) -> str:
    """The rater a rating is stored under: with --login the signed-in account, whatever `rater` says (neither
    the page nor a call through Gradio's HTTP API can rate as someone else); without it, the typed name.
    ValueError for a missing or invalid name."""
    if ctx.login:
        username = getattr(request, "username", None) if request is not None else None
        if not username:
            raise ValueError("Sign in first: this app rates as the signed-in account.")
        return username
    return validate_name(rater, "rater name")


def admins_for(ctx: AppContext, asking: str | None) -> tuple[str, ...]:
    """The admins for a check on behalf of `asking`: the --admin names, or with --login the accounts whose role is
    admin (rating.access.admins_of)."""
    return access.admins_of(ctx.store, asking, ctx.admins, login=ctx.login)


def parse_overlap(value: Any) -> int | None:
    """The overlap box as the store takes it: blank or 0 = None (everyone rates everything; the browser sends 0
    for an empty number box), else a whole number >= 1 (ValueError saying so)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if number == 0:
        return None
    if not number.is_integer() or number < 1:
        raise ValueError(f"Raters per caption (overlap) must be a whole number of at least 1, or blank (0) for "
                         f"everyone; got {value!r}")
    return int(number)


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
    if not access.may_see_names(ctx.store, set_name, asking, admins_for(ctx, asking)):
        raise gr.Error(esc(access.names_refused(set_name, login=ctx.login)), print_exception=False)


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


def refresh_sets(ctx: AppContext, pickers: int = 2) -> tuple[Any, ...]:
    """New choices for the page's `pickers` set dropdowns (other people create sets too)."""
    names = set_choices(ctx)
    return tuple(gr.Dropdown(choices=names) for _ in range(pickers))


def stored_set(ctx: AppContext, set_name: Any) -> dict[str, Any] | None:
    """The stored set of that name, or None for a new (or invalid) name."""
    try:
        return ctx.store.get_set((set_name or "").strip())
    except ValueError:  # EvaluationSetNotFoundError (a new name) or an invalid name
        return None


def set_controls(ctx: AppContext, set_name: str | None, fixed: bool = False) -> tuple[Any, Any, bool]:
    """The Blind and overlap boxes for the set name typed or picked, and whether they are now fixed: an existing
    set shows its own blind flag and overlap, fixed; a new name makes the boxes editable again, reset when they
    were showing another set's fixed state (so a blind set never makes the next one blind) and as the user
    left them otherwise."""
    info = stored_set(ctx, set_name) if (set_name or "").strip() else None
    if info is not None:
        return (gr.Checkbox(value=bool(info["blind"]), interactive=False, label=BLIND_FIXED),
                gr.Number(value=info["overlap"], interactive=False, label=OVERLAP_FIXED,
                          placeholder="everyone rates everything"), True)
    if fixed:
        return (gr.Checkbox(value=False, interactive=True, label=BLIND_NEW),
                gr.Number(value=None, interactive=True, label=OVERLAP_NEW, placeholder=OVERLAP_BLANK), False)
    return gr.skip(), gr.skip(), False  # already a new set's boxes: leave them (and the user's choice) alone


def ensure_session(ctx: AppContext, session: dict[str, Any] | None, rater: str, set_name: str, blind: bool,
                   preset: str | None, request: gr.Request | None = None, *, overlap: Any = None
                   ) -> tuple[dict[str, Any], sets.SetInfo]:
    """Open (or create) the evaluation set for this rater; returns the session and the stored set.

    An existing set keeps the blind flag, preset, overlap and owner it was created with, so every rater rates
    the same way. A new set's owner is the logged-in user with --auth or --login, else the rater. With --login
    the rater is the signed-in account (`acting_rater`) and only owners and admins may create a set.
    """
    rater = acting_rater(ctx, rater, request)
    asking = getattr(request, "username", None) or rater
    overlap = parse_overlap(overlap)
    if ctx.login and stored_set(ctx, set_name) is None and not access.may_create_set(ctx.store, asking, login=True):
        validate_name(set_name, "evaluation set name")
        raise gr.Error(f"Only owners and admins may create evaluation sets, and your account ({esc(asking)}) may "
                       f"rate the existing ones: pick one under “…or reopen an existing set”, or ask an admin to "
                       f"create set '{esc(set_name.strip())}' (or to give you the owner role).",
                       print_exception=False)
    info = sets.open_set(ctx.store, set_name, rater, bool(blind), preset if preset in PRESETS else DEFAULT_PRESET,
                         owner=asking, overlap=overlap)
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
        if ctx.login:  # the rater is the signed-in account
            return "No evaluation set open. Type a set name (new or existing), then click **Open set**."
        return ("No evaluation set open. Type your rater name and a set name (new or existing), then click "
                "**Open set**.")
    counts = counts or sets.set_summary(ctx.store, session["eval_set"], session["rater"])
    mode = ("🙈 blind: model names hidden, columns shuffled per image and per rater" if counts.blind
            else "model names shown")
    if counts.overlap is not None:
        mode += f" · {counts.overlap} rater(s) per caption"
    return (f"Set **{esc(counts.name)}** · {mode} · preset `{counts.preset}` · rater **{esc(session['rater'])}** · "
            f"{counts.images} images · {counts.captions} captions · you rated {counts.rated} of {counts.captions}")


@user_errors
def open_set(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool, preset: str,
             request: gr.Request | None = None, *, overlap: Any = None) -> tuple[dict[str, Any], str, str, bool]:
    """The Open set button (and the Gradio API endpoint "open_set"): returns the session, a status line, and the
    set's preset and blind flag (the page then fixes the Blind and overlap boxes with `set_controls`).
    `overlap`: raters per caption of a new set (blank: everyone)."""
    session, info = ensure_session(ctx, session, rater, set_name, blind, preset, request, overlap=overlap)
    session["version"] += 1  # redraw the grid from the store even when the same set is opened again
    return session, session_summary(ctx, session), info.preset, info.blind


def open_set_on_page(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool, preset: str,
                     overlap: Any = None, request: gr.Request | None = None) -> tuple[dict[str, Any], str, str, bool]:
    """`open_set` with the page's overlap box (the API endpoint keeps its inputs)."""
    return open_set(ctx, session, rater, set_name, blind, preset, request, overlap=overlap)


def remember(session: dict[str, Any]) -> dict[str, Any]:
    """What the browser keeps (localStorage) so that a page reload reopens the same set for the same rater."""
    return {"rater": session.get("rater"), "eval_set": session.get("eval_set")}


def restore_session(ctx: AppContext, remembered: dict[str, Any] | None, request: gr.Request | None = None
                    ) -> tuple[Any, ...]:
    """On page load: reopen the set this browser had open (only if it still exists); never creates one.

    Returns the session, its status line, and rater, set name, blind flag and preset for the controls.

    With nothing to restore every output is `gr.skip()`, so that a name typed while the page was still
    loading is not wiped out. With --login the set reopens for the signed-in account, whoever this browser
    remembered.
    """
    remembered = remembered or {}
    rater, name = remembered.get("rater") or "", remembered.get("eval_set") or ""
    if ctx.login:
        rater = getattr(request, "username", None) or ""
    if not (rater and name and name in set_choices(ctx)):
        return (gr.skip(),) * 6
    info = ctx.store.get_set(name)
    session = new_session()
    session.update(eval_set=name, rater=rater, who=getattr(request, "username", None) or rater,
                   blind=info["blind"], version=1)
    return session, session_summary(ctx, session), rater, name, info["blind"], info["preset"] or DEFAULT_PRESET


def signed_in_rater(ctx: AppContext, request: gr.Request | None = None) -> Any:
    """On page load with --login: the rater box shows the signed-in account (it is built not editable)."""
    if not ctx.login:
        return gr.skip()
    return gr.Textbox(value=getattr(request, "username", None) or "", interactive=False, label=SIGNED_IN)
