"""The page put together: `build_app` lays out the views (one module each) around the page-wide controls,
wires the events that cross views, and adds the Gradio API endpoints scripts use (/rate, /captions).

Layout, top to bottom: a one-line title, the set bar (rater, set, existing sets, Blind, raters per caption, Open
set) with its field error, the session line, then the tabs Compare & rate, Results, Review, Pairwise, Zoo,
Import, and a footer linking the REST API's docs (and, with --login, signing out).
"""

from __future__ import annotations

import hashlib
import os
from functools import partial
from typing import Any

import gradio as gr
from gradio.exceptions import InvalidPathError  # raised by gradio itself for a file input it refuses

from page.compare import build_compare_view, fold_setup, progress_html, wire_caption
from page.context import DEFAULT_DB, DEFAULT_ZOO, AppContext, make_context
from page.importing import build_import_view
from page.pairwise import build_pairwise_view
from page.results import build_results_view
from page.review import build_review_view
from page.session import (
    BLIND_NEW,
    OVERLAP_BLANK,
    OVERLAP_NEW,
    SIGNED_IN,
    acting_rater,
    admins_for,
    bind,
    esc,
    new_session,
    open_set,
    open_set_on_page,
    refresh_sets,
    remember,
    restore_session,
    session_summary,
    set_choices,
    set_controls,
    signed_in_rater,
    who,
)
from page.zoo import build_zoo_view, rescan_zoo
from rating import access, grid

UPLOADS_ONLY = "Only files uploaded through this page can be used; upload the file instead."
FOOTER = ('<div id="page-footer">REST API: <a href="/docs" target="_blank">docs (Swagger UI)</a> · '
          '<a href="/redoc" target="_blank">ReDoc</a> · <a href="/api/v1/models" target="_blank">/api/v1/models</a>'
          ' · <a href="/metrics" target="_blank">/metrics</a>{sign_out}</div>')
SIGN_OUT = ' · <a href="/logout" id="sign-out">Sign out</a>'


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


def add_api_endpoints(ctx: AppContext) -> None:
    """/rate and /captions for gradio_client and scripts. gr.api takes the endpoint's parameter types from the
    function's own signature, hence closures. A blind set's model names go only to its owner and the admins
    (rating.access.may_see_names): anyone else gets the grid's column labels ("Caption A") from /captions and rates by
    them. With --login the rater is the signed-in account, whatever `rater` says."""

    def rate(eval_set: str, rater: str, image_hash: str, model_name: str, score: int,
             request: gr.Request | None = None) -> str:
        """Store one rating (0, 1 or 2) of a caption already in the set; returns a confirmation. For a blind
        set whose names the caller may not see, `model_name` is the caption's `column` from /captions. With
        --login the rating is the signed-in account's, whatever `rater` says."""
        try:
            rater = acting_rater(ctx, rater, request)
            asking = who({"rater": rater}, request)
            model = model_name
            if not access.may_see_names(ctx.store, eval_set, asking, admins_for(ctx, asking)):
                model = grid.column_model(ctx.store, eval_set, rater, image_hash, model_name)
            ctx.store.rate(eval_set, rater, image_hash, model, score)
            ctx.count_rating("api")
        except ValueError as e:
            raise gr.Error(esc(str(e)), print_exception=False) from None
        return f"saved {int(score)} by {rater} for {model_name} on {image_hash[:12]}"

    def captions(eval_set: str, rater: str = "", request: gr.Request | None = None) -> list[dict]:
        """Every caption of the set: image_hash, file_name, model_name, caption, decoding. For a blind set,
        to anyone but its owner (the logged-in user with --auth, else `rater`) and the admins: image_hash,
        file_name, column ("Caption A", as in `rater`'s grid: columns are shuffled per rater) and caption, no
        model name."""
        try:
            if ctx.login:
                rater = acting_rater(ctx, rater, request)
            asking = who({"rater": rater}, request)
            if not access.may_see_names(ctx.store, eval_set, asking, admins_for(ctx, asking)):
                return grid.blind_captions(ctx.store, eval_set, rater)
            rows = ctx.store.get_captions(eval_set)
        except ValueError as e:
            raise gr.Error(esc(str(e)), print_exception=False) from None
        return [{k: r[k] for k in ("image_hash", "file_name", "model_name", "caption", "decoding")} for r in rows]

    gr.api(rate, api_name="rate", concurrency_limit=None)
    gr.api(captions, api_name="captions", concurrency_limit=None)


