"""Read captions from a CSV file that people made by hand or re-saved from Excel.

Expected content: one row per (image, model) with the columns image_id, model_name and caption; any
other column (for example beam_size or temperature) is kept as text, for the decoding settings.

What real files look like, and what this reader accepts:
- separators: comma, semicolon (Excel in many European locales) or tab;
- encodings: UTF-8 with or without a byte order mark, UTF-16 with a byte order mark (Excel's
  "Unicode text"), and cp1252 / latin-1 for files re-saved by older Excel versions;
- headers in any case and spacing: ``Image ID``, ``image``, ``file_name`` -> image_id;
  ``Model``, ``Model Name`` -> model_name; ``Caption``, ``text`` -> caption;
- spaces around values are stripped and rows without an image, model or caption are skipped;
- with a comma separator, an unquoted caption containing commas is rejoined when caption is the
  last column (``img1.jpg,model-a,a dog, running`` -> caption ``a dog, running``);
- a repeated (image_id, model_name) keeps the last row, as saving captions again would.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from captioning.images import IMAGE_EXTENSIONS

REQUIRED_COLUMNS = ["image_id", "model_name", "caption"]
# Normalised header (lower case, letters and digits only) -> canonical column.
HEADER_ALIASES = {
    "imageid": "image_id", "image": "image_id", "img": "image_id", "imgid": "image_id",
    "filename": "image_id", "file": "image_id", "imagename": "image_id", "imagefile": "image_id",
    "imagefilename": "image_id", "imagepath": "image_id", "path": "image_id",
    "modelname": "model_name", "model": "model_name", "modelid": "model_name", "captioner": "model_name",
    "caption": "caption", "captions": "caption", "text": "caption", "captiontext": "caption",
    "generatedcaption": "caption", "prediction": "caption",
}
# When foo.jpg and foo.png both exist, the first listed wins; any other format the loader reads comes after.
PREFERRED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


@dataclass
class ImportResult:
    """What read_captions_csv found.

    captions: columns image_id, model_name, caption, any extra columns, and image_path (str, or None
        when not found) if an image folder was given.
    missing_images: image ids with no matching file in the image folder, in order of appearance.
    skipped_rows: rows dropped because the image id, model name or caption was empty.
    duplicate_rows: rows dropped because a later row had the same image id and model name.
    encoding, delimiter: how the file was read.
    """

    captions: pd.DataFrame
    missing_images: list[str] = field(default_factory=list)
    skipped_rows: int = 0
    duplicate_rows: int = 0
    encoding: str = "utf-8"
    delimiter: str = ","

    @property
    def message(self) -> str:
        """One line for the user, e.g. "Read 12 captions (2 models, 6 images); 1 empty row skipped"."""
        frame = self.captions
        parts = [
            f"Read {len(frame)} captions ({frame['model_name'].nunique()} models, "
            f"{frame['image_id'].nunique()} images) from a {_DELIMITER_NAMES[self.delimiter]}-separated "
            f"{self.encoding} file"
        ]
        if self.skipped_rows:
            parts.append(f"{self.skipped_rows} incomplete row(s) skipped")
        if self.duplicate_rows:
            parts.append(f"{self.duplicate_rows} repeated row(s) replaced by a later one")
        if self.missing_images:
            shown = ", ".join(self.missing_images[:5]) + (" ..." if len(self.missing_images) > 5 else "")
            parts.append(f"{len(self.missing_images)} image(s) not found: {shown}")
        return "; ".join(parts)


def _normalise_header(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.strip().lower())


def _column_name(name: str) -> str:
    """Canonical name for a required column, else a snake_case version of the header."""
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
        raise FileNotFoundError(f"Captions CSV not found: {path} (give the path to a .csv file)")
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
    first_line = next((line for line in text.splitlines() if line.strip()), "")

    def quality(delimiter: str) -> tuple[int, int]:
        header = next(csv.reader([first_line], delimiter=delimiter), [])
        matched = {_column_name(name) for name in header} & set(REQUIRED_COLUMNS)
        return len(matched), len(header)

    # max() keeps the first of equal candidates, so comma wins a tie
    return max(DELIMITERS, key=quality)


def _image_index(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """Lower-case file name -> path, and lower-case stem -> image paths, for files in ``folder``."""
    by_name: dict[str, Path] = {}
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        by_name.setdefault(path.name.lower(), path)
        if path.suffix.lower() in IMAGE_EXTENSIONS:  # every format the library's loader reads (HEIC, AVIF, ...)
            by_stem.setdefault(path.stem.lower(), []).append(path)
    order = {suffix: i for i, suffix in enumerate(PREFERRED_EXTENSIONS)}
    for paths in by_stem.values():  # prefer the most common formats when foo.jpg and foo.png both exist
        paths.sort(key=lambda p: (order.get(p.suffix.lower(), len(order)), p.suffix.lower()))
    return by_name, by_stem


def resolve_image(image_id: str, folder: Path, index: tuple[dict[str, Path], dict[str, list[Path]]]) -> Path | None:
    """The file in ``folder`` that ``image_id`` names: the exact relative path, the same name in any
    case, or the same name (without its extension) with any image extension; None if there is none."""
    exact = folder / image_id
    # an id like "../secret.png" or "/etc/x.png" must not reach outside the folder
    if exact.is_file() and exact.resolve().is_relative_to(folder.resolve()):
        return exact
    by_name, by_stem = index
    name = Path(image_id.replace("\\", "/")).name  # ids are sometimes full paths from another machine
    if name.lower() in by_name:
        return by_name[name.lower()]
    for stem in (name.lower(), Path(name).stem.lower()):
        if stem in by_stem:
            return by_stem[stem][0]
    return None


def read_captions_csv(
    path_or_bytes: str | os.PathLike[str] | bytes | bytearray | BinaryIO,
    *,
    image_folder: str | os.PathLike[str] | None = None,
) -> ImportResult:
    """Read a captions CSV (path, bytes or binary file) into an ImportResult.

    With ``image_folder``, each image_id is matched to a file there (see resolve_image) and the
    column image_path is added; ids without a file are listed in ``missing_images`` (their rows are
    kept, with image_path None). Raises ValueError naming the columns found and the columns
    required when image_id, model_name or caption is missing.
    """
    text, encoding = _decode(_read_bytes(path_or_bytes))
    if not text.strip():
        raise ValueError("Captions CSV is empty; expected a header row with image_id, model_name, caption")
    delimiter = _pick_delimiter(text)
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter)]
    header_index = next((i for i, row in enumerate(rows) if any(cell.strip() for cell in row)), None)
    if header_index is None:
        raise ValueError("Captions CSV has no header row; expected image_id, model_name, caption")
    header = [cell.strip() for cell in rows[header_index]]
    columns = [_column_name(name) for name in header]

    missing = [column for column in REQUIRED_COLUMNS if column not in columns]
    if missing:
        raise ValueError(
            f"Captions CSV is missing required column(s) {missing}; found columns {header} "
            f"(read as {_DELIMITER_NAMES[delimiter]}-separated). Required: image_id (or 'image', "
            "'file_name'), model_name (or 'model'), caption. Rename the header row and import again."
        )
    for column in REQUIRED_COLUMNS:
        sources = [name for name, canonical in zip(header, columns) if canonical == column]
        if len(sources) > 1:
            raise ValueError(f"Captions CSV has several columns that mean {column}: {sources}; keep only one")
    # Extra columns with clashing names get a numeric suffix instead of overwriting each other.
    seen: dict[str, int] = {}
    for i, column in enumerate(columns):
        seen[column] = seen.get(column, 0) + 1
        if seen[column] > 1:
            columns[i] = f"{column}_{seen[column]}"

    caption_last = columns.index("caption") == len(columns) - 1
    records, skipped = [], 0
    for row in rows[header_index + 1:]:
        if not any(cell.strip() for cell in row):
            continue  # blank line: not data, not worth reporting
        if len(row) > len(columns):
            if caption_last and delimiter == ",":
                row = row[: len(columns) - 1] + [delimiter.join(row[len(columns) - 1:])]
            elif not any(cell.strip() for cell in row[len(columns):]):
                row = row[: len(columns)]  # trailing empty cells, as Excel writes them
            else:
                skipped += 1
                continue
        row = row + [""] * (len(columns) - len(row))
        record = {column: cell.strip() for column, cell in zip(columns, row)}
        if not all(record[column] for column in REQUIRED_COLUMNS):
            skipped += 1
            continue
        records.append(record)

    frame = pd.DataFrame.from_records(records, columns=columns)
    if "caption_index" in frame.columns:
        # `python -m captioning caption --num-captions N` writes N rows per (image, model); the rated
        # caption is the model's first (best beam / first sample), caption_index 0.
        frame = frame[pd.to_numeric(frame["caption_index"], errors="coerce").fillna(0) == 0]
    before = len(frame)
    frame = frame.drop_duplicates(["image_id", "model_name"], keep="last").reset_index(drop=True)
    duplicates = before - len(frame)
    # required columns first, the rest (decoding settings...) in file order
    frame = frame[REQUIRED_COLUMNS + [column for column in columns if column not in REQUIRED_COLUMNS]]

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
        missing_images=missing_images,
        skipped_rows=skipped,
        duplicate_rows=duplicates,
        encoding=encoding,
        delimiter=delimiter,
    )
