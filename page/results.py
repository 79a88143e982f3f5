"""The Results view: every model with its coverage and accuracy, what is left to rate, rater agreement,
automatic metrics beside the raters, the per-rater table, the set's progress (images complete at its overlap,
ratings per rater, what is left to you), gold scores and exports.

Nothing is shown as a placeholder table: before a set is chosen, or before it has ratings, the view says what
to do instead. The figures refresh when the tab is opened and, while it is open, as new ratings arrive
(a timer that recomputes only when the number of ratings changed).
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from page.context import AppContext
from page.session import admins_for, bind, esc, require_names, set_choices, user_errors, who
from rating import access, grid, queue, sets
from rating.results import accuracy_chart
from rating.sets import rater_results_table, results_table

# Shares of the page's width for the summary's columns (rank, model, images rated, total score, accuracy %,
# 95% CI, common images, accuracy % (all rated), captions rated, coverage %, note): it fits the page, and the
# note wraps inside its column.
SUMMARY_WIDTHS = ["5%", "17%", "7%", "7%", "8%", "10%", "7%", "8%", "8%", "7%", "16%"]
REFRESH_SECONDS = 5  # how often an open Results tab checks for new ratings
EXPLAINER = ("Accuracy = total × 100 / (images × 2); the ranked accuracy %, its rank (ties share a rank) and "
             "bootstrap 95% interval use only the images rated for every model, so models are compared on the "
             "same images. Model names are shown here even for blind sets (owner and admins only).")


def chosen_set(session: dict[str, Any] | None, eval_set: str | None) -> str:
    name = (eval_set or "").strip() or ((session or {}).get("eval_set") or "")
    if not name:
        raise gr.Error("Choose an evaluation set (or open one on the Compare tab).", print_exception=False)
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
    lines += [f"| {esc(r.model)} | {r.images_with_references} | {fmt(r.bleu4)} | {fmt(r.cider)} | "
              f"{fmt(r.bertscore_f1)} | {fmt(r.human_accuracy, 1)} |" for r in per_model.itertuples()]
    if tau is not None and not tau.empty:
        shown = tau[tau["kendall_tau"].notna() | tau["tau_c_judgments"].notna()] if "tau_c_judgments" in tau else tau
        lines += ["", "Does the metric agree with your raters? Kendall's τ between each metric and the human scores, "
                      "on one row per judgment (as the metric papers report it) and on per-caption means:", "",
                  "| metric | τc judgments | τb judgments | τc means | τb means (p) |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {esc(r.metric)} | {fmt(getattr(r, 'tau_c_judgments', None), 2)} | "
                  f"{fmt(getattr(r, 'tau_b_judgments', None), 2)} | {fmt(getattr(r, 'tau_c', None), 2)} | "
                  f"{fmt(r.kendall_tau, 2)} (p = {fmt(r.p_value, 3)}) |" for r in shown.itertuples()]
        first = tau.iloc[0]
        lines += ["", f"{int(first.get('n_judgments', first['n_captions']))} judgments of {int(first['n_captions'])} "
                      "captions. Near 1: the metric orders captions as your raters do; near 0: it does not tell good "
                      "from bad."]
    return "\n".join(lines)


def agreement_text(result: dict[str, Any], raters: list[str]) -> str:
    if result["raters"] < 2:
        names = ", ".join(esc(r) for r in raters) or "nobody yet"
        return (f"**Agreement** needs ratings of the same captions by two or more raters; so far: {names}. "
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
        text += f"  \n_{esc(result['note'])}_"
    return text


def left_to_rate_text(ctx: AppContext, name: str, rater: str | None) -> str:
    """What is left to rate: captions nobody has scored yet, per model, and this rater's own remainder."""
    captions = pd.DataFrame(ctx.store.get_captions(name), columns=["image_hash", "model_name"])
    if captions.empty:
        return "**Left to rate:** the set has no captions yet; caption images on the Compare tab or import a file."
    ratings = ctx.store.ratings(name)
    rated = set(zip(ratings["image_hash"], ratings["model_name"]))
    captions["rated"] = [(h, m) in rated for h, m in zip(captions["image_hash"], captions["model_name"])]
    open_per_model = captions[~captions["rated"]].groupby("model_name").size()
    if open_per_model.empty:
        text = "**Left to rate:** nothing; every caption has at least one score."
    else:
        listed = ", ".join(f"{esc(m)} {n}" for m, n in open_per_model.items())
        text = (f"**Left to rate:** {int(open_per_model.sum())} of {len(captions)} caption(s) have no score yet "
                f"({listed}).")
    if rater:
        overlap = ctx.store.get_set(name)["overlap"] is not None  # then only the captions still open to you count
        left = (queue.progress(ctx.store, name, rater)["rater"]["left"] if overlap
                else grid.left_to_rate(ctx.store, name, rater))
        text += (f" You ({esc(rater)}) have {left} left; the Compare tab's **Next unrated** goes to them."
                 if left else f" You ({esc(rater)}) have rated every caption" + (" left to you." if overlap else "."))
    return text


