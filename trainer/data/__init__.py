"""Caption datasets: readers for four on-disk formats, an inspector, the training-time dataset and sampler, and
a synthetic "shapes" dataset with an object-level accuracy metric.

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
whitespace-normalised (`clean_caption`) and over-long ones dropped and counted. Every count lands in
`SplitReport`. Every reader identifies an image by its resolved file path, so one file named two ways
(``imgs/p0.png`` and ``./imgs/p0.png``) is one image, with all its captions, in one split.

Command line (exit status 2 with one clear line on a bad path or format)::

    python -m trainer.data inspect PATH [--format auto] [--json]
    python -m trainer.data shapes --out DIR --n 1000 --seed 0 [--image-size 64]

Modules (everything public is re-exported here: ``from trainer.data import load_dataset, Split, ...``)::

    records.py    Split, SplitReport, CaptionRecord, DatasetError, format/split names
    reading.py    what every reader shares (raw splits, skipped lines, image locator, seeded split)
    coco.py, karpathy.py, flickr8k.py, folder.py   one reader per format
    detect.py     detect_format
    load.py       load_dataset, inspect_dataset
    shapes.py     the synthetic shapes dataset, caption_objects, object_accuracy
    training.py   CaptionDataset, make_collate, drop_unreadable, SubsetSampler, subset_indices
    cli.py        python -m trainer.data inspect | shapes
"""

from __future__ import annotations

from .cli import main
from .detect import detect_format
from .load import inspect_dataset, load_dataset
from .reading import clean_caption, seeded_split
from .records import (
    AUTO_SPLIT_FRACTIONS,
    AUTO_SPLIT_SEED,
    FORMATS,
    MISSING_IMAGE_POLICIES,
    SPLITS,
    CaptionRecord,
    DatasetError,
    Split,
    SplitReport,
)
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
