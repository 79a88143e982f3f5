"""Write rating results to CSV and Excel files that are safe to open in a spreadsheet.

Captions, model names, rater names and file names come from models and users, so a cell such as
``=HYPERLINK("http://evil","click")`` would run as a formula when the file is opened. Following the
OWASP "CSV Injection" advice, every text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return gets a leading apostrophe (``'=HYPERLINK(...)``), in CSV and XLSX alike. Numbers are
left as numbers. Dict cells (the decoding settings) are written as JSON text.

CSV files are UTF-8 with a byte order mark, which is what Excel needs to show accents correctly.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(value: Any) -> Any:
    """``value`` with a leading apostrophe if it is text a spreadsheet would run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def _cell_text(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` ready for a spreadsheet: dicts as JSON, formula-like text neutralised.

    Only text cells change; numeric columns keep their dtype. Column names are neutralised too.
    """
    safe = frame.copy()
    for column in safe.columns:
        if pd.api.types.is_numeric_dtype(safe[column]) or pd.api.types.is_bool_dtype(safe[column]):
            continue
        safe[column] = safe[column].map(lambda value: neutralise_formula(_cell_text(value)))
    safe.columns = [neutralise_formula(str(column)) for column in safe.columns]
    return safe


def export_csv(summary: pd.DataFrame, ratings: pd.DataFrame, path_or_dir: str | os.PathLike[str]) -> list[Path]:
    """Write the summary table (with its coverage columns, if any) and the raw ratings as two CSV files;
    returns [summary, ratings] paths.

    ``path_or_dir`` is either a folder (created if needed), which receives ``summary.csv`` and
    ``ratings.csv``, or a file name ending in ``.csv`` such as ``out/run1.csv``, which gives
    ``out/run1_summary.csv`` and ``out/run1_ratings.csv``.
    """
    target = Path(path_or_dir)
    if target.suffix.lower() == ".csv":
        target.parent.mkdir(parents=True, exist_ok=True)
        paths = [target.with_name(f"{target.stem}_summary.csv"), target.with_name(f"{target.stem}_ratings.csv")]
    else:
        if target.exists() and not target.is_dir():
            raise ValueError(f"{target} is an existing file; give a folder or a path ending in .csv")
        target.mkdir(parents=True, exist_ok=True)
        paths = [target / "summary.csv", target / "ratings.csv"]
    for frame, path in zip((summary, ratings), paths):
        safe_frame(frame).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")  # RFC 4180: a bare CR in a caption gets quoted
    return paths


def _agreement_frame(result: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame({"metric": list(result), "value": [_cell_text(value) for value in result.values()]})


def _strip_illegal(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop control characters that the XLSX format cannot hold (openpyxl refuses them)."""
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    cleaned = frame.copy()
    for column in cleaned.columns:
        if not pd.api.types.is_numeric_dtype(cleaned[column]):
            cleaned[column] = cleaned[column].map(
                lambda value: ILLEGAL_CHARACTERS_RE.sub("", value) if isinstance(value, str) else value
            )
    return cleaned


def export_xlsx(
    summary: pd.DataFrame,
    ratings: pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    agreement: dict[str, Any] | None = None,
    raters: pd.DataFrame | None = None,
) -> Path:
    """Write one Excel workbook with sheets "Summary", "Ratings" and, when available, "Raters" and "Agreement".

    ``raters`` is the per-rater frame from ``rating.results.rater_table``; the sheet is written when it is
    given and not empty. ``agreement`` is the dict from ``rating.results.agreement``; when None it is computed from
    ``ratings``, and the sheet is written only if there are at least two raters. Returns the path
    (``.xlsx`` is added if missing).
    """
    target = Path(path)
    if target.suffix.lower() != ".xlsx":
        target = target.with_name(target.name + ".xlsx")
    target.parent.mkdir(parents=True, exist_ok=True)
    if agreement is None and {"rater", "image_hash", "model_name", "score"} <= set(ratings.columns):
        from rating.results import agreement as compute_agreement

        agreement = compute_agreement(ratings)
    sheets = {"Summary": summary, "Ratings": ratings}
    if raters is not None and not raters.empty:
        sheets["Raters"] = raters
    if agreement is not None and agreement.get("raters", 0) >= 2:
        sheets["Agreement"] = _agreement_frame(agreement)
    _write_workbook(sheets, target)
    return target


def _write_workbook(sheets: dict[str, pd.DataFrame], target: Path) -> None:
    """One sheet per frame, made safe, header frozen, columns as wide as their text (at most 60)."""
    with pd.ExcelWriter(target, engine="openpyxl") as writer:
        for name, frame in sheets.items():
            _strip_illegal(safe_frame(frame)).to_excel(writer, sheet_name=name, index=False)
            sheet = writer.sheets[name]
            sheet.freeze_panes = "A2"  # keep the header visible while scrolling
            for column_cells in sheet.columns:
                longest = max((len(str(cell.value)) for cell in column_cells if cell.value is not None), default=8)
                sheet.column_dimensions[column_cells[0].column_letter].width = min(60, max(8, longest + 2))


def export_pairwise(
    leaderboard: pd.DataFrame,
    win_rates: pd.DataFrame,
    votes: pd.DataFrame,
    path_or_dir: str | os.PathLike[str],
) -> list[Path]:
    """Write pairwise results: three CSV files and one workbook; returns [leaderboard, win rates, votes, xlsx].

    ``leaderboard`` is ``rating.pairwise.leaderboard``, ``win_rates`` the model x model matrix of
    ``rating.pairwise.win_rate_matrix`` (its index becomes a "model" column) and ``votes`` the raw votes
    (``RatingStore.votes``). ``path_or_dir`` is a folder, which receives ``pairwise.csv``,
    ``win_rates.csv``, ``votes.csv`` and ``pairwise.xlsx``, or a name such as ``out/run1.csv``, which gives
    ``out/run1_pairwise.csv``, ``out/run1_win_rates.csv``, ``out/run1_votes.csv`` and ``out/run1_pairwise.xlsx``.
    The workbook has the sheets "Pairwise", "Win rates" and "Votes".
    """
    target = Path(path_or_dir)
    if target.suffix.lower() == ".csv":
        folder, prefix = target.parent, f"{target.stem}_"
    else:
        if target.exists() and not target.is_dir():
            raise ValueError(f"{target} is an existing file; give a folder or a path ending in .csv")
        folder, prefix = target, ""
    folder.mkdir(parents=True, exist_ok=True)
    matrix = win_rates.reset_index().rename(columns={"index": "model"}) if len(win_rates.columns) else win_rates
    sheets = {"Pairwise": leaderboard, "Win rates": matrix, "Votes": votes}
    paths = [folder / f"{prefix}{stem}.csv" for stem in ("pairwise", "win_rates", "votes")]
    for frame, path in zip(sheets.values(), paths):
        safe_frame(frame).to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")
    workbook = folder / f"{prefix}pairwise.xlsx"
    _write_workbook(sheets, workbook)
    return [*paths, workbook]
