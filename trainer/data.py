"""Caption datasets: readers for four on-disk formats, an inspector, a subset sampler and a synthetic
"shapes" dataset with an object-level accuracy metric.

Formats read by `load_dataset` (found by `detect_format` when `format="auto"`):

- ``coco``: MS-COCO captions (Lin et al., 2014). A folder with ``annotations/captions_{train,val,test}*.json``
  (``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``) and image folders named
  like the file's tag (``train2014/``, ``val2017/``) or the split (``train/``); or the path of one such json.
- ``karpathy``: the Karpathy & Fei-Fei (2015) split files ``dataset_{coco,flickr8k,flickr30k}.json``
  (``{"images": [{"filepath"?, "filename", "split", "sentences": [{"raw"}]}]}``). ``restval`` joins train.
- ``flickr8k``: ``Flickr8k.token.txt`` (``name.jpg#0<TAB>caption``) with ``Flickr_8k.{train,dev,test}Images.txt``,
  or the Kaggle ``captions.txt`` CSV (header ``image,caption``).
- ``folder``: your own images next to ``captions.csv`` (``image``/``file_name``/``image_id`` + ``caption``
  columns, comma or semicolon) or ``captions.jsonl`` (``{"image": ..., "caption": ...}`` per line), with an
  optional ``split`` column.

Where a dataset has no split information (Kaggle ``captions.txt`` without split files, a folder without a
``split`` column) the images are split 80/10/10 by a seeded shuffle of their sorted ids (seed
`AUTO_SPLIT_SEED`), so the same files always give the same split.

Reading is careful rather than fast-and-loose: malformed lines are skipped and counted with their line
numbers, images that do not exist are counted and left out (or raise, if asked), captions are
whitespace-normalised and over-long ones dropped and counted. Every count lands in `SplitReport`.

Command line (exit status 2 with one clear line on a bad path or format)::

    python -m trainer.data inspect PATH [--format auto] [--json]
    python -m trainer.data shapes --out DIR --n 1000 --seed 0 [--image-size 64]
"""
from __future__ import annotations

import argparse
import csv
import difflib
import io
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

# ----------------------------------------------------------------------------------------------------
# Data model
# ----------------------------------------------------------------------------------------------------

FORMATS = ("coco", "karpathy", "flickr8k", "folder")
SPLITS = ("train", "val", "test")
MISSING_IMAGE_POLICIES = ("skip", "error")
AUTO_SPLIT_SEED = 0  # seed of the 80/10/10 split made when a dataset carries no split information
AUTO_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
MAX_LINE_NOTES = 5  # skipped lines described one by one in SplitReport.notes before summarising the rest

# Split names found in the wild, mapped to ours. "restval" is Karpathy's extra COCO validation images
# that everyone trains on.
_SPLIT_ALIASES = {
    "train": "train", "training": "train", "restval": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test",
}


class DatasetError(ValueError):
    """A dataset that cannot be read as asked. The message says what, where, and what to do."""


@dataclass(frozen=True)
class CaptionRecord:
    """One (image, caption) pair; an image with five captions gives five records."""

    image_path: Path
    caption: str
    image_id: str  # stable id: the COCO id as a string, or the image's file name


@dataclass
class SplitReport:
    """What happened while reading one split: counts plus human-readable notes."""

    images: int = 0  # images kept (file present, at least one caption kept)
    captions: int = 0  # captions kept (= number of records)
    missing_images: int = 0  # images named by the annotations whose file is missing or unreadable
    skipped_lines: int = 0  # malformed lines / entries / empty captions in the source files
    dropped_captions: int = 0  # captions longer than max_caption_tokens
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """The five counts as a plain dict (what `inspect_dataset` reports per split)."""
        return {
            "images": self.images,
            "captions": self.captions,
            "missing_images": self.missing_images,
            "skipped_lines": self.skipped_lines,
            "dropped_captions": self.dropped_captions,
        }


@dataclass
class Split:
    """One split of a dataset, ready for training (`records`) and for metrics (`references`)."""

    name: str  # "train" | "val" | "test"
    records: list[CaptionRecord]
    references: dict[str, list[str]]  # image_id -> every kept caption of that image
    image_paths: dict[str, Path]  # image_id -> image file
    report: SplitReport
    objects: dict[str, list[dict]] | None = None  # shapes dataset only: image_id -> objects drawn


# ----------------------------------------------------------------------------------------------------
# Internal: what every reader returns before captions and images are checked
# ----------------------------------------------------------------------------------------------------


@dataclass
class _RawImage:
    image_id: str
    path: Path
    captions: list[str] = field(default_factory=list)  # as found in the file, not yet normalised
    objects: list[dict] | None = None


@dataclass
class _RawSplit:
    images: dict[str, _RawImage] = field(default_factory=dict)  # image_id -> image, in file order
    skipped_lines: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, image_id: str, path: Path, caption: str, objects: list[dict] | None = None) -> None:
        image = self.images.get(image_id)
        if image is None:
            image = self.images[image_id] = _RawImage(image_id, path, objects=objects)
        image.captions.append(caption)


@dataclass
class _ReadResult:
    splits: dict[str, _RawSplit]  # the wanted splits that the dataset has
    available: list[str]  # every split the dataset has (for error messages)


