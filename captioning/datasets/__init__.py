"""Caption datasets on disk: readers for four formats and an inspector, shared by the trainer
(`trainer.data`), the evaluation tools and the rating workflow (`python -m rating import-dataset`).

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

Modules (everything public is re-exported here: ``from captioning.datasets import load_dataset, Split, ...``)::

    records.py    Split, SplitReport, CaptionRecord, DatasetError, format/split names
    reading.py    what every reader shares (raw splits, skipped lines, image locator, seeded split)
    coco.py, karpathy.py, flickr8k.py, folder.py   one reader per format
    detect.py     detect_format
    load.py       load_dataset, inspect_dataset
"""

from __future__ import annotations

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

__all__ = [
    "AUTO_SPLIT_FRACTIONS", "AUTO_SPLIT_SEED", "FORMATS", "MISSING_IMAGE_POLICIES", "SPLITS", "CaptionRecord",
    "DatasetError", "Split", "SplitReport", "clean_caption", "detect_format", "inspect_dataset", "load_dataset",
    "seeded_split",
]