@user_errors
def results(ctx: AppContext, session: dict[str, Any], eval_set: str | None, request: gr.Request | None = None
            ) -> tuple[pd.DataFrame, str, Any]:
    """The Results button: every model with its coverage and accuracy (model names revealed), what the figures
    rest on, what is left to rate, agreement and the chart. A blind set's results are for its owner and the
    admins."""
    name = chosen_set(session, eval_set)
    require_names(ctx, name, who(session, request))
    return _figures(ctx, sets.set_results(ctx.store, name), name, (session or {}).get("rater"))


def _figures(ctx: AppContext, found: sets.SetResults, name: str, rater: str | None) -> tuple[pd.DataFrame, str, Any]:
    """The summary table, the text under it and the chart, from one computation of the set's results."""
    figure = accuracy_chart(found.summary, title=f"Caption accuracy by model: {name}",
                            empty_text="No ratings yet" if found.ratings.empty else "No image rated for every model yet")
    text = esc(found.message) + "\n\n" + left_to_rate_text(ctx, name, rater)
    text += "\n\n" + agreement_text(found.agreement, found.raters)
    metrics = metric_text(found.metric_models, found.metric_tau)
    if metrics:
        text += "\n\n" + metrics
    return results_table(found.summary), text, figure


@user_errors
def rater_results(ctx: AppContext, session: dict[str, Any], eval_set: str | None,
                  request: gr.Request | None = None) -> pd.DataFrame:
    """After the Results button: one row per rater (progress, leniency, accuracy per model, gold agreement)."""
    name = chosen_set(session, eval_set)
    require_names(ctx, name, who(session, request))
    return rater_results_table(sets.set_results(ctx.store, name, metrics=False).rater_table)


def show_results(ctx: AppContext, session: dict[str, Any], eval_set: str | None,
                 request: gr.Request | None = None) -> tuple[Any, ...]:
    """Results as the page shows them: the tables and chart appear only when there is something in them;
    otherwise one line says what to do. Returns summary, text, chart, per-rater table, empty-state line, and
    the number of ratings the figures rest on (for the refresh timer)."""
    name = (eval_set or "").strip() or ((session or {}).get("eval_set") or "")
    hidden = (gr.Dataframe(visible=False), "", gr.Plot(visible=False), gr.Dataframe(visible=False))
    if not name:
        return (*hidden, "Open an evaluation set on the Compare tab (or choose one above) to see its results.", None)
    if name not in set_choices(ctx):
        return (*hidden, f"There is no evaluation set '{esc(name)}'; choose one of the list.", None)
    asking = who(session, request)
    if not access.may_see_names(ctx.store, name, asking, admins_for(ctx, asking)):
        return (*hidden, esc(access.names_refused(name, login=ctx.login)), None)
    count = len(ctx.store.ratings(name))
    if not count:
        return (*hidden, f"No ratings in set '{esc(name)}' yet. " + left_to_rate_text(ctx, name, (session or {})
                .get("rater")) + " Rate captions on the Compare tab; this page fills in as ratings arrive.",
                [name, 0])
    found = sets.set_results(ctx.store, name)  # once for the summary, the chart and the per-rater table
    summary, text, figure = _figures(ctx, found, name, (session or {}).get("rater"))
    raters = rater_results_table(found.rater_table)
    widths = SUMMARY_WIDTHS if len(summary.columns) == len(SUMMARY_WIDTHS) else None
    return (gr.Dataframe(summary, visible=True, column_widths=widths), text, gr.Plot(figure, visible=True),
            gr.Dataframe(raters, visible=True), "", [name, count])


