"""`load_dataset` (one split, ready for training and metrics) and `inspect_dataset` (counts per split): pick
the reader, then clean captions, drop over-long ones, leave out missing images and count all of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .coco import read_coco, split_of_name
from .detect import detect_format
from .flickr8k import read_flickr8k
from .folder import read_folder
from .karpathy import read_karpathy
from .reading import RawSplit, canonical_split, check_format, clean_caption, image_usable
from .records import MISSING_IMAGE_POLICIES, SPLITS, CaptionRecord, DatasetError, Split, SplitReport

READERS = {"coco": read_coco, "karpathy": read_karpathy, "flickr8k": read_flickr8k, "folder": read_folder}


# ----------------------------------------------------------------------------------------------------
# Public: load and inspect
# ----------------------------------------------------------------------------------------------------


def _build_split(name: str, raw: RawSplit, *, max_caption_tokens: int | None,
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
        if check_images and not image_usable(image.path):
            missing.append(image.path)
            continue
        kept = []
        for caption in image.captions:
            text = clean_caption(caption)
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
    if raw.aliases:
        alias, image_id = next(iter(raw.aliases.items()))
        report.notes.append(f"{len(raw.aliases)} image name(s) name a file another name already names (e.g. {alias!r} "
                            f"is {image_id!r}); each file counts once, with all its captions")
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
    split_name = canonical_split(split)
    format = check_format(format)
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
    result = READERS[format](path, {split_name}, root, check_images)
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
    format = check_format(format)
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"Dataset path {path} does not exist; pass a dataset folder or caption file.")
    if format == "auto":
        format = detect_format(path)
    wanted = set(SPLITS)
    if format == "coco" and path.is_file() and split_of_name(path.name) is None:
        wanted = {"train"}  # a json that names no split would otherwise be reported three times
    result = READERS[format](path, wanted, None, True)
    summary: dict = {"format": format, "path": str(path), "splits": {}, "notes": {}}
    for name in SPLITS:
        if name in result.splits:
            built = _build_split(name, result.splits[name], max_caption_tokens=None, count_tokens=None,
                                 check_images=True, missing_images="skip")
            summary["splits"][name] = built.report.counts()
            summary["notes"][name] = built.report.notes
    return summary
