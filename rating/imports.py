"""Read captions (and optionally human scores, gold scores and reference captions) from a CSV file or an
Excel workbook that people made by hand or re-saved from Excel.

Expected content: one row per (image, model) with the columns image_id, model_name and caption; optional
columns score (a rater's 0/1/2), rater, gold_score (the caption's known score) and reference (reference
caption(s) of the image); any other column (for example beam_size or temperature) is kept as text, for the
decoding settings.

What real files look like, and what this reader accepts:
- CSV separators: comma, semicolon (Excel in many European locales) or tab;
- CSV encodings: UTF-8 with or without a byte order mark, UTF-16 with a byte order mark (Excel's
  "Unicode text"), and cp1252 / latin-1 for files re-saved by older Excel versions;
- XLSX workbooks (recognised by content, not by name): the first sheet, or the one named with ``sheet=``;
- headers in any case and spacing: ``Image ID``, ``image``, ``file_name`` -> image_id;
  ``Model``, ``Model Name`` -> model_name; ``Caption``, ``text`` -> caption; ``Rating``, ``note``,
  ``grade``, ``human_score`` -> score (see HEADER_ALIASES);
- the data block is found, not assumed: its header is the first row naming image_id, model_name and
  caption (title rows above it are ignored); it spans the columns from the header's first cell to the
  first column with a blank header, so a pivot table or notes beside the data (after a blank column)
  are ignored; after a blank row the block goes on only while rows have an image, a model and a caption
  (a summary or pivot block below the data ends it);
- spaces around values are stripped and rows without an image, model or caption are skipped (a row with
  only an image and a reference adds that reference);
- with a comma separator, an unquoted caption containing commas is rejoined when caption is the
  last column (``img1.jpg,model-a,a dog, running`` -> caption ``a dog, running``);
- a repeated (image_id, model_name) keeps the last row, as saving captions again would;
- scores that are not 0, 1 or 2 (or not on the set's declared scale, e.g. 1-4) are listed by row number
  (``row 7: score '3' is not 0, 1 or 2``) and
  left out; the caption itself is still read;
- `python -m captioning caption` writes a ``score`` column that is the model's own log-probability (its
  files have a ``caption_index`` column): there ``score`` is a decoding value, not a human score.
"""
from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd

from captioning.images import IMAGE_EXTENSIONS
from rating.validation import DEFAULT_SCALE, scale_text

REQUIRED_COLUMNS = ["image_id", "model_name", "caption"]
# Optional columns with a meaning of their own (not decoding settings).
SCORE_COLUMNS = ["score", "rater", "gold_score", "reference"]
# Normalised header (lower case, letters and digits only) -> canonical column.
HEADER_ALIASES = {
    "imageid": "image_id", "image": "image_id", "img": "image_id", "imgid": "image_id",
    "filename": "image_id", "file": "image_id", "imagename": "image_id", "imagefile": "image_id",
    "imagefilename": "image_id", "imagepath": "image_id", "path": "image_id",
    "modelname": "model_name", "model": "model_name", "modelid": "model_name", "captioner": "model_name",
    "modele": "model_name", "legende": "caption",
    "caption": "caption", "captions": "caption", "text": "caption", "captiontext": "caption",
    "generatedcaption": "caption", "prediction": "caption",
    "score": "score", "rating": "score", "note": "score", "grade": "score", "humanscore": "score",
    "humanrating": "score", "raterscore": "score", "mark": "score",
    "rater": "rater", "ratername": "rater", "annotator": "rater", "judge": "rater", "evaluator": "rater",
    "goldscore": "gold_score", "gold": "gold_score", "knownscore": "gold_score", "expectedscore": "gold_score",
    "reference": "reference", "references": "reference", "referencecaption": "reference",
    "referencecaptions": "reference", "groundtruth": "reference", "gtcaption": "reference",
}
REFERENCE_SEPARATOR = " | "
VALID_SCORES = ("0", "1", "2")
# When foo.jpg and foo.png both exist, the first listed wins; any other format the loader reads comes after.
PREFERRED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
RATING_FRAME_COLUMNS = ["image_id", "model_name", "rater", "score", "row"]


