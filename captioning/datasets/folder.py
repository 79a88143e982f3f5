"""Plain-folder reader: your images beside `captions.csv` (comma or semicolon) or `captions.jsonl`, with an
optional `split` column (seeded 80/10/10 split without one)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .reading import (
    ImageLocator,
    LineSkips,
    RawSplit,
    ReadResult,
    first_names,
    read_text,
    seeded_split,
    seeded_split_note,
)
from .records import SPLIT_ALIASES, SPLITS, DatasetError

_IMAGE_KEYS = ("image", "file_name", "filename", "image_id")


def _folder_caption_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = [path / name for name in ("captions.csv", "captions.jsonl") if (path / name).is_file()]
    if not found:
        raise DatasetError(f"No captions.csv or captions.jsonl in {path}.")
    if len(found) > 1:
        raise DatasetError(f"Both captions.csv and captions.jsonl are in {path}; pass the one you want as the "
                           f"dataset path.")
    return found[0]


def _parse_folder_csv(path: Path, skips: LineSkips) -> list[tuple[int, str, str, str | None]]:
    """Rows of (line, image, caption, split or None) from a comma- or semicolon-separated captions.csv."""
    text = read_text(path)
    header_line = text.split("\n", 1)[0]
    # The header holds no captions, so its separators tell the delimiter reliably.
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader, [])]
    image_col = next((header.index(k) for k in _IMAGE_KEYS if k in header), None)
    if image_col is None or "caption" not in header:
        raise DatasetError(f"{path} needs an image column (one of {', '.join(_IMAGE_KEYS)}) and a 'caption' "
                           f"column; found columns {header} (separator {delimiter!r}).")
    caption_col = header.index("caption")
    split_col = header.index("split") if "split" in header else None
    rows = []
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header) and caption_col == len(header) - 1:
            row = row[:caption_col] + [delimiter.join(row[caption_col:])]  # unquoted separator in a caption
        if len(row) != len(header):
            skips.skip(reader.line_num, f"expected {len(header)} fields, found {len(row)}")
            continue
        split = row[split_col].strip() if split_col is not None else None
        rows.append((reader.line_num, row[image_col].strip(), row[caption_col], split))
    return rows


def _parse_folder_jsonl(path: Path, skips: LineSkips) -> list[tuple[int, str, str, str | None]]:
    """Rows of (line, image, caption, split or None) from captions.jsonl; a `captions` list gives several."""
    rows = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            skips.skip(number, f"not valid JSON ({error.msg})")
            continue
        if not isinstance(item, dict):
            skips.skip(number, "not a JSON object")
            continue
        image = next((item[k] for k in _IMAGE_KEYS if isinstance(item.get(k), (str, int))), None)
        if isinstance(item.get("captions"), list):
            captions = item["captions"]
        elif "caption" in item:
            captions = [item["caption"]]
        else:
            captions = None
        if image is None or captions is None or not all(isinstance(c, str) for c in captions):
            skips.skip(number, "needs 'image' (or 'file_name') and 'caption' (text) or 'captions' (list of text)")
            continue
        split = str(item["split"]).strip() if item.get("split") is not None else None
        rows.extend((number, str(image).strip(), caption, split) for caption in captions)
    return rows


def read_folder(path: Path, wanted: set[str], image_root: Path | None, check_images: bool) -> ReadResult:
    caption_file = _folder_caption_file(path)
    skips = LineSkips(caption_file.name)
    if caption_file.suffix.lower() == ".jsonl":
        rows = _parse_folder_jsonl(caption_file, skips)
    else:
        rows = _parse_folder_csv(caption_file, skips)

    kept = []
    for line, image, caption, split in rows:
        if not image:
            skips.skip(line, "empty image name")
        elif not caption.strip():
            skips.skip(line, "empty caption")
        elif split is not None and split.lower() not in SPLIT_ALIASES:
            skips.skip(line, f"unknown split {split!r} (allowed: train, val, test)")
        else:
            kept.append((image, caption, SPLIT_ALIASES[split.lower()] if split is not None else None))

    root = image_root if image_root is not None else caption_file.parent
    locator = ImageLocator([root, root / "images"], probe=check_images)
    notes: list[str] = []
    if kept and all(split is None for _, _, split in kept):
        # Split by file, not by name: every name of one file (imgs/p0.png, ./imgs/p0.png) lands in one split.
        first = first_names((image for image, _, _ in kept), locator.locate, check_images)
        assignment = seeded_split(first.values())
        kept = [(image, caption, assignment[first[image]]) for image, caption, _ in kept]
        notes.append(seeded_split_note(caption_file.name))
    elif any(split is None for _, _, split in kept):
        # A split column that is filled in for some rows only: the others cannot be placed.
        missing = sum(split is None for _, _, split in kept)
        kept = [row for row in kept if row[2] is not None]
        skips.count += missing
        notes.append(f"skipped {missing} row(s) of {caption_file.name} with an empty split")

    splits: dict[str, RawSplit] = {}
    available = sorted({split for _, _, split in kept}) if kept else list(SPLITS)
    for split in sorted(wanted & set(available)):
        raw = splits[split] = RawSplit(notes=list(notes), resolve=check_images)
        for image, caption, image_split in kept:
            if image_split == split:
                raw.add(image, locator.locate(image), caption)
        skips.apply_to(raw)
    return ReadResult(splits, available)
