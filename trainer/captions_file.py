"""Score captions made anywhere against a split (`python -m trainer.evaluate --captions FILE`).

Files read:
- our CSV (`python -m captioning caption` output) and a peer project's ``image_id, model_name, caption`` CSV or
  workbook: read by the rating import's reader (`rating.imports.read_captions_file`: separators, encodings,
  header aliases, the first caption of each (image, model)); one score block per model;
- a COCO results JSON, ``[{"image_id": 42, "caption": "..."}]`` (what `python -m captioning caption --out
  results.json` writes; an optional ``model_name`` key splits it into models, else the file's stem names it).

Image ids are matched to the split's images by the rating import's rules (`rating.imports.resolve_image`):
the split's own id (a COCO id, ``"42"``), else the file name in any case or Unicode form, with or without its
extension, else the one image with the same loose name. Captions naming no image of the split are counted and
listed, never scored.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rating.imports import image_index, read_captions_file, resolve_image

from .data import Split


@dataclass
class MatchedCaptions:
    """One model's captions keyed by the split's image ids, and what could not be matched."""

    model: str
    captions: dict[str, str]
    unmatched: list[str] = field(default_factory=list)  # ids in the file that name no image of the split
    repeated: list[str] = field(default_factory=list)  # ids naming an image another id already named


def read_captions(path: str | Path) -> dict[str, dict[str, str]]:
    """model name -> {image id as written in the file -> caption}, from a captions CSV/XLSX or COCO results JSON.
    Raises ValueError saying what the file holds and what is expected."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"captions file {path} does not exist; give a CSV from `python -m captioning caption` "
                         "or a COCO results JSON")
    if path.suffix.lower() == ".json":
        return _read_results_json(path)
    frame = read_captions_file(path).captions
    models: dict[str, dict[str, str]] = {}
    for image_id, model, caption in zip(frame["image_id"], frame["model_name"], frame["caption"]):
        models.setdefault(str(model), {})[str(image_id)] = str(caption)
    if not models:
        raise ValueError(f"{path} has no captions (no row has an image id, a model name and a caption)")
    return models


def _read_results_json(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); a COCO results file is "
                         '[{"image_id": ..., "caption": "..."}, ...]') from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path} holds {type(data).__name__ if data else 'nothing'}; a COCO results file is a "
                         'non-empty list [{"image_id": ..., "caption": "..."}, ...]')
    models: dict[str, dict[str, str]] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "image_id" not in item or not isinstance(item.get("caption"), str):
            raise ValueError(f"{path}: entry [{i}] is {json.dumps(item)[:80]}; every entry needs an image_id and "
                             "a caption string")
        model = str(item.get("model_name") or path.stem)
        models.setdefault(model, {}).setdefault(str(item["image_id"]), item["caption"])  # COCO: first one per image
    return models


def match_to_split(model: str, captions: dict[str, str], split: Split) -> MatchedCaptions:
    """The captions keyed by the split's image ids (see the module docstring for the rules)."""
    index = image_index(split.image_paths.values())
    id_of_path = {path: image_id for image_id, path in split.image_paths.items()}
    matched = MatchedCaptions(model, {})
    for raw_id, caption in captions.items():
        image_id = raw_id if raw_id in split.image_paths else id_of_path.get(resolve_image(raw_id, None, index))
        if image_id is None:
            matched.unmatched.append(raw_id)
        elif image_id in matched.captions:
            matched.repeated.append(raw_id)
        else:
            matched.captions[image_id] = caption
    return matched


def split_fingerprint(split: Split) -> str:
    """A short hash of what a score depends on in a split: its image ids, file names and reference captions;
    equal fingerprints mean two numbers were computed on the same test set."""
    h = hashlib.sha256()
    for image_id in sorted(split.references):
        path = split.image_paths.get(image_id)
        h.update(json.dumps([image_id, path.name if path else None, split.references[image_id]]).encode())
    return h.hexdigest()[:16]


def _examples(values: list[str], count: int = 3) -> str:
    return ", ".join(values[:count]) + (" ..." if len(values) > count else "") if values else "none"


def _split_examples(split: Split) -> str:
    """A few of the split's ids and file names, for a message about ids that do not match."""
    if not split.image_paths:
        return f"split {split.name!r} has no images"
    ids = sorted(split.image_paths)
    files = [split.image_paths[i].name for i in ids[:3]]
    return (f"split {split.name!r} has {len(ids)} images (ids like {_examples(ids)}; files like "
            f"{_examples(files)})")


def describe_matching(matched: MatchedCaptions, split: Split) -> list[str]:
    """Lines for the user about what was left out: unmatched ids, repeats, split images without a caption."""
    lines = []
    total = len(matched.captions) + len(matched.unmatched) + len(matched.repeated)
    if matched.unmatched:
        lines.append(f"{matched.model}: {len(matched.captions)} of {total} image ids matched; "
                     f"{len(matched.unmatched)} name no image of split {split.name!r} and are not scored (e.g. "
                     f"{_examples(matched.unmatched, 5)}); {_split_examples(split)}")
    if matched.repeated:
        lines.append(f"{matched.model}: {len(matched.repeated)} id(s) name an image already captioned; the first "
                     f"caption is scored: {', '.join(matched.repeated[:5])}")
    left = len(split.image_paths) - len(matched.captions)
    if matched.captions and left:
        lines.append(f"{matched.model}: {left} of the split's {len(split.image_paths)} images have no caption; "
                     "scores cover the captioned ones only")
    return lines


def check_matched(matched: MatchedCaptions, split: Split, source: str) -> None:
    """ValueError when none of a model's captions names an image of the split, with examples from both sides."""
    if not matched.captions:
        raise ValueError(f"0 of the {len(matched.unmatched)} image ids of model {matched.model!r} in {source} "
                         f"(e.g. {_examples(matched.unmatched)}) name an image of the annotations; "
                         f"{_split_examples(split)}. Pass the annotation file and --split the captions were made "
                         "for")


def result_block(matched: MatchedCaptions, scores: dict[str, Any]) -> dict[str, Any]:
    return {"metrics": scores, "captioned_images": len(matched.captions), "unmatched_ids": matched.unmatched,
            "repeated_ids": matched.repeated}