class _LineSkips:
    """Counts skipped lines of one source file and describes the first few (with line numbers)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.count = 0
        self.details: list[str] = []

    def skip(self, line: int | str, reason: str) -> None:
        self.count += 1
        if len(self.details) < MAX_LINE_NOTES:
            where = f"line {line}" if isinstance(line, int) else str(line)
            self.details.append(f"{self.source} {where}: {reason}")

    def notes(self) -> list[str]:
        if self.count == 0:
            return []
        notes = [f"skipped {self.count} malformed line(s)/entries in {self.source}"] + self.details
        if self.count > len(self.details):
            notes.append(f"... and {self.count - len(self.details)} more in {self.source}")
        return notes

    def apply_to(self, raw: _RawSplit) -> None:
        raw.skipped_lines += self.count
        raw.notes.extend(self.notes())


class _ImageLocator:
    """Finds an image under one of several candidate folders (datasets unpack in different layouts).

    With `probe=True` each image is looked up in every existing candidate folder in order (one stat per
    image when the first folder is right). With `probe=False` the folder is chosen once, from the first
    image, so that `check_images=False` stays free of per-image file-system calls.
    """

    def __init__(self, roots: Iterable[Path], probe: bool) -> None:
        unique = list(dict.fromkeys(Path(r) for r in roots))
        self.roots = [r for r in unique if r.is_dir()] or unique[:1]
        self.probe = probe
        self._chosen: Path | None = None

    def locate(self, relative: str) -> Path:
        if self.probe:
            for root in self.roots:
                candidate = root / relative
                if candidate.is_file():
                    return candidate
            return self.roots[0] / relative
        if self._chosen is None:
            self._chosen = next((r for r in self.roots if (r / relative).is_file()), self.roots[0])
        return self._chosen / relative


# ----------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------


def _canonical_split(split: str) -> str:
    name = _SPLIT_ALIASES.get(str(split).strip().lower())
    if name is None:
        raise DatasetError(f"Unknown split {split!r}; allowed: train, val (or validation/dev), test.")
    return name


def _check_format(format: str) -> str:
    if format == "auto" or format in FORMATS:
        return format
    close = difflib.get_close_matches(str(format), FORMATS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DatasetError(f"Unknown dataset format {format!r}{hint}; allowed: auto, {', '.join(FORMATS)}.")


def normalize_caption(text: str) -> str:
    """Strip a caption and collapse every run of whitespace (tabs, newlines) to one space."""
    return " ".join(str(text).split())


def _split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """Image counts for train/val/test; val and test get at least one image when n >= 3 and their
    fraction is non-zero, so a small dataset still has something to validate on."""
    n_val = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:
        n_val = max(n_val, 1) if fractions[1] > 0 else 0
        n_test = max(n_test, 1) if fractions[2] > 0 else 0
    n_val = min(n_val, n)
    n_test = min(n_test, n - n_val)
    return n - n_val - n_test, n_val, n_test


def seeded_split(image_ids: Iterable[str], seed: int = AUTO_SPLIT_SEED,
                 fractions: tuple[float, float, float] = AUTO_SPLIT_FRACTIONS) -> dict[str, str]:
    """Assign each image id to "train"/"val"/"test" by a seeded shuffle of the sorted ids.

    Sorting first makes the result independent of file order: the same ids always give the same split.
    """
    ids = sorted(set(image_ids))
    random.Random(seed).shuffle(ids)
    n_train, n_val, _ = _split_counts(len(ids), fractions)
    assignment = {}
    for index, image_id in enumerate(ids):
        assignment[image_id] = "train" if index < n_train else "val" if index < n_train + n_val else "test"
    return assignment


def _seeded_split_note(source: str) -> str:
    return (f"{source} carries no split information: images were split 80/10/10 by a seeded shuffle "
            f"(seed {AUTO_SPLIT_SEED}) of their sorted names")


def _read_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column "
                           f"{error.colno}); re-download or fix the file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"Could not read {path}: {error}.") from None


def _read_text(path: Path) -> str:
    """Read a UTF-8 text file (with or without BOM); universal newlines."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path} is not UTF-8 text ({error}); save it as UTF-8 and try again.") from None
    except OSError as error:
        raise DatasetError(f"Could not read {path}: {error}.") from None


def _image_usable(path: Path) -> bool:
    """Cheap check that an image can be used: it exists, is a readable non-empty file, and looks like an
    image to the library loader. Images are not decoded here (that would cost a second per thousand)."""
    from captioning.images import is_image_file  # lazy: the library loader owns what counts as an image

    try:
        if not path.is_file() or path.stat().st_size == 0 or not os.access(path, os.R_OK):
            return False
    except OSError:
        return False
    return bool(is_image_file(path))


# ----------------------------------------------------------------------------------------------------
# Format detection
# ----------------------------------------------------------------------------------------------------

_LOOKED_FOR = ("annotations/captions_*.json (coco), dataset_*.json (karpathy), "
               "Flickr8k.token.txt or captions.txt (flickr8k), captions.csv or captions.jsonl (folder)")


def _flickr_text_files(folder: Path) -> tuple[Path | None, Path | None]:
    """(Flickr8k.token.txt, Kaggle captions.txt) found in the folder or its Flickr8k_text/ subfolder."""
    token = next((d / "Flickr8k.token.txt" for d in (folder, folder / "Flickr8k_text")
                  if (d / "Flickr8k.token.txt").is_file()), None)
    kaggle = folder / "captions.txt" if (folder / "captions.txt").is_file() else None
    return token, kaggle


def _coco_candidates(folder: Path) -> list[Path]:
    found = []
    for directory in (folder / "annotations", folder):
        if directory.is_dir():
            found += sorted(p for p in directory.glob("captions_*.json") if p.is_file())
    return found


