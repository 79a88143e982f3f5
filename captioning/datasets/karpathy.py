"""Karpathy split files reader: `dataset_{coco,flickr8k,flickr30k}.json`; `restval` joins train."""

from __future__ import annotations

from pathlib import Path

from .reading import ImageLocator, LineSkips, RawSplit, ReadResult, read_json
from .records import SPLIT_ALIASES, DatasetError


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


def read_karpathy(path: Path, wanted: set[str], image_root: Path | None, check_images: bool) -> ReadResult:
    json_path = _karpathy_file(path)
    data = read_json(json_path)
    if not (isinstance(data, dict) and isinstance(data.get("images"), list)):
        raise DatasetError(f"{json_path} is not a Karpathy split file: it needs a top-level 'images' list.")
    root = image_root if image_root is not None else json_path.parent
    # COCO entries carry "filepath" (train2014/val2014) below the root; Flickr images sit in one folder
    # whose name depends on where the archive came from.
    coco_locator = ImageLocator([root, root / "images"], probe=check_images)
    flickr_locator = ImageLocator([root, root / "Images", root / "images", root / "Flicker8k_Dataset",
                                    root / "Flickr8k_Dataset", root / "flickr30k-images"], probe=check_images)
    skips = LineSkips(json_path.name)
    splits: dict[str, RawSplit] = {}
    available: set[str] = set()
    for index, image in enumerate(data["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("filename"), str):
            skips.skip(f"images[{index}]", "entry without a 'filename'")
            continue
        split = SPLIT_ALIASES.get(str(image.get("split", "")).lower())
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
        raw = splits.setdefault(split, RawSplit(resolve=check_images))
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
    return ReadResult(splits, sorted(available))
