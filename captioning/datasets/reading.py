"""What every reader shares: the raw split a reader fills (images identified by their resolved path), the
skipped-line counter, the image locator, caption cleaning, the seeded 80/10/10 split and careful file reading."""

from __future__ import annotations

import difflib
import json
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .records import AUTO_SPLIT_FRACTIONS, AUTO_SPLIT_SEED, FORMATS, MAX_LINE_NOTES, SPLIT_ALIASES, DatasetError


def image_identity(path: Path, resolve: bool = True) -> str:
    """What identifies an image: its resolved file path (".", "..", repeated slashes and symlinks followed), so a
    file named two ways (``imgs/p0.png``, ``./imgs/p0.png``) is one image. With ``resolve=False`` (readers
    called with ``check_images=False``, which make no per-image file-system calls) the path is only
    normalised as text."""
    return os.path.realpath(path) if resolve else os.path.abspath(path)


def first_names(names: Iterable[str], locate: Callable[[str], Path], resolve: bool) -> dict[str, str]:
    """name -> the first of `names` that names the same file (what readers use as the image's id, so that a
    seeded split puts every name of one file in the same split)."""
    first: dict[str, str] = {}
    by_file: dict[str, str] = {}
    for name in names:
        if name not in first:
            first[name] = by_file.setdefault(image_identity(locate(name), resolve), name)
    return first


@dataclass
class RawImage:
    image_id: str
    path: Path
    captions: list[str] = field(default_factory=list)  # as found in the file, not yet normalised
    objects: list[dict] | None = None


@dataclass
class RawSplit:
    images: dict[str, RawImage] = field(default_factory=dict)  # image identity -> image, in file order
    skipped_lines: int = 0
    notes: list[str] = field(default_factory=list)
    resolve: bool = True  # see `image_identity`
    aliases: dict[str, str] = field(default_factory=dict)  # image id -> id of the image that file already has

    def add(self, image_id: str, path: Path, caption: str, objects: list[dict] | None = None) -> None:
        """One caption of one image; an image id naming a file already added joins that image (one id)."""
        key = image_identity(path, self.resolve)
        image = self.images.get(key)
        if image is None:
            image = self.images[key] = RawImage(image_id, path, objects=objects)
        elif image_id != image.image_id:
            self.aliases.setdefault(image_id, image.image_id)
        image.captions.append(caption)


@dataclass
class ReadResult:
    splits: dict[str, RawSplit]  # the wanted splits that the dataset has
    available: list[str]  # every split the dataset has (for error messages)


class LineSkips:
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

    def apply_to(self, raw: RawSplit) -> None:
        raw.skipped_lines += self.count
        raw.notes.extend(self.notes())


class ImageLocator:
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


def canonical_split(split: str) -> str:
    name = SPLIT_ALIASES.get(str(split).strip().lower())
    if name is None:
        raise DatasetError(f"Unknown split {split!r}; allowed: train, val (or validation/dev), test.")
    return name


def check_format(format: str) -> str:
    if format == "auto" or format in FORMATS:
        return format
    close = difflib.get_close_matches(str(format), FORMATS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise DatasetError(f"Unknown dataset format {format!r}{hint}; allowed: auto, {', '.join(FORMATS)}.")


def clean_caption(text: str) -> str:
    """Strip a caption and collapse every run of whitespace (tabs, newlines) to one space."""
    return " ".join(str(text).split())


def split_counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
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
    n_train, n_val, _ = split_counts(len(ids), fractions)
    assignment = {}
    for index, image_id in enumerate(ids):
        assignment[image_id] = "train" if index < n_train else "val" if index < n_train + n_val else "test"
    return assignment


def seeded_split_note(source: str) -> str:
    return (f"{source} carries no split information: images were split 80/10/10 by a seeded shuffle "
            f"(seed {AUTO_SPLIT_SEED}) of their sorted names")


def read_json(path: Path) -> object:
    try:
        with open(path, encoding="utf-8-sig") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column "
                           f"{error.colno}); re-download or fix the file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"Could not read {path}: {error}.") from None


def read_text(path: Path) -> str:
    """Read a UTF-8 text file (with or without BOM); universal newlines."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            return handle.read()
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path} is not UTF-8 text ({error}); save it as UTF-8 and try again.") from None
    except OSError as error:
        raise DatasetError(f"Could not read {path}: {error}.") from None


def image_usable(path: Path) -> bool:
    """Cheap check that an image can be used: it exists, is a readable non-empty file, and looks like an
    image to the library loader. Images are not decoded here (that would cost a second per thousand)."""
    from captioning.images import is_image_file  # lazy: the library loader owns what counts as an image

    try:
        if not path.is_file() or path.stat().st_size == 0 or not os.access(path, os.R_OK):
            return False
    except OSError:
        return False
    return bool(is_image_file(path))