def _detect_json(path: Path) -> str:
    name = path.name.lower()
    if name.startswith("dataset_"):
        return "karpathy"
    if name.startswith("captions_"):
        return "coco"
    data = _read_json(path)
    if isinstance(data, dict) and isinstance(data.get("images"), list):
        if "annotations" in data:
            return "coco"
        first = data["images"][0] if data["images"] else {}
        if isinstance(first, dict) and "sentences" in first:
            return "karpathy"
    raise DatasetError(f"{path} is JSON but neither COCO captions (needs 'images' and 'annotations') nor a "
                       f"Karpathy split file (needs 'images' with 'sentences'); pass --format or fix the file.")


def detect_format(path: str | Path) -> str:
    """Tell which format a dataset path holds: "coco" | "karpathy" | "flickr8k" | "folder".

    `path` may be a dataset folder or one of its caption files. Raises DatasetError naming what it looked for.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"Dataset path {path} does not exist; pass a dataset folder or caption file.")
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".json"):
            return _detect_json(path)
        if name.endswith(".token.txt") or name == "captions.txt":
            return "flickr8k"
        if name.endswith((".csv", ".jsonl")):
            return "folder"
        raise DatasetError(f"Could not tell the dataset format of file {path}: expected one of {_LOOKED_FOR}. "
                           f"Pass --format or point at one of those files.")
    if _coco_candidates(path):
        return "coco"
    if any(p.is_file() for p in path.glob("dataset_*.json")):
        return "karpathy"
    if any(_flickr_text_files(path)):
        return "flickr8k"
    if (path / "captions.csv").is_file() or (path / "captions.jsonl").is_file():
        return "folder"
    raise DatasetError(f"Could not tell the dataset format of folder {path}: looked for {_LOOKED_FOR}. "
                       f"Pass --format or point at the caption file.")


# ----------------------------------------------------------------------------------------------------
# COCO
# ----------------------------------------------------------------------------------------------------


def _split_of_name(name: str) -> str | None:
    """Which split a COCO annotation file name holds: captions_train2014.json -> train, captions_val2017
    -> val, captions_test.json -> test; None when the name names no split."""
    stem = name.lower().removesuffix(".json").removeprefix("captions_")
    if "train" in stem:
        return "train"
    if "val" in stem or "dev" in stem:
        return "val"
    if "test" in stem:
        return "test"
    return None


def _coco_files(path: Path) -> dict[str, list[Path]]:
    """Split -> annotation files. A json passed directly whose name names no split is keyed "*"."""
    if path.is_file():
        return {_split_of_name(path.name) or "*": [path]}
    files: dict[str, list[Path]] = {}
    for candidate in _coco_candidates(path):
        split = _split_of_name(candidate.name)
        if split is not None:
            files.setdefault(split, []).append(candidate)
    return files


def _read_coco(path: Path, wanted: set[str], image_root: Path | None, check_images: bool) -> _ReadResult:
    files = _coco_files(path)
    if "*" in files:  # a single json that names no split serves whichever split is asked for
        files = {split: files["*"] for split in wanted}
    if not files:
        raise DatasetError(f"No COCO caption files in {path}: expected annotations/captions_train*.json, "
                           f"captions_val*.json or captions_test*.json.")
    result = _ReadResult({}, sorted(files))
    for split in sorted(wanted & set(files)):
        if len(files[split]) > 1:
            names = ", ".join(str(p) for p in files[split])
            raise DatasetError(f"Several COCO caption files match split {split!r}: {names}; pass the one you "
                               f"want as the dataset path.")
        result.splits[split] = _read_coco_file(files[split][0], split, image_root, check_images)
    return result


def _read_coco_file(json_path: Path, split: str, image_root: Path | None, check_images: bool) -> _RawSplit:
    data = _read_json(json_path)
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)
            and isinstance(data.get("annotations"), list)):
        raise DatasetError(f"{json_path} is not a COCO captions file: it needs top-level 'images' and "
                           f"'annotations' lists.")
    # Image folders: COCO names them after the file's tag (captions_val2017.json -> val2017/), our shapes
    # dataset after the split (train/); the annotations/ folder sits next to them.
    root = json_path.parent.parent if json_path.parent.name == "annotations" else json_path.parent
    tag = json_path.stem.removeprefix("captions_")
    if image_root is not None:
        roots = [image_root, image_root / tag, image_root / split]
    else:
        roots = [root / tag, root / split, root / "images" / tag, root / "images" / split, root / "images", root]
    locator = _ImageLocator(roots, probe=check_images)

    skips = _LineSkips(json_path.name)
    raw = _RawSplit()
    entries: dict[str, tuple[Path, list[dict] | None]] = {}
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or not isinstance(image.get("file_name"), str):
            skips.skip(f"images[{index}]", "image entry without 'id' and 'file_name'")
            continue
        objects = image.get("objects") if isinstance(image.get("objects"), list) else None
        entries[str(image["id"])] = (locator.locate(image["file_name"]), objects)
    for index, annotation in enumerate(data["annotations"]):
        if not isinstance(annotation, dict) or not isinstance(annotation.get("caption"), str):
            skips.skip(f"annotations[{index}]", "annotation without a 'caption' string")
            continue
        image_id = str(annotation.get("image_id"))
        if image_id not in entries:
            skips.skip(f"annotations[{index}]", f"image_id {annotation.get('image_id')!r} is not in 'images'")
            continue
        image_path, objects = entries[image_id]
        raw.add(image_id, image_path, annotation["caption"], objects)
    skips.apply_to(raw)
    return raw


# ----------------------------------------------------------------------------------------------------
# Karpathy split files
# ----------------------------------------------------------------------------------------------------


def _karpathy_file(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(p for p in path.glob("dataset_*.json") if p.is_file())
    if not found:
        raise DatasetError(f"No Karpathy split file (dataset_coco.json, dataset_flickr8k.json, "
                           f"dataset_flickr30k.json) in {path}.")
    if len(found) > 1:
        raise DatasetError(f"Several Karpathy split files in {path}: {', '.join(p.name for p in found)}; pass "
                           f"the one you want as the dataset path.")
    return found[0]


def _read_karpathy(path: Path, wanted: set[str], image_root: Path | None, check_images: bool) -> _ReadResult:
    json_path = _karpathy_file(path)
    data = _read_json(json_path)
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)):
        raise DatasetError(f"{json_path} is not a Karpathy split file: it needs a top-level 'images' list.")
    root = image_root if image_root is not None else json_path.parent
    # COCO entries carry "filepath" (train2014/val2014) below the root; Flickr images sit in one folder
    # whose name depends on where the archive came from.
    coco_locator = _ImageLocator([root, root / "images"], probe=check_images)
    flickr_locator = _ImageLocator([root, root / "Images", root / "images", root / "Flicker8k_Dataset",
                                    root / "Flickr8k_Dataset", root / "flickr30k-images"], probe=check_images)
    skips = _LineSkips(json_path.name)
    splits: dict[str, _RawSplit] = {}
    available: set[str] = set()
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("filename"), str):
            skips.skip(f"images[{index}]", "entry without a 'filename'")
            continue
        split = _SPLIT_ALIASES.get(str(image.get("split", "")).lower())
        if split is None:
            skips.skip(f"images[{index}]", f"unknown split {image.get('split')!r}")
            continue
        available.add(split)
        if split not in wanted:
            continue
        if isinstance(image.get("filepath"), str):
            image_path = coco_locator.locate(f"{image['filepath']}/{image['filename']}")
        else:
            image_path = flickr_locator.locate(image["filename"])
        image_id = str(image["cocoid"]) if "cocoid" in image else image["filename"]
        raw = splits.setdefault(split, _RawSplit())
        sentences = image.get("sentences") if isinstance(image.get("sentences"), list) else []
        if not sentences:
            skips.skip(f"images[{index}]", "entry without 'sentences'")
        for sentence in sentences:
            if isinstance(sentence, dict) and isinstance(sentence.get("raw"), str):
                raw.add(image_id, image_path, sentence["raw"])
            elif isinstance(sentence, dict) and isinstance(sentence.get("tokens"), list):
                raw.add(image_id, image_path, " ".join(map(str, sentence["tokens"])))
            else:
                skips.skip(f"images[{index}]", "sentence without 'raw' text")
    for raw in splits.values():
        skips.apply_to(raw)
    return _ReadResult(splits, sorted(available))


# ----------------------------------------------------------------------------------------------------
# Flickr8k (original token file or Kaggle captions.txt)
# ----------------------------------------------------------------------------------------------------

_FLICKR_SPLIT_FILES = {"train": "Flickr_8k.trainImages.txt", "val": "Flickr_8k.devImages.txt",
                       "test": "Flickr_8k.testImages.txt"}


def _parse_flickr_token(path: Path, skips: _LineSkips) -> dict[str, list[str]]:
    """`name.jpg#0<TAB>caption` lines -> {name: [captions]}; malformed lines skipped with line numbers."""
    captions: dict[str, list[str]] = {}
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
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


def _parse_kaggle_captions(path: Path, skips: _LineSkips) -> dict[str, list[str]]:
    """Kaggle `captions.txt`: CSV with header `image,caption`; quoted captions may hold commas/quotes."""
    reader = csv.reader(io.StringIO(_read_text(path)))
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


def _read_flickr8k(path: Path, wanted: set[str], image_root: Path | None, check_images: bool) -> _ReadResult:
    if path.is_file():
        caption_file = path
        root = path.parent.parent if path.parent.name == "Flickr8k_text" else path.parent
    else:
        token, kaggle = _flickr_text_files(path)
        caption_file = token or kaggle
        root = path
        if caption_file is None:
            raise DatasetError(f"No Flickr8k.token.txt or captions.txt in {path}.")
    skips = _LineSkips(caption_file.name)
    if caption_file.name.lower() == "captions.txt" or caption_file.suffix.lower() == ".csv":
        captions = _parse_kaggle_captions(caption_file, skips)
    else:
        captions = _parse_flickr_token(caption_file, skips)

    text_dir = caption_file.parent
    split_files = {s: text_dir / f for s, f in _FLICKR_SPLIT_FILES.items() if (text_dir / f).is_file()}
    notes: list[str] = []
    if split_files:
        members = {s: [n.strip() for n in _read_text(p).splitlines() if n.strip()] for s, p in split_files.items()}
    else:
        assignment = seeded_split(captions)
        members = {s: [n for n in captions if assignment[n] == s] for s in SPLITS}
        notes.append(_seeded_split_note(caption_file.name))

    roots = [image_root] if image_root is not None else [
        root / "Flicker8k_Dataset", root / "Flickr8k_Dataset", root / "Images", root / "images", root]
    locator = _ImageLocator(roots, probe=check_images)
    splits: dict[str, _RawSplit] = {}
    for split in sorted(wanted & set(members)):
        raw = splits[split] = _RawSplit(notes=list(notes))
        without_captions = 0
        for name in members[split]:
            if name not in captions:
                without_captions += 1
                continue
            image_path = locator.locate(name)
            for caption in captions[name]:
                raw.add(name, image_path, caption)
        if without_captions:
            raw.notes.append(f"{without_captions} image(s) listed in {split_files[split].name} have no caption "
                             f"in {caption_file.name}")
        skips.apply_to(raw)
    return _ReadResult(splits, sorted(members))


# ----------------------------------------------------------------------------------------------------
# Folder of images with captions.csv / captions.jsonl
# ----------------------------------------------------------------------------------------------------

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


def _parse_folder_csv(path: Path, skips: _LineSkips) -> list[tuple[int, str, str, str | None]]:
    """Rows of (line, image, caption, split or None) from a comma- or semicolon-separated captions.csv."""
    text = _read_text(path)
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


def _parse_folder_jsonl(path: Path, skips: _LineSkips) -> list[tuple[int, str, str, str | None]]:
    """Rows of (line, image, caption, split or None) from captions.jsonl; a `captions` list gives several."""
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
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


def _read_folder(path: Path, wanted: set[str], image_root: Path | None, check_images: bool) -> _ReadResult:
    caption_file = _folder_caption_file(path)
    skips = _LineSkips(caption_file.name)
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
        elif split is not None and split.lower() not in _SPLIT_ALIASES:
            skips.skip(line, f"unknown split {split!r} (allowed: train, val, test)")
        else:
            kept.append((image, caption, _SPLIT_ALIASES[split.lower()] if split is not None else None))

    notes: list[str] = []
    if kept and all(split is None for _, _, split in kept):
        assignment = seeded_split(image for image, _, _ in kept)
        kept = [(image, caption, assignment[image]) for image, caption, _ in kept]
        notes.append(_seeded_split_note(caption_file.name))
    elif any(split is None for _, _, split in kept):
        # A split column that is filled in for some rows only: the others cannot be placed.
        missing = sum(split is None for _, _, split in kept)
        kept = [row for row in kept if row[2] is not None]
        skips.count += missing
        notes.append(f"skipped {missing} row(s) of {caption_file.name} with an empty split")

    root = image_root if image_root is not None else caption_file.parent
    locator = _ImageLocator([root, root / "images"], probe=check_images)
    splits: dict[str, _RawSplit] = {}
    available = sorted({split for _, _, split in kept}) if kept else list(SPLITS)
    for split in sorted(wanted & set(available)):
        raw = splits[split] = _RawSplit(notes=list(notes))
        for image, caption, image_split in kept:
            if image_split == split:
                raw.add(image, locator.locate(image), caption)
        skips.apply_to(raw)
    return _ReadResult(splits, available)


_READERS = {"coco": _read_coco, "karpathy": _read_karpathy, "flickr8k": _read_flickr8k, "folder": _read_folder}


# ----------------------------------------------------------------------------------------------------
# Public: load and inspect
# ----------------------------------------------------------------------------------------------------


def _build_split(name: str, raw: _RawSplit, *, max_caption_tokens: int | None,
                 count_tokens: Callable[[str], int] | None, check_images: bool, missing_images: str) -> Split:
    """Normalise captions, drop over-long ones, leave out missing images, and count all of it."""
    report = SplitReport(skipped_lines=raw.skipped_lines, notes=list(raw.notes))
    count = count_tokens if count_tokens is not None else (lambda text: len(text.split()))
    records: list[CaptionRecord] = []
    references: dict[str, list[str]] = {}
    image_paths: dict[str, Path] = {}
    objects: dict[str, list[dict]] = {}
    has_objects = any(image.objects is not None for image in raw.images.values())
    missing: list[Path] = []
    empty: list[str] = []
    no_caption_left = 0
    for image in raw.images.values():
        if check_images and not _image_usable(image.path):
            missing.append(image.path)
            continue
        kept = []
        for caption in image.captions:
            text = normalize_caption(caption)
            if not text:
                empty.append(image.image_id)
            elif max_caption_tokens is not None and count(text) > max_caption_tokens:
                report.dropped_captions += 1
            else:
                kept.append(text)
        if not kept:
            no_caption_left += 1
            continue
        references[image.image_id] = kept
        image_paths[image.image_id] = image.path
        records.extend(CaptionRecord(image.path, text, image.image_id) for text in kept)
        if image.objects is not None:
            objects[image.image_id] = image.objects

    if missing and missing_images == "error":
        shown = ", ".join(str(p) for p in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DatasetError(f"{len(missing)} image(s) of split {name!r} are missing, empty, unreadable or not an "
                           f"image file type: {shown}{more}. "
                           f"Fix the paths (or image_root), or pass missing_images='skip' to leave them out.")
    report.missing_images = len(missing)
    if missing:
        report.notes.append(f"left out {len(missing)} image(s) that are missing, empty, unreadable or not an "
                            f"image file type, e.g. {missing[0]}")
    if empty:
        report.skipped_lines += len(empty)
        report.notes.append(f"skipped {len(empty)} empty caption(s), e.g. for image {empty[0]}")
    if report.dropped_captions:
        report.notes.append(f"dropped {report.dropped_captions} caption(s) longer than {max_caption_tokens} tokens")
    if no_caption_left:
        report.notes.append(f"left out {no_caption_left} image(s) with no caption left")
    if not records:
        report.notes.append(f"split {name!r} has no usable (image, caption) pair")
    report.images, report.captions = len(references), len(records)
    return Split(name, records, references, image_paths, report, objects if has_objects else None)


def load_dataset(path: str | Path, *, format: str = "auto", split: str, image_root: str | Path | None = None,
                 max_caption_tokens: int | None = None, count_tokens: Callable[[str], int] | None = None,
                 check_images: bool = True, missing_images: str = "skip") -> Split:
    """Read one split of a caption dataset.

    Args:
        path: dataset folder, or one caption file (COCO json, Karpathy json, token/captions.txt, csv/jsonl).
        format: "auto" (see `detect_format`) or one of "coco", "karpathy", "flickr8k", "folder".
        split: "train", "val" (also "validation"/"dev") or "test".
        image_root: folder the image names are relative to; defaults to the dataset's own layout.
        max_caption_tokens: captions with more tokens are dropped (counted in `report.dropped_captions`).
        count_tokens: counts a caption's tokens (e.g. the GPT-2 tokenizer); default whitespace words.
        check_images: check each image file exists (cheap, no decoding); missing ones are left out.
        missing_images: "skip" (count and report them) or "error" (raise DatasetError listing them).
    """
    split_name = _canonical_split(split)
    format = _check_format(format)
    if missing_images not in MISSING_IMAGE_POLICIES:
        raise DatasetError(f"missing_images={missing_images!r} is not allowed; use 'skip' or 'error'.")
    if max_caption_tokens is not None and max_caption_tokens < 1:
        raise DatasetError(f"max_caption_tokens must be a positive integer or None; got {max_caption_tokens!r}.")
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"Dataset path {path} does not exist; pass a dataset folder or caption file.")
    if format == "auto":
        format = detect_format(path)
    root = Path(image_root) if image_root is not None else None
    if root is not None and not root.is_dir():
        raise DatasetError(f"image_root {root} is not a folder; pass the folder the image names are relative to.")
    result = _READERS[format](path, {split_name}, root, check_images)
    if split_name not in result.splits:
        raise DatasetError(f"The {format} dataset at {path} has no {split_name!r} split; it has: "
                           f"{', '.join(result.available) or 'none'}.")
    return _build_split(split_name, result.splits[split_name], max_caption_tokens=max_caption_tokens,
                        count_tokens=count_tokens, check_images=check_images, missing_images=missing_images)


def inspect_dataset(path: str | Path, *, format: str = "auto") -> dict:
    """Read every split a dataset has and count what is there (images checked for existence only).

    Returns ``{"format", "path", "splits": {split: {"images", "captions", "missing_images",
    "skipped_lines", "dropped_captions"}}, "notes": {split: [...]}}``.
    """
    format = _check_format(format)
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"Dataset path {path} does not exist; pass a dataset folder or caption file.")
    if format == "auto":
        format = detect_format(path)
    wanted = set(SPLITS)
    if format == "coco" and path.is_file() and _split_of_name(path.name) is None:
        wanted = {"train"}  # a json that names no split would otherwise be reported three times
    result = _READERS[format](path, wanted, None, True)
    summary: dict = {"format": format, "path": str(path), "splits": {}, "notes": {}}
    for name in SPLITS:
        if name in result.splits:
            built = _build_split(name, result.splits[name], max_caption_tokens=None, count_tokens=None,
                                 check_images=True, missing_images="skip")
            summary["splits"][name] = built.report.counts()
            summary["notes"][name] = built.report.notes
    return summary


# ----------------------------------------------------------------------------------------------------
# Subset sampling: a fresh random part of the training set each epoch
# ----------------------------------------------------------------------------------------------------


def subset_indices(n: int, ratio: float, epoch: int, seed: int) -> list[int]:
    """Sorted indices of a random `ratio` share of `range(n)`, fresh for each epoch.

    The same (seed, epoch) always gives the same subset; different epochs give different subsets, so over
    many epochs the whole dataset is seen. `ratio >= 1` returns every index.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}.")
    if not (isinstance(ratio, (int, float)) and 0 < ratio and math.isfinite(ratio)):
        raise ValueError(f"ratio must be a number in (0, 1]; got {ratio!r}.")
    if ratio >= 1:
        return list(range(n))
    size = min(n, max(1, round(n * ratio))) if n else 0
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes and Python runs.
    generator = random.Random(f"subset:{seed}:{epoch}")
    return sorted(generator.sample(range(n), size))