def build_app(zoo_dir: str | os.PathLike = DEFAULT_ZOO, db_path: str | os.PathLike = DEFAULT_DB, *,
              samples_dir: str | os.PathLike | None = None, image_dir: str | os.PathLike | None = None,
              context: AppContext | None = None, admins: tuple[str, ...] | list[str] = (),
              login: bool = False) -> gr.Blocks:
    """The whole page as a gr.Blocks; serve it with `page.server.build_server(demo)` (or
    `demo.launch(**launch_options(demo.ctx, ...))`). `login`: the page's users are the accounts of the rating
    database (serve it with `build_server(demo, login=True)`): the rater is the signed-in account."""
    ctx = context or make_context(zoo_dir, db_path, samples_dir=samples_dir, image_dir=image_dir, admins=admins,
                                  login=login)

    with CaptionZooBlocks(title="Caption Zoo", analytics_enabled=False) as demo:  # no version check, no telemetry
        session = gr.State(new_session())
        history = gr.State([])  # the Undo stack of this browser session
        # Rater and set name survive a page reload (and a server restart: the secret is stable per database).
        remembered = gr.BrowserState({}, storage_key="caption-zoo-session",
                                     secret=hashlib.sha256(ctx.store.location.encode()).hexdigest()[:32])
        gr.Markdown("# Caption Zoo: compare and rate captioners", elem_id="title")
        with gr.Row(equal_height=True, elem_id="set-bar"):
            # With --login the rater is the signed-in account: shown (on load), never typed.
            rater = gr.Textbox(label=SIGNED_IN if ctx.login else "Rater name", max_lines=1, elem_id="rater",
                               placeholder=None if ctx.login else "e.g. alice", interactive=not ctx.login)
            set_name = gr.Textbox(label="Evaluation set", placeholder="new or existing name, e.g. shapes-v1",
                                  max_lines=1, elem_id="set-name")
            existing = gr.Dropdown(choices=set_choices(ctx), value=None, label="…or reopen an existing set",
                                   interactive=True, elem_id="existing-sets")
            blind = gr.Checkbox(label=BLIND_NEW, value=False, elem_id="blind")
            overlap = gr.Number(label=OVERLAP_NEW, value=None, precision=0, placeholder=OVERLAP_BLANK,
                                elem_id="overlap")  # no minimum: a blank box comes as 0 (page.session.parse_overlap)
            open_btn = gr.Button("Open set", scale=0, min_width=120, elem_id="open-set")
        blind_fixed = gr.State(False)  # whether the Blind and overlap boxes show an existing set's fixed state
        names_error = gr.Markdown(elem_id="names-error", elem_classes="field-error")
        session_line = gr.Markdown(session_summary(ctx, new_session()), elem_id="session-line")
        shared = {"session": session, "history": history, "rater": rater, "set_name": set_name, "blind": blind,
                  "overlap": overlap, "session_line": session_line, "names_error": names_error}

        with gr.Tabs():
            with gr.Tab("Compare & rate", id="compare"):
                compare = build_compare_view(ctx, demo, shared)
            with gr.Tab("Results", id="results") as results_tab:
                results = build_results_view(ctx, shared, results_tab)
            with gr.Tab("Review", id="review") as review_tab:
                review = build_review_view(ctx, shared, review_tab)
            with gr.Tab("Pairwise", id="pairwise"):
                build_pairwise_view(ctx, shared)
            with gr.Tab("Zoo", id="zoo"):
                zoo = build_zoo_view(ctx)
            with gr.Tab("Import captions", id="import"):
                imported = build_import_view(ctx, shared, compare["preset"])
        gr.HTML(FOOTER.format(sign_out=SIGN_OUT if ctx.login else ""))

        # -- events that cross views ----------------------------------------------------------------------
        fold = [session, compare["models"], compare["preset"]]
        after_open = [(partial(fold_setup, ctx), fold, compare["setup"]),  # first: `folded` skips it
                      (partial(progress_html, ctx), session, compare["progress"]),
                      (partial(set_controls, ctx), [set_name, blind_fixed], [blind, overlap, blind_fixed])]

        def chain(event: Any, *, folded: bool = False) -> None:
            """After a set is opened, captioned into or imported into: remember it, fold the inputs away when it
            has captions (unless the event itself did: `folded`), show its progress, fix its Blind and overlap
            boxes."""
            event = event.success(remember, session, remembered, api_visibility="private")
            for fn, inputs, output in after_open[1:] if folded else after_open:
                event = event.then(fn, inputs, output, show_progress="hidden", api_visibility="private")

        opening = [session, rater, set_name, blind, compare["preset"]]
        opened = [session, session_line, compare["preset"], blind]
        chain(open_btn.click(bind(open_set_on_page, ctx), [*opening, overlap], opened, api_visibility="private"))
        gr.Button(visible=False).click(bind(open_set, ctx), opening, opened, api_name="open_set")  # for scripts
        chain(existing.input(lambda name: name or "", existing, set_name, api_visibility="private").then(
            bind(open_set_on_page, ctx), [*opening, overlap], opened, api_visibility="private"))
        chain(wire_caption(ctx, compare, shared), folded=True)  # caption_on_page folds in its own update
        chain(imported)
        chain(demo.load(bind(restore_session, ctx), remembered,
                        [session, session_line, rater, set_name, blind, compare["preset"]], api_visibility="private"))
        # A set name typed: the Blind and overlap boxes show that set's fixed state, or a fresh choice for a new set.
        set_name.input(partial(set_controls, ctx), [set_name, blind_fixed], [blind, overlap, blind_fixed],
                       trigger_mode="always_last", show_progress="hidden", api_visibility="private")
        for field in (rater, set_name):
            field.input(lambda: "", None, names_error, api_visibility="private")
        zoo["rescan"].click(partial(rescan_zoo, ctx), None, [compare["models"], zoo["zoo_md"], zoo["zoo_df"]],
                            api_visibility="private")
        pickers = [existing, results["results_set"], review["review_set"]]
        session.change(partial(refresh_sets, ctx, len(pickers)), None, pickers, api_visibility="private")
        demo.load(partial(refresh_sets, ctx, len(pickers)), None, pickers, api_visibility="private")
        demo.load(bind(signed_in_rater, ctx), None, rater, api_visibility="private")
        add_api_endpoints(ctx)

    demo.ctx = ctx  # for the server and tests
    return demo