@dataclass
class ImportResult:
    """What read_captions_file found.

    captions: columns image_id, model_name, caption, gold_score (when the file has one: "0".."2" or ""),
        any extra columns, and image_path (str, or None when not found) if an image folder was given.
    ratings: the valid human scores, columns image_id, model_name, rater (None when the file has no rater
        column), score (int), row (the file's row number); empty when the file has no score column.
    references: image_id -> its reference captions, in file order, without repeats.
    invalid_scores: one line per score or gold score left out, e.g. "row 7: score '3' is not 0, 1 or 2".
    missing_images: image ids with no matching file in the image folder, in order of appearance.
    skipped_rows: rows dropped because the image id, model name or caption was empty.
    duplicate_rows: rows dropped because a later row had the same image id and model name.
    encoding, delimiter: how a CSV was read; sheet: the worksheet read from a workbook (None for a CSV).
    """

    captions: pd.DataFrame
    ratings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RATING_FRAME_COLUMNS))
    references: dict[str, list[str]] = field(default_factory=dict)
    invalid_scores: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    skipped_rows: int = 0
    duplicate_rows: int = 0
    encoding: str = "utf-8"
    delimiter: str = ","
    sheet: str | None = None

    @property
    def message(self) -> str:
        """One line for the user, e.g. "Read 12 captions (2 models, 6 images); 1 empty row skipped"."""
        frame = self.captions
        source = (f"sheet '{self.sheet}' of an Excel workbook" if self.sheet is not None
                  else f"a {_DELIMITER_NAMES[self.delimiter]}-separated {self.encoding} file")
        parts = [
            f"Read {len(frame)} captions ({frame['model_name'].nunique()} models, "
            f"{frame['image_id'].nunique()} images) from {source}"
        ]
        if self.skipped_rows:
            parts.append(f"{self.skipped_rows} incomplete row(s) skipped")
        if self.duplicate_rows:
            parts.append(f"{self.duplicate_rows} repeated row(s) replaced by a later one")
        if self.invalid_scores:
            parts.append(f"{len(self.invalid_scores)} invalid score(s) left out")
        if self.missing_images:
            shown = ", ".join(self.missing_images[:5]) + (" ..." if len(self.missing_images) > 5 else "")
            parts.append(f"{len(self.missing_images)} image(s) not found: {shown}")
        return "; ".join(parts)


def _normalise_header(name: str) -> str:
    """Lower case, accents dropped ("Modèle" -> "modele"), letters and digits only."""
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", name) if not unicodedata.combining(ch))
    return re.sub(r"[^0-9a-z]", "", plain.strip().lower())


def _column_name(name: str) -> str:
    """Canonical name for a known column, else a snake_case version of the header."""
    key = _normalise_header(name)
    if key in HEADER_ALIASES:
        return HEADER_ALIASES[key]
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_") or "column"


def _read_bytes(source: str | os.PathLike[str] | bytes | bytearray | BinaryIO) -> bytes:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    if hasattr(source, "read"):
        data = source.read()
        return data.encode("utf-8") if isinstance(data, str) else bytes(data)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"Captions file not found: {path} (give the path to a .csv or .xlsx file)")
    return path.read_bytes()


def _decode(data: bytes) -> tuple[str, str]:
    """Text and the encoding that produced it: UTF-16/UTF-8 by BOM, then UTF-8, cp1252, latin-1."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig"), "utf-8"
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"  # every byte is valid latin-1: the last resort


def _pick_delimiter(text: str) -> str:
    """The separator whose header row maps to the most required columns (then: most fields)."""
    lines = [line for line in text.splitlines() if line.strip()][:20]  # title rows may come first

    def quality(delimiter: str) -> tuple[int, int]:
        best = (0, 0)
        for line in lines:
            header = next(csv.reader([line], delimiter=delimiter), [])
            matched = {_column_name(name) for name in header} & set(REQUIRED_COLUMNS)
            best = max(best, (len(matched), len(header)))
            if len(matched) == len(REQUIRED_COLUMNS):
                break
        return best

    # max() keeps the first of equal candidates, so comma wins a tie
    return max(DELIMITERS, key=quality)


def _cell_text(value: Any) -> str:
    """A worksheet cell as the text a CSV would hold: 2 and 2.0 -> "2", empty -> ""."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _sheet_rows(data: bytes, sheet: str | None) -> tuple[list[list[str]], str]:
    """The cells of one worksheet as text rows, and the sheet's name (the first sheet unless named)."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        raise ValueError(f"Could not read the Excel workbook ({e}); save it again as .xlsx or as CSV") from None
    try:
        names = book.sheetnames
        if sheet is None:
            worksheet = book.worksheets[0]
        elif sheet in names:
            worksheet = book[sheet]
        else:
            raise ValueError(f"The workbook has no sheet named {sheet!r}; its sheets are {names}")
        rows = [[_cell_text(value) for value in row] for row in worksheet.iter_rows(values_only=True)]
        return rows, worksheet.title
    finally:
        book.close()


def _is_blank(cells: list[str]) -> bool:
    return not any(cell.strip() for cell in cells)


def _find_header(rows: list[list[str]]) -> int | None:
    """The first row naming all required columns; else the first non-blank row (for the error message)."""
    first = None
    for i, row in enumerate(rows):
        if _is_blank(row):
            continue
        first = i if first is None else first
        if set(REQUIRED_COLUMNS) <= {_column_name(cell) for cell in row if cell.strip()}:
            return i
    return first


def _block_columns(header: list[str]) -> tuple[int, int]:
    """[start, end) of the data block: from the header's first non-blank cell to the first blank one."""
    start = next(i for i, cell in enumerate(header) if cell.strip())
    end = start
    while end < len(header) and header[end].strip():
        end += 1
    return start, end