def refresh_if_new(ctx: AppContext, session: dict[str, Any], eval_set: str | None, seen: list | None,
                   request: gr.Request | None = None) -> tuple[Any, ...]:
    """The open Results tab's timer: recompute only when the set's number of ratings changed."""
    name = (eval_set or "").strip() or ((session or {}).get("eval_set") or "")
    try:
        count = len(ctx.store.ratings(name)) if name else None
    except ValueError:
        count = None
    if count is None or [name, count] == list(seen or []):
        return (gr.skip(),) * 6
    return show_results(ctx, session, eval_set, request)


def progress_of(ctx: AppContext, session: dict[str, Any] | None, eval_set: str | None) -> tuple[pd.DataFrame, str]:
    """The set's progress (`rating.queue.progress`): one row per rater (rater, rated, images) and a line saying how
    many images are complete at the set's overlap and, for the session's rater, what is left to them. Nothing
    here names a model, so it is shown for blind sets too. (empty table, "") when no set is chosen."""
    name = (eval_set or "").strip() or ((session or {}).get("eval_set") or "")
    if not name or name not in set_choices(ctx):
        return pd.DataFrame(columns=["rater", "rated", "images"]), ""
    rater = (session or {}).get("rater") if (session or {}).get("eval_set") == name else None
    found = queue.progress(ctx.store, name, rater)
    table = pd.DataFrame(found["raters"], columns=["rater", "rated", "images"])
    at = (f"{found['target']} rater(s) per caption" if found["overlap"] is not None
          else f"{found['target']} rater(s): everyone rates everything, so every rater so far")
    text = (f"**Progress:** {found['images_complete']} of {found['images']} images complete at {at} "
            f"({found['captions_complete']} of {found['captions']} captions; {found['ratings']} ratings).")
    if found["rater"] is not None:
        left = found["rater"]["left"]
        text += (f" You ({esc(rater)}) have {left} caption(s) left to rate." if left
                 else f" You ({esc(rater)}) have nothing left to rate.")
    return table, text


def show_progress(ctx: AppContext, session: dict[str, Any] | None, eval_set: str | None) -> tuple[Any, str]:
    """`progress_of` as the page shows it: the table only once someone has rated."""
    table, text = progress_of(ctx, session, eval_set)
    return gr.Dataframe(table, visible=not table.empty), text


@user_errors
def mark_gold(ctx: AppContext, session: dict[str, Any], eval_set: str | None, expert: str | None,
              request: gr.Request | None = None) -> str:
    """The Gold button: the named rater's scores (an expert's) become the set's gold scores, and Results
    then show every rater's agreement with them. Raters are never told which captions are gold. For the
    set's owner and the admins only."""
    name = chosen_set(session, eval_set)
    asking = who(session, request)
    if not access.may_manage(ctx.store, name, asking, admins_for(ctx, asking)):
        raise gr.Error(f"Only {esc(access.managers_of(ctx.store, name, login=ctx.login))} may mark its gold "
                       "scores.", print_exception=False)
    expert = (expert or "").strip()
    if not expert:
        raise gr.Error("Type the name of the rater whose scores become the gold scores (e.g. your expert).",
                       print_exception=False)
    changed = sets.mark_gold(ctx.store, name, expert)
    total = len(ctx.store.gold_scores(name))
    return (f"{changed} caption(s) now have {esc(expert)}'s score as their gold score; set '{esc(name)}' has "
            f"{total} gold caption(s). Press Show results to see each rater's agreement with them.")


