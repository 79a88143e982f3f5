"""Human rating of captions: storage, results, exports and caption imports (no UI code here).

Raters score each caption 0 (unrelated), 1 (partly right) or 2 (fully accurate). The Gradio app calls
these functions; this package never imports gradio.

    store.py    RatingStore: evaluation sets, images, captions, ratings and their history, in an SQLite file
                or a PostgreSQL database (`RatingStore("postgresql://...")`)
    schema.py   the tables (SQLAlchemy Core, one definition for both backends)
    database.py --db -> engine, each backend's rules, the upgrade on open (Alembic revisions in migrations/)
    validation.py  the checks of names, scores and outcomes (ValueError saying what is allowed)
    results.py  summary_table (accuracy, rank, bootstrap CI); coverage_summary (every model, its coverage,
                ranks on the images rated for every model); rater_table (progress, leniency, accuracy per
                rater); gold_agreement; agreement (Krippendorff, Cohen); accuracy_chart
    pairwise.py pairwise votes: balanced A/B schedule (names hidden), Bradley-Terry ratings with bootstrap
                intervals and tied ranks, win-rate matrix (imported on its own: `from rating import pairwise`)
    exports.py  export_csv / export_xlsx / export_pairwise, with spreadsheet formula injection neutralised
    imports.py  read_captions_file: tolerant reader for hand-made or Excel-saved caption CSVs and XLSX
                workbooks (scores, gold scores, references; read_captions_csv is its older name)
    The evaluation-set workflow every front end calls (each imported on its own, as `from rating import
    sets`; sets.py and intake.py load the captioning library and torch, access.py and grid.py do not):
    sets.py     a set's life: open_set, set_summary, mark_gold, set_results, export_set
    access.py   who may see a blind set's names (may_see_names) or manage a set (may_manage)
    grid.py     grid_page (pages, per-rater blind column order), first_unrated, left_to_rate, blind_captions
    images.py   a set's images: add_image, display copies
    intake.py   caption_into_set, import_captions_file, import_dataset_split
    queue.py    assigned work with overlap: next_item (leased), progress, caption ids
    review.py   disagreements, record_review, with_reviews (final scores beside the raw ratings)
    accounts.py team accounts: users, roles, argon2id passwords, API tokens (add_user, authenticate, ...)
    copying.py  copy_database: a whole rating database into a new, empty one, across backends
    cli.py      `python -m rating import|results|export|sets|users|copy` over these functions

Typical use::

    store = RatingStore("runs/ratings.sqlite")
    store.create_or_open_set("coco-val-50", blind=True)
    store.save_caption("coco-val-50", image_hash, "gpt2-mlp", "a dog on grass", weights_hash=h, decoding={"beam_size": 3})
    store.rate("coco-val-50", "alice", image_hash, "gpt2-mlp", 2)
    ratings = store.ratings("coco-val-50")
    summary = summary_table(ratings)
    export_xlsx(summary, ratings, "runs/coco-val-50.xlsx")
"""
from rating.exports import export_csv, export_xlsx, neutralise_formula
from rating.imports import ImportResult, read_captions_csv, read_captions_file
from rating.results import accuracy_chart, agreement, coverage_summary, gold_agreement, rater_table, summary_table
from rating.store import CaptionNotFoundError, EvaluationSetNotFoundError, RatingStore

__all__ = [
    "CaptionNotFoundError",
    "EvaluationSetNotFoundError",
    "ImportResult",
    "RatingStore",
    "accuracy_chart",
    "agreement",
    "coverage_summary",
    "export_csv",
    "export_xlsx",
    "gold_agreement",
    "neutralise_formula",
    "rater_table",
    "read_captions_csv",
    "read_captions_file",
    "summary_table",
]
