"""The trainer's data: the training-time dataset and sampler, a synthetic "shapes" dataset with an object-level
accuracy metric, and `python -m trainer.data`. The readers of the four on-disk formats (coco, karpathy,
flickr8k, folder) are the library's `captioning.datasets`; their public names are re-exported here, so
``from trainer.data import load_dataset, Split, ...`` keeps working.

Command line (exit status 2 with one clear line on a bad path or format)::

    python -m trainer.data inspect PATH [--format auto] [--json]
    python -m trainer.data shapes --out DIR --n 1000 --seed 0 [--image-size 64]

Modules::

    shapes.py     the synthetic shapes dataset, caption_objects, object_accuracy
    training.py   CaptionDataset, make_collate, drop_unreadable, SubsetSampler, subset_indices
    cli.py        python -m trainer.data inspect | shapes
"""

from __future__ import annotations

from captioning.datasets import (
    AUTO_SPLIT_FRACTIONS,
    AUTO_SPLIT_SEED,
    FORMATS,
    MISSING_IMAGE_POLICIES,
    SPLITS,
    CaptionRecord,
    DatasetError,
    Split,
    SplitReport,
    clean_caption,
    detect_format,
    inspect_dataset,
    load_dataset,
    seeded_split,
)

from .cli import main
from .shapes import COLORS, SHAPES, SIZES, caption_objects, object_accuracy, write_shapes_dataset
from .training import SubsetSampler, subset_indices

# The torch-based training helpers load on first use, so `python -m trainer.data inspect` stays light.
_LAZY = {"CaptionDataset": "training", "make_collate": "training", "drop_unreadable": "training",
         "PIXEL_MEMO_BYTES": "training"}

__all__ = [
    "AUTO_SPLIT_FRACTIONS", "AUTO_SPLIT_SEED", "COLORS", "FORMATS", "MISSING_IMAGE_POLICIES", "SHAPES", "SIZES",
    "SPLITS", "CaptionRecord", "DatasetError", "Split", "SplitReport", "SubsetSampler", "caption_objects",
    "clean_caption", "detect_format", "inspect_dataset", "load_dataset", "main", "object_accuracy", "seeded_split",
    "subset_indices", "write_shapes_dataset", "CaptionDataset", "make_collate", "drop_unreadable", "PIXEL_MEMO_BYTES",
]


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'trainer.data' has no attribute {name!r}")