@user_errors
def export(ctx: AppContext, session: dict[str, Any], eval_set: str | None, request: gr.Request | None = None
           ) -> list[str]:
    """The Export button: summary + every raw rating as CSV (two files) and as one XLSX workbook (a blind
    set's: for its owner and the admins)."""
    name = chosen_set(session, eval_set)
    require_names(ctx, name, who(session, request))
    folder = Path(tempfile.mkdtemp(prefix="export-", dir=ctx.work_dir))
    return [str(p) for p in sets.export_set(ctx.store, name, folder)]


def build_results_view(ctx: AppContext, shared: dict[str, Any], tab: gr.Tab) -> dict[str, Any]:
    """The Results tab's components and events (inside the open `tab`)."""
    session = shared["session"]
    gr.Markdown(EXPLAINER, elem_id="results-explainer")
    with gr.Row():
        results_set = gr.Dropdown(choices=set_choices(ctx), value=None, allow_custom_value=True,
                                  label="Evaluation set (empty: the open one)", elem_id="results-set")
        results_btn = gr.Button("Show results", variant="primary", elem_id="results-btn")
    empty_md = gr.Markdown("Open an evaluation set on the Compare tab (or choose one above) to see its results.",
                           elem_id="results-empty")
    summary_df = gr.Dataframe(interactive=False, label="Summary", elem_id="summary", visible=False, wrap=True,
                              max_height=900,
                              elem_classes="fit-table")
    agreement_md = gr.Markdown(elem_id="agreement")
    chart = gr.Plot(label="Accuracy with 95% intervals", elem_id="chart", visible=False)
    raters_df = gr.Dataframe(interactive=False, label="Per rater", elem_id="raters", visible=False, wrap=True,
                             elem_classes="fit-table")
    progress_md = gr.Markdown(elem_id="set-progress")
    progress_df = gr.Dataframe(interactive=False, label="Progress per rater", elem_id="progress-table",
                               visible=False, max_height=300)
    with gr.Accordion("Gold scores and exports", open=True):
        with gr.Row():
            gold_rater = gr.Textbox(label="Gold scores from rater (owner only)", scale=3,
                                    placeholder="the expert whose scores become the set's gold scores",
                                    elem_id="gold-rater")
            gold_btn = gr.Button("Mark their scores as gold", scale=1, elem_id="gold-btn")
        gold_md = gr.Markdown(elem_id="gold-status")
        export_btn = gr.Button("Export CSV + XLSX", elem_id="export-btn")
        export_files = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="export-files",
                               visible=False)  # shown once there is something to download
    seen = gr.State(None)
    timer = gr.Timer(REFRESH_SECONDS, active=False)

    shown = [summary_df, agreement_md, chart, raters_df, empty_md, seen]
    progress = (partial(show_progress, ctx), [session, results_set], [progress_df, progress_md])
    results_btn.click(bind(show_results, ctx), [session, results_set], shown, api_visibility="private"
                      ).then(*progress, api_visibility="private")
    # The Gradio API endpoint "results" (summary, text, chart; errors as errors), on a button never shown.
    gr.Button(visible=False).click(bind(results, ctx), [session, results_set], [summary_df, agreement_md, chart],
                                   api_name="results")
    tab.select(bind(show_results, ctx), [session, results_set], shown, api_visibility="private"
               ).then(*progress, api_visibility="private"
                      ).then(lambda: gr.Timer(active=True), None, timer, api_visibility="private")
    seen.change(*progress, show_progress="hidden", api_visibility="private")  # new ratings came in
    timer.tick(bind(refresh_if_new, ctx), [session, results_set, seen], shown, show_progress="hidden",
               api_visibility="private")
    export_btn.click(bind(export, ctx), [session, results_set], export_files, api_name="export"
                     ).success(lambda: gr.File(visible=True), None, export_files, api_visibility="private")
    gold_btn.click(bind(mark_gold, ctx), [session, results_set, gold_rater], gold_md, api_name="mark_gold")
    return {"results_set": results_set, "timer": timer}