class SubsetSampler:
    """Iterable of dataset indices for one epoch (usable as a torch DataLoader `sampler`).

    Call `set_epoch(epoch)` before each epoch; iteration yields the epoch's subset in a seeded shuffled order.
    With `groups` (the record indices of each image) and `per_group` N, the subset is drawn over images and
    each chosen image contributes N of its captions (all of them when it has fewer), drawn afresh each epoch.
    """

    def __init__(self, n: int, ratio: float, seed: int = 0, *, groups: list[list[int]] | None = None,
                 per_group: int | None = None) -> None:
        if (groups is None) != (per_group is None):
            raise ValueError("groups and per_group are given together")
        if per_group is not None and per_group < 1:
            raise ValueError(f"per_group must be >= 1; got {per_group}.")
        subset_indices(len(groups) if groups is not None else n, ratio, 0, seed)  # validate arguments now
        self.n, self.ratio, self.seed, self.epoch = n, ratio, seed, 0
        self.groups, self.per_group = groups, per_group

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, epoch: int | None = None) -> list[int]:
        epoch = self.epoch if epoch is None else epoch
        if self.groups is None:
            return subset_indices(self.n, self.ratio, epoch, self.seed)
        pick = random.Random(f"captions:{self.seed}:{epoch}")
        chosen: list[int] = []
        for g in subset_indices(len(self.groups), self.ratio, epoch, self.seed):
            group = self.groups[g]
            chosen.extend(group if len(group) <= self.per_group else pick.sample(group, self.per_group))
        return sorted(chosen)

    def __iter__(self) -> Iterator[int]:
        order = self.indices()
        random.Random(f"order:{self.seed}:{self.epoch}").shuffle(order)
        return iter(order)

    def __len__(self) -> int:
        # Epoch 0's size: the same every epoch unless images with fewer than per_group captions are subsampled.
        return len(self.indices(0))