def _group_has_caption(rows: list[list[str]], start: int, columns: list[str]) -> bool:
    """Whether the rows up to the next blank row hold at least one row with an image, a model and a caption."""
    where = [columns.index(column) for column in REQUIRED_COLUMNS]
    for full_row in rows:
        row = (full_row[start:] + [""] * len(columns))[: len(columns)]
        if _is_blank(row):
            return False
        if all(row[i].strip() for i in where):
            return True
    return False


def _score_text(value: str, scale: tuple[int, int] = DEFAULT_SCALE) -> str | None:
    """"2", "2.0", " 1 " -> "2", "2", "1"; None for anything that is not an integer on ``scale`` (default 0-2)."""
    match = re.fullmatch(r"(-?\d+)(\.0*)?", value.strip())
    if match and scale[0] <= int(match[1]) <= scale[1]:
        return str(int(match[1]))
    return None


def _not_on_scale(scale: tuple[int, int]) -> str:
    return "is not 0, 1 or 2" if scale == DEFAULT_SCALE else f"is not on the set's {scale_text(scale)} scale"


def read_captions_file(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | BinaryIO,
    *,
    image_folder: str | os.PathLike[str] | None = None,
    sheet: str | None = None,
    scale: tuple[int, int] = DEFAULT_SCALE,
) -> ImportResult:
    """Read a captions CSV or XLSX workbook (path, bytes or binary file) into an ImportResult.

    Human scores are checked against ``scale`` (the set's; default 0-2); others are listed by row and left out.

    ``sheet`` names the worksheet of a workbook (default: the first). With ``image_folder``, each image_id
    is matched to a file there (see resolve_image) and the column image_path is added; ids without a file
    are listed in ``missing_images`` (their rows are kept, with image_path None). Raises ValueError naming
    the columns found and the columns required when image_id, model_name or caption is missing.
    """
    data = _read_bytes(path_or_bytes)
    sheet_name = None
    encoding, delimiter = "utf-8", ","
    if data.startswith(b"PK\x03\x04"):  # a zip file: an Excel workbook, whatever its name says
        rows, sheet_name = _sheet_rows(data, sheet)
        what = f"sheet '{sheet_name}'"
        if _is_blank([cell for row in rows for cell in row]):
            raise ValueError(f"The {what} is empty; expected a header row with image_id, model_name, caption")
    else:
        text, encoding = _decode(data)
        if not text.strip():
            raise ValueError("Captions CSV is empty; expected a header row with image_id, model_name, caption")
        delimiter = _pick_delimiter(text)
        rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter)]
        what = "Captions CSV"
    header_index = _find_header(rows)
    if header_index is None:
        raise ValueError(f"{what} has no header row; expected image_id, model_name, caption")
    full_header = [cell.strip() for cell in rows[header_index]]
    start, end = _block_columns(full_header)
    header = full_header[start:end]
    columns = [_column_name(name) for name in header]

    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        shape = "" if sheet_name else f" (read as {_DELIMITER_NAMES[delimiter]}-separated)"
        raise ValueError(
            f"{what} is missing required column(s) {missing}; found columns {header}{shape}. "
            "Required: image_id (or 'image', 'file_name'), model_name (or 'model'), caption. "
            "Rename the header row and import again."
        )
    for column in REQUIRED_COLUMNS + SCORE_COLUMNS:
        sources = [name for name, canonical in zip(header, columns) if canonical == column]
        if len(sources) > 1:
            raise ValueError(f"{what} has several columns that mean {column}: {sources}; keep only one")
    if "caption_index" in columns and "score" in columns:
        # `python -m captioning caption` output: its score is the model's log-probability, a decoding value
        columns[columns.index("score")] = "model_score"
    # Extra columns with clashing names get a numeric suffix instead of overwriting each other.
    seen: dict[str, int] = {}
    for i, column in enumerate(columns):
        seen[column] = seen.get(column, 0) + 1
        if seen[column] > 1:
            columns[i] = f"{column}_{seen[column]}"

    caption_last = columns.index("caption") == len(columns) - 1
    records, row_numbers, skipped = [], [], 0
    references: dict[str, list[str]] = {}
    after_blank = False
    for number, full_row in enumerate(rows[header_index + 1:], start=header_index + 2):
        row = full_row[start:]  # number: the row as a spreadsheet numbers it (1 = first row of the file)
        if _is_blank(row[: len(columns)]):
            after_blank = True  # blank line: not data, not worth reporting
            continue
        if len(row) > len(columns) and row[len(columns)].strip():
            if caption_last and delimiter == "," and sheet_name is None:
                tail = row[len(columns) - 1:]
                row = row[: len(columns) - 1] + [delimiter.join(tail)]
            else:
                skipped += 1  # the row spills over the block's edge: its cells do not line up with the header
                continue
        row = (row + [""] * len(columns))[: len(columns)]  # what lies past the block (after a blank column) is ignored
        record = {column: cell.strip() for column, cell in zip(columns, row)}
        complete = all(record[column] for column in REQUIRED_COLUMNS)
        if after_blank:
            after_blank = False
            if not _group_has_caption(rows[number - 1:], start, columns):
                break  # a blank row, then rows none of which is a caption (a pivot, totals): the block has ended
        for reference in record.get("reference", "").split(REFERENCE_SEPARATOR.strip()):
            if record["image_id"] and reference.strip():
                known = references.setdefault(record["image_id"], [])
                if reference.strip() not in known:
                    known.append(reference.strip())
        if not complete:
            if not (record["image_id"] and record.get("reference") and not record["model_name"] and not record["caption"]):
                skipped += 1  # an image with only a reference is a reference row, not an incomplete caption
            continue
        records.append(record)
        row_numbers.append(number)

    frame = pd.DataFrame.from_records(records, columns=columns)
    frame["_row"] = row_numbers
    if "caption_index" in frame.columns:
        # `python -m captioning caption --num-captions N` writes N rows per (image, model); the rated
        # caption is the model's first (best beam / first sample), caption_index 0.
        frame = frame[pd.to_numeric(frame["caption_index"], errors="coerce").fillna(0) == 0]

    invalid: list[str] = []
    ratings = pd.DataFrame(columns=RATING_FRAME_COLUMNS)
    if "score" in frame.columns:
        kept = []
        for record in frame.to_dict("records"):
            if not record["score"]:
                continue
            score = _score_text(record["score"], scale)
            if score is None:
                invalid.append(f"row {record['_row']}: score '{record['score']}' {_not_on_scale(scale)}")
                continue
            kept.append({"image_id": record["image_id"], "model_name": record["model_name"],
                         "rater": record.get("rater") or None, "score": int(score), "row": record["_row"]})
        ratings = pd.DataFrame.from_records(kept, columns=RATING_FRAME_COLUMNS)
        # one score per (image, model, rater): a later row replaces an earlier one, as rating again would
        ratings = ratings.drop_duplicates(["image_id", "model_name", "rater"], keep="last").reset_index(drop=True)
    if "gold_score" in frame.columns:
        golds = []
        for record in frame.to_dict("records"):
            gold = _score_text(record["gold_score"]) if record["gold_score"] else ""
            if gold is None:
                invalid.append(f"row {record['_row']}: gold_score '{record['gold_score']}' is not 0, 1 or 2")
                gold = ""
            golds.append(gold)
        frame["gold_score"] = golds
    invalid.sort(key=lambda line: int(line.split(":")[0].split()[1]))

    # with a rater column, one caption row per rater is expected: only a repeat by the same rater replaces
    key = ["image_id", "model_name"] + (["rater"] if "rater" in frame.columns else [])
    duplicates = int(frame.duplicated(key, keep="last").sum())
    frame = frame.drop_duplicates(["image_id", "model_name"], keep="last").reset_index(drop=True)
    # required columns first, then gold_score, the rest (decoding settings...) in file order; the human
    # scores, raters and references are in `ratings` and `references`
    per_rating = {"score", "rater", "reference", "gold_score", "_row"}
    ordered = REQUIRED_COLUMNS + (["gold_score"] if "gold_score" in columns else [])
    frame = frame[ordered + [column for column in columns if column not in REQUIRED_COLUMNS and column not in per_rating]]

    missing_images: list[str] = []
    if image_folder is not None:
        folder = Path(image_folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"Image folder not found: {folder}")
        index = _image_index(folder)
        resolved = {image_id: resolve_image(image_id, folder, index) for image_id in frame["image_id"].unique()}
        # object dtype keeps None (pandas' string dtype would turn it into NaN)
        frame["image_path"] = pd.Series(
            [None if resolved[i] is None else str(resolved[i]) for i in frame["image_id"]], dtype=object
        )
        missing_images = [image_id for image_id, path in resolved.items() if path is None]
    return ImportResult(
        captions=frame,
        ratings=ratings,
        references=references,
        invalid_scores=invalid,
        missing_images=missing_images,
        skipped_rows=skipped,
        duplicate_rows=duplicates,
        encoding=encoding,
        delimiter=delimiter,
        sheet=sheet_name,
    )


