"""Flickr8k reader: `Flickr8k.token.txt` with the `Flickr_8k.{train,dev,test}Images.txt` split lists, or the
Kaggle `captions.txt` CSV (seeded 80/10/10 split when there are no split lists)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .reading import (
    ImageLocator,
    LineSkips,
    RawSplit,
    ReadResult,
    first_names,
    image_identity,
    read_text,
    seeded_split,
    seeded_split_note,
)
from .records import SPLITS, DatasetError


def flickr_text_files(folder: Path) -> tuple[Path | None, Path | None]:
    """(Flickr8k.token.txt, Kaggle captions.txt) found in the folder or its Flickr8k_text/ subfolder."""
    token = next((d / "Flickr8k.token.txt" for d in (folder, folder / "Flickr8k_text")
                  if (d / "Flickr8k.token.txt").is_file()), None)
    kaggle = folder / "captions.txt" if (folder / "captions.txt").is_file() else None
    return token, kaggle

_FLICKR_SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
                       "test": "Flickr_8k.testImages.txt"}


def _parse_flickr_token(path: Path, skips: LineSkips) -> dict[str, list[str]]:
    """`name.jpg#0<TAB>caption` lines -> {name: [captions]}; malformed lines skipped with line numbers."""
    captions: dict[str, list[str]] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (e.g. at the end of the file) are not data
        if "\t" not in line:
            skips.skip(number, "no tab between image#n and caption")
            continue
        key, caption = line.split("\t", 1)
        name, hash_sign, number_text = key.strip().partition("#")
        if not hash_sign or not number_text.strip().isdigit() or not name:
            skips.skip(number, f"{key.strip()!r} is not 'image.jpg#n'")
            continue
        if not caption.strip():
            skips.skip(number, "empty caption")
            continue
        captions.setdefault(name, []).append(caption)
    return captions


def _parse_kaggle_captions(path: Path, skips: LineSkips) -> dict[str, list[str]]:
    """Kaggle `captions.txt`: CSV with header `image,caption`; quoted captions may hold commas/quotes."""
    reader = csv.reader(io.StringIO(read_text(path)))
    header = [h.strip().lower() for h in next(reader, [])]
    if "image" not in header or "caption" not in header:
        raise DatasetError(f"{path} needs a header line 'image,caption'; found {','.join(header) or 'nothing'}.")
    image_col, caption_col = header.index("image"), header.index("caption")
    captions: dict[str, list[str]] = {}
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(header) and caption_col == len(header) - 1:
            # An unquoted comma inside the caption: the rest of the line is the caption.
            row = row[:caption_col] + [",".join(row[caption_col:])]
        if len(row) != len(header):
            skips.skip(reader.line_num, f"expected {len(header)} fields, found {len(row)}")
            continue
        name, caption = row[image_col].strip(), row[caption_col]
        if not name or not caption.strip():
            skips.skip(reader.line_num, "empty image name or caption")
            continue
        captions.setdefault(name, []).append(caption)
    return captions


def read_flickr8k(path: Path, wanted: set[str], image_root: Path | None, check_images: bool) -> ReadResult:
    if path.is_file():
        caption_file = path
        root = path.parent.parent if path.parent.name == "Flickr8k_text" else path.parent
    else:
        token, kaggle = flickr_text_files(path)
        caption_file = token or kaggle
        root = path
        if caption_file is None:
            raise DatasetError(f"No Flickr8k.token.txt or captions.txt in {path}.")
    skips = LineSkips(caption_file.name)
    if caption_file.name.lower() == "captions.txt" or caption_file.suffix.lower() == ".csv":
        captions = _parse_kaggle_captions(caption_file, skips)
    else:
        captions = _parse_flickr_token(caption_file, skips)

    roots = [image_root] if image_root is not None else [
        root / "Flicker8k_Dataset", root / "Flickr8k_Dataset", root / "Images", root / "images", root]
    locator = ImageLocator(roots, probe=check_images)
    first = first_names(captions, locator.locate, check_images)  # every name of one file -> its first name
    names_of: dict[str, list[str]] = {}
    for name, image_id in first.items():
        names_of.setdefault(image_id, []).append(name)

    text_dir = caption_file.parent
    split_files = {s: text_dir / f for s, f in _FLICKR_SPLIT_FILES.items() if (text_dir / f).is_file()}
    notes: list[str] = []
    if split_files:
        by_file = {image_identity(locator.locate(n), check_images): image_id for n, image_id in first.items()}
        members = {s: [by_file.get(image_identity(locator.locate(n), check_images), n)
                       for n in (line.strip() for line in read_text(p).splitlines()) if n]
                   for s, p in split_files.items()}
    else:
        assignment = seeded_split(names_of)
        members = {s: [n for n in names_of if assignment[n] == s] for s in SPLITS}
        notes.append(seeded_split_note(caption_file.name))

    splits: dict[str, RawSplit] = {}
    for split in sorted(wanted & set(members)):
        raw = splits[split] = RawSplit(notes=list(notes), resolve=check_images)
        without_captions = 0
        for image_id in dict.fromkeys(members[split]):
            if image_id not in names_of:
                without_captions += 1
                continue
            for name in names_of[image_id]:
                image_path = locator.locate(name)
                for caption in captions[name]:
                    raw.add(name, image_path, caption)
        if without_captions:
            raw.notes.append(f"{without_captions} image(s) listed in {split_files[split].name} have no caption "
                             f"in {caption_file.name}")
        skips.apply_to(raw)
    return ReadResult(splits, sorted(members))