# ----------------------------------------------------------------------------------------------------
# Synthetic "shapes" dataset and its object-level metric
# ----------------------------------------------------------------------------------------------------

SHAPES = ("circle", "square", "triangle")
COLORS = {  # far apart in RGB and all clearly visible on a light background
    "red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220),
    "yellow": (235, 195, 0), "purple": (140, 50, 180), "orange": (245, 125, 20),
}
SIZES = {"small": 0.16, "large": 0.29}  # side/diameter as a share of the image side (a grid cell is 1/3)
_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "center", "right")
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
_SUPERSAMPLE = 4  # draw at 4x and downsample, for smooth edges at 64 px


def _position_word(row: int, column: int) -> str:
    """3x3 grid cell -> "top left", "top", "left", "center", ... ("middle"/"center" are left unsaid)."""
    if row == 1 and column == 1:
        return "center"
    if row == 1:
        return _COLUMNS[column]
    if column == 1:
        return _ROWS[row]
    return f"{_ROWS[row]} {_COLUMNS[column]}"


def _where(position: str) -> str:
    """Position word -> a phrase: "in the center", "on the left", "at the top", "in the top left corner"."""
    if position == "center":
        return "in the center"
    if position in ("left", "right"):
        return f"on the {position}"
    if position in ("top", "bottom"):
        return f"at the {position}"
    return f"in the {position} corner"


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _shape_captions(objects: list[dict], rng: random.Random) -> list[str]:
    """Five differently worded captions; every one names each object's size, colour and shape, always as an
    adjacent "size colour shape" phrase so that `object_accuracy` of the references is 1."""
    def phrase(obj: dict) -> str:
        return f"a {obj['size']} {obj['color']} {obj['shape']}"

    # Left to right (then top to bottom): the order of the first template.
    by_column = sorted(objects, key=lambda o: (o["_column"], o["_row"]))
    by_row = sorted(objects, key=lambda o: (o["_row"], o["_column"]))
    count = len(objects)
    shapes_word = "shape" if count == 1 else "shapes"
    captions = [_join([phrase(o) for o in by_column])]
    captions.append(f"{_NUMBER_WORDS[count]} {shapes_word}: " + _join([phrase(o) for o in by_row]))
    captions.append(_join([f"{phrase(o)} {_where(o['position'])}" for o in by_column]))
    if count == 1:
        captions.append(f"there is only {phrase(objects[0])} {_where(objects[0]['position'])}")
    elif count == 2:
        first, second = by_column
        if first["_column"] != second["_column"]:
            relation = "to the right of"
        else:
            first, second = by_row
            relation = "below"
        captions.append(f"there is {phrase(second)} {relation} {phrase(first)}")
    else:
        captions.append("three shapes on a light background: " + _join([phrase(o) for o in by_row[::-1]]))
    shuffled = list(objects)
    rng.shuffle(shuffled)
    lead = rng.choice(("a picture of", "an image with", "a drawing of", "a plain background with"))
    captions.append(f"{lead} " + _join([phrase(o) for o in shuffled]))
    return captions


