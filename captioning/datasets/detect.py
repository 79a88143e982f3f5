"""Format detection: which of the four formats a dataset folder or caption file holds."""

from __future__ import annotations

from pathlib import Path

from .coco import coco_candidates
from .flickr8k import flickr_text_files
from .reading import read_json
from .records import DatasetError

_LOOKED_FOR = ("annotations/captions_*.json (coco), dataset_*.json (karpathy), "
               "Flickr8k.token.txt or captions.txt (flickr8k), captions.csv or captions.jsonl (folder)")


def _detect_json(path: Path) -> str:
    name = path.name.lower()
    if name.startswith("dataset_"):
        return "karpathy"
    if name.startswith("captions_"):
        return "coco"
    data = read_json(path)
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
    if coco_candidates(path):
        return "coco"
    if any(p.is_file() for p in path.glob("dataset_*.json")):
        return "karpathy"
    if any(flickr_text_files(path)):
        return "flickr8k"
    if (path / "captions.csv").is_file() or (path / "captions.jsonl").is_file():
        return "folder"
    raise DatasetError(f"Could not tell the dataset format of folder {path}: looked for {_LOOKED_FOR}. "
                       f"Pass --format or point at the caption file.")
