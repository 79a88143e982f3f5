"""The Import view: captions made elsewhere (a CSV or XLSX) and, optionally, their images, into a set.

The reading, checking and storing is `rating.intake.import_captions_file`; this view copies the uploaded
images into one folder for it and words the outcome.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from page.compare import IMAGE_FILE_TYPES
from page.context import AppContext
from page.session import (
    admins_for,
    bind,
    ensure_session,
    esc,
    file_path,
    no_empty_set_on_failure,
    session_summary,
    user_errors,
    warn_each,
)
from rating import access, intake

HELP = ("Rate captions made elsewhere: a CSV or Excel workbook (.xlsx, first sheet) from `python -m captioning "
        "caption`, or from another CLIP-GPT2 project's batch inference, with columns `image_id, model_name, "
        "caption` (comma or semicolon separated; other columns are kept as the decoding settings). A `score` "
        "column (0/1/2) is saved as ratings by the rater named above (or the file's `rater` column); `gold_score` "
        "and `reference` columns are kept too. Upload the images it names as well if you have them: a caption "
        "without its picture is kept and shown by its image name. Everything goes into the evaluation set above.")


@user_errors
@no_empty_set_on_failure
def import_captions(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool, preset: str,
                    csv_file: Any, image_files: list[Any] | None, request: gr.Request | None = None, *,
                    overlap: Any = None) -> tuple[dict[str, Any], str, str]:
    """The Import button (and the Gradio API endpoint "import_captions"): read a captions CSV or Excel workbook
    (`image_id, model_name, caption`, comma or semicolon separated, e.g. from `python -m captioning caption`)
    and the images it names (optional) into the open set (created, with `overlap` raters per caption, when it
    is new), ready to rate. A score column is saved as ratings by the rater named at the top of the page (or by
    the file's own rater column). With --login the rater is the signed-in account, and only the set's owner and
    the admins may import other raters' scores."""
    if not csv_file:
        raise gr.Error("Upload a captions CSV or .xlsx workbook (columns image_id, model_name, caption).")
    session, _ = ensure_session(ctx, session, rater, set_name, blind, preset, request, overlap=overlap)
    asking = session["who"]
    only_rater = (session["rater"] if ctx.login and not access.may_manage(ctx.store, session["eval_set"], asking,
                                                                          admins_for(ctx, asking)) else None)
    folder = None
    if image_files:
        folder = Path(tempfile.mkdtemp(prefix="import-", dir=ctx.work_dir))
        for f in image_files:
            source = Path(file_path(f))
            shutil.copyfile(source, folder / source.name)
    done = intake.import_captions_file(ctx.store, session["eval_set"], file_path(csv_file), folder,
                                     image_dir=ctx.image_dir, rater=session["rater"], only_rater=only_rater)
    warn_each(done.problems + done.invalid_scores)
    if not done.imported:
        raise gr.Error("No caption could be imported: " + esc(" | ".join(done.problems[:5]) or done.message))
    session["version"] += 1
    session["page"] = 0
    message = (f"Imported {done.imported} caption(s) for {done.images} image(s) into set '{esc(done.set_name)}'"
               + (f" ({done.unchanged} already there as given)" if done.unchanged else "") + ". "
               f"{esc(done.message)}.")
    if done.without_image:
        message += f" {done.without_image} caption(s) have no picture (shown by their image name)."
    if done.ratings_saved or done.ratings_unchanged:
        message += f" Ratings: {done.ratings_saved} saved" + (
            f", {done.ratings_unchanged} already there" if done.ratings_unchanged else "") + "."
    if done.invalid_scores:
        shown = "; ".join(done.invalid_scores[:5]) + (" ..." if len(done.invalid_scores) > 5 else "")
        message += f" Not imported: {esc(shown)}."
    if done.gold_saved or done.references_saved:
        message += f" Known scores: {done.gold_saved}; reference captions: {done.references_saved}."
    return session, message, session_summary(ctx, session)


def import_on_page(ctx: AppContext, session: dict[str, Any], rater: str, set_name: str, blind: bool, preset: str,
                   csv_file: Any, image_files: list[Any] | None, overlap: Any = None,
                   request: gr.Request | None = None) -> tuple[dict[str, Any], str, str]:
    """`import_captions` with the page's overlap box (the API endpoint keeps its inputs)."""
    return import_captions(ctx, session, rater, set_name, blind, preset, csv_file, image_files, request,
                           overlap=overlap)


def build_import_view(ctx: AppContext, shared: dict[str, Any], preset: gr.Dropdown) -> Any:
    """The Import tab's components and its event (returned, for the page to chain on); the Gradio API endpoint
    "import_captions" is on a button that is never shown."""
    gr.Markdown(HELP, elem_id="import-help")
    with gr.Row():
        import_csv = gr.File(label="Captions CSV or .xlsx", file_types=[".csv", ".txt", ".tsv", ".xlsx"],
                             elem_id="import-csv")
        import_images = gr.File(label="Its images", file_count="multiple", file_types=IMAGE_FILE_TYPES,
                                elem_id="import-images")
    import_btn = gr.Button("Import captions", variant="primary", elem_id="import-btn")
    import_status = gr.Markdown(elem_id="import-status")
    session = shared["session"]
    inputs = [session, shared["rater"], shared["set_name"], shared["blind"], preset, import_csv, import_images]
    outputs = [session, import_status, shared["session_line"]]
    gr.Button(visible=False).click(bind(import_captions, ctx), inputs, outputs, api_name="import_captions")
    return import_btn.click(bind(import_on_page, ctx), [*inputs, shared["overlap"]], outputs,
                            api_visibility="private")