def _draw_shapes(objects: list[dict], image_size: int, background: tuple[int, int, int]):
    from PIL import Image, ImageDraw

    scale = image_size * _SUPERSAMPLE
    canvas = Image.new("RGB", (scale, scale), background)
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        cx, cy, side = (v * _SUPERSAMPLE for v in obj["_box"])  # centre x, centre y, side in pixels
        half = side / 2
        color = COLORS[obj["color"]]
        if obj["shape"] == "circle":
            draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=color)
        elif obj["shape"] == "square":
            draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=color)
        else:  # triangle, pointing up, as wide as it is tall
            draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=color)
    return canvas.resize((image_size, image_size), Image.Resampling.BOX)


def _random_objects(rng: random.Random, image_size: int) -> list[dict]:
    """1-3 objects in distinct cells of a 3x3 grid (so they never overlap), distinct (colour, shape) pairs."""
    count = rng.randint(1, 3)
    cells = rng.sample(range(9), count)
    pairs = rng.sample([(c, s) for c in COLORS for s in SHAPES], count)
    cell_side = image_size / 3
    objects = []
    for cell, (color, shape) in zip(cells, pairs):
        row, column = divmod(cell, 3)
        size = rng.choice(tuple(SIZES))
        side = SIZES[size] * image_size
        slack = max(0.0, (cell_side - side) / 2 - 1)  # jitter that keeps the shape inside its cell
        cx = (column + 0.5) * cell_side + rng.uniform(-slack, slack)
        cy = (row + 0.5) * cell_side + rng.uniform(-slack, slack)
        objects.append({"shape": shape, "color": color, "size": size, "position": _position_word(row, column),
                        "_row": row, "_column": column, "_box": (cx, cy, side)})
    return objects


