"""The types every reader returns and every caller uses: `Split` (records, references, image paths, objects),
`SplitReport` (what reading kept and left out), `CaptionRecord`, `DatasetError`, and the names of formats,
splits and policies."""

from __future__ import annotations

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
SPLIT_ALIASES = {
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