def read_captions_csv(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | BinaryIO,
    *,
    image_folder: str | os.PathLike[str] | None = None,
) -> ImportResult:
    """The older name of read_captions_file (which reads workbooks too), kept for existing callers."""
    return read_captions_file(path_or_bytes, image_folder=image_folder)


# ----------------------------------------------------------------------------------------------------------
# Matching image ids to files


def loose_name(name: str) -> str:
    """A file name as upload paths may have changed it, for matching: Unicode NFC, case folded, and only
    letters, digits and dots kept. Uploads drop characters (Gradio turns ``wow!.png`` into ``wow.png``,
    ``Beach {2024}.png`` into ``Beach 2024.png``, ``12:30.png`` into ``1230.png``), macOS writes ``café``
    decomposed (NFD), and Windows drops trailing dots and spaces."""
    text = unicodedata.normalize("NFC", name).casefold()
    return "".join(ch for ch in text if ch.isalnum() or ch == ".").strip(".")


ImageIndex = tuple[dict[str, Path], dict[str, list[Path]], dict[str, list[Path]]]


def _image_index(folder: Path) -> ImageIndex:
    """The index (see image_index) of the files in ``folder``."""
    return image_index(path for path in sorted(folder.iterdir()) if path.is_file())


def image_index(paths: Iterable[Path]) -> ImageIndex:
    """Lower-case NFC file name -> path, lower-case NFC stem -> image paths, and loose name (see loose_name,
    with and without extension) -> image paths, for the files ``paths`` (for resolve_image; the trainer's
    `evaluate --captions` indexes a split's images with it)."""
    by_name: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    by_loose: dict[str, list[Path]] = {}
    for path in paths:
        name = unicodedata.normalize("NFC", path.name).lower()
        by_name.setdefault(name, path)
        if path.suffix.lower() in IMAGE_EXTENSIONS:  # every format the library's loader reads (HEIC, AVIF, ...)
            by_stem.setdefault(Path(name).stem, []).append(path)
            for key in {loose_name(path.name), loose_name(path.stem)}:
                by_loose.setdefault(key, []).append(path)
    order = {suffix: i for i, suffix in enumerate(PREFERRED_EXTENSIONS)}
    for same_stem in by_stem.values():  # prefer the most common formats when foo.jpg and foo.png both exist
        same_stem.sort(key=lambda p: (order.get(p.suffix.lower(), len(order)), p.suffix.lower()))
    return by_name, by_stem, by_loose


def resolve_image(image_id: str, folder: Path | None, index: ImageIndex) -> Path | None:
    """The file in ``folder`` that ``image_id`` names: the exact relative path, the same name in any case
    or Unicode form, the same name (without its extension) with any image extension, or else the one file
    whose loose name (see loose_name) is the same; None if there is none (or several loose matches).
    With ``folder`` None only the index is searched (its files may lie in several folders)."""
    if folder is not None:
        exact = folder / image_id
        # an id like "../secret.png" or "/etc/x.png" must not reach outside the folder
        if exact.is_file() and exact.resolve().is_relative_to(folder.resolve()):
            return exact
    by_name, by_stem, by_loose = index
    name = unicodedata.normalize("NFC", Path(image_id.replace("\\", "/")).name).lower()  # ids are sometimes full paths
    if name in by_name:
        return by_name[name]
    for stem in (name, Path(name).stem):
        if stem in by_stem:
            return by_stem[stem][0]
    if ".." in Path(image_id.replace("\\", "/")).parts:
        return None
    for key in (loose_name(name), loose_name(Path(name).stem)):
        candidates = list(dict.fromkeys(by_loose.get(key, [])))
        if len(candidates) == 1:
            return candidates[0]
    return None
