"""MS-COCO captions reader: `annotations/captions_{train,val,test}*.json` beside image folders named after the
file's tag (`train2014/`) or the split (`train/`); also the synthetic shapes dataset (which adds `objects`)."""

from __future__ import annotations

from pathlib import Path

from .reading import ImageLocator, LineSkips, RawSplit, ReadResult, read_json
from .records import DatasetError


def coco_candidates(folder: Path) -> list[Path]:
    found = []
    for directory in (folder / "annotations", folder):
        if directory.is_dir():
            found += sorted(p for p in directory.glob("captions_*.json") if p.is_file())
    return found


def split_of_name(name: str) -> str | None:
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
        return {split_of_name(path.name) or "*": [path]}
    files: dict[str, list[Path]] = {}
    for candidate in coco_candidates(path):
        split = split_of_name(candidate.name)
        if split is not None:
            files.setdefault(split, []).append(candidate)
    return files


def read_coco(path: Path, wanted: set[str], image_root: Path | None, check_images: bool) -> ReadResult:
    files = _coco_files(path)
    if "*" in files:  # a single json that names no split serves whichever split is asked for
        files = {split: files["*"] for split in wanted}
    if not files:
        raise DatasetError(f"No COCO caption files in {path}: expected annotations/captions_train*.json, "
                           f"captions_val*.json or captions_test*.json.")
    result = ReadResult({}, sorted(files))
    for split in sorted(wanted & set(files)):
        if len(files[split]) > 1:
            names = ", ".join(str(p) for p in files[split])
            raise DatasetError(f"Several COCO caption files match split {split!r}: {names}; pass the one you "
                               f"want as the dataset path.")
        result.splits[split] = _read_coco_file(files[split][0], split, image_root, check_images)
    return result


def _read_coco_file(json_path: Path, split: str, image_root: Path | None, check_images: bool) -> RawSplit:
    data = read_json(json_path)
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
    locator = ImageLocator(roots, probe=check_images)

    skips = LineSkips(json_path.name)
    raw = RawSplit(resolve=check_images)
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