def write_shapes_dataset(out_dir: str | Path, n: int, seed: int, image_size: int = 64,
                         splits: tuple[float, float, float] = (0.8, 0.1, 0.1), *, progress: bool = False) -> dict:
    """Write a synthetic COCO-format captions dataset of coloured shapes; deterministic for a seed.

    Layout: ``out_dir/annotations/captions_{train,val,test}.json`` and PNGs in ``out_dir/{train,val,test}/``.
    Each image shows 1-3 non-overlapping shapes (circle/square/triangle; six colours; small/large) on a
    light background and has five reference captions naming every object's size, colour and shape. Each
    COCO image entry also lists its ``objects`` ({"shape", "color", "size", "position"}) for
    `object_accuracy`. Returns a summary (counts per split, paths, seconds taken).
    """
    if not isinstance(n, int) or n < 1:
        raise DatasetError(f"n must be a positive number of images; got {n!r}.")
    if not isinstance(image_size, int) or image_size < 16:
        raise DatasetError(f"image_size must be an integer >= 16 pixels; got {image_size!r}.")
    if len(splits) != 3 or any(f < 0 for f in splits) or abs(sum(splits) - 1) > 1e-6:
        raise DatasetError(f"splits must be three non-negative fractions (train, val, test) summing to 1; "
                           f"got {tuple(splits)}.")
    started = time.perf_counter()
    out = Path(out_dir)
    counts = dict(zip(SPLITS, _split_counts(n, tuple(splits))))
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        (out / split).mkdir(exist_ok=True)
        for stale in (out / split).glob("shapes_*.png"):  # images of an earlier, larger run
            stale.unlink()

    rng = random.Random(seed)
    image_id, annotation_id = 0, 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="shapes", unit="img", disable=not sys.stderr.isatty())
    annotation_paths = {}
    for split in SPLITS:
        images, annotations = [], []
        for _ in range(counts[split]):
            image_id += 1
            objects = _random_objects(rng, image_size)
            grey = rng.randint(228, 250)
            file_name = f"shapes_{image_id:06d}.png"
            _draw_shapes(objects, image_size, (grey, grey, grey)).save(out / split / file_name, format="PNG")
            for caption in _shape_captions(objects, rng):
                annotation_id += 1
                annotations.append({"id": annotation_id, "image_id": image_id, "caption": caption})
            public = [{k: v for k, v in o.items() if not k.startswith("_")} for o in objects]
            images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size,
                           "objects": public})
            if bar is not None:
                bar.update()
        document = {
            "info": {"description": "Caption Zoo synthetic shapes dataset", "seed": seed, "split": split,
                     "image_size": image_size},
            "images": images,
            "annotations": annotations,
        }
        annotation_paths[split] = out / "annotations" / f"captions_{split}.json"
        annotation_paths[split].write_text(json.dumps(document), encoding="utf-8")
    if bar is not None:
        bar.close()
    return {
        "out_dir": str(out),
        "n": n,
        "seed": seed,
        "image_size": image_size,
        "splits": counts,
        "captions": annotation_id,
        "annotations": {split: str(p) for split, p in annotation_paths.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }


_SHAPE_FORMS = {form: shape for shape in SHAPES for form in (shape, shape + "s")}


def caption_objects(caption: str) -> set[tuple[str, str]]:
    """The (colour, shape) pairs a caption names: a colour word followed, within the next two words, by a
    shape word ("red circle", "red large circle", "two red circles"); another colour word in between ends
    the search ("red and blue squares" names only the blue squares)."""
    words = re.findall(r"[a-z]+", caption.lower())
    pairs = set()
    for i, word in enumerate(words):
        if word not in COLORS:
            continue
        for following in words[i + 1:i + 3]:
            if following in COLORS:
                break
            if following in _SHAPE_FORMS:
                pairs.add((word, _SHAPE_FORMS[following]))
                break
    return pairs


def object_accuracy(captions: dict[str, str], objects: dict[str, list[dict]]) -> dict[str, float]:
    """Share of images whose caption names the colour and shape of every object present and no absent one.

    `captions` maps image_id -> one generated caption; `objects` maps image_id -> the objects drawn
    (`Split.objects` of the shapes dataset). Counts of objects are ignored ("two red circles" = "a red circle").
    `by_objects` breaks the accuracy down by how many objects the image holds: a captioner that blends the
    objects of a busy image into one description does well on one object and badly on three.
    """
    unknown = [image_id for image_id in captions if image_id not in objects]
    if unknown:
        raise ValueError(f"{len(unknown)} caption(s) are for images without objects, e.g. {unknown[:3]}; pass "
                         f"the objects of the same split (Split.objects).")
    by_count: dict[int, list[int]] = {}  # objects in the image -> [right, images]
    for image_id, caption in captions.items():
        present = {(str(o["color"]), str(o["shape"])) for o in objects[image_id]}
        tally = by_count.setdefault(len(objects[image_id]), [0, 0])
        tally[0] += caption_objects(caption) == present
        tally[1] += 1
    correct, total = sum(right for right, _ in by_count.values()), len(captions)
    return {"object_accuracy": correct / total if total else 0.0, "images": total,
            "by_objects": {n: right / images for n, (right, images) in sorted(by_count.items())}}


# ----------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------


def _print_inspection(summary: dict) -> None:
    print(f"format: {summary['format']}    path: {summary['path']}")
    columns = ("images", "captions", "missing_images", "skipped_lines", "dropped_captions")
    print(f"{'split':<6} " + " ".join(f"{c:>16}" for c in columns))
    for split, counts in summary["splits"].items():
        print(f"{split:<6} " + " ".join(f"{counts[c]:>16}" for c in columns))
    for split, notes in summary["notes"].items():
        for note in notes:
            print(f"  [{split}] {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.data", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="count images/captions/problems per split of a dataset")
    inspect.add_argument("path", help="dataset folder or caption file")
    inspect.add_argument("--format", default="auto", help=f"auto (default) or one of {', '.join(FORMATS)}")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    shapes = commands.add_parser("shapes", help="write the synthetic shapes dataset (COCO format)")
    shapes.add_argument("--out", required=True, help="output folder")
    shapes.add_argument("--n", type=int, required=True, help="number of images (split 80/10/10)")
    shapes.add_argument("--seed", type=int, default=0, help="random seed (same seed -> same dataset)")
    shapes.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            summary = inspect_dataset(args.path, format=args.format)
            if args.json:
                print(json.dumps(summary, indent=2))
            else:
                _print_inspection(summary)
        else:
            summary = write_shapes_dataset(args.out, args.n, args.seed, args.image_size, progress=True)
            counts = summary["splits"]
            print(f"wrote {summary['n']} images (train {counts['train']} / val {counts['val']} / test "
                  f"{counts['test']}) and {summary['captions']} captions to {summary['out_dir']} in "
                  f"{summary['seconds']} s")
    except (DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
