"""The synthetic "shapes" dataset (COCO format, with the objects drawn) and its object-level metric:
`write_shapes_dataset`, `caption_objects`, `object_accuracy`."""

from __future__ import annotations

import json
import random
import re
import sys
import time
from pathlib import Path

from captioning.datasets.reading import split_counts
from captioning.datasets.records import SPLITS, DatasetError

# ----------------------------------------------------------------------------------------------------
# Synthetic "shapes" dataset and its object-level metric
# ----------------------------------------------------------------------------------------------------


SHAPES = ("circle", "square", "triangle")
COLORS = {  # far apart in RGB and all clearly visible on a light background
    "red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220),
    "yellow": (235, 195, 0), "purple": (140, 50, 180), "orange": (245, 125, 20),
}
SIZES = {"small": 0.16, "large": 0.29}  # side/diameter as a share of the image side (a grid cell is 1/3)
_ROWS = ("top", "middle", "bottom")
_COLUMNS = ("left", "center", "right")
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
_SUPERSAMPLE = 4  # draw at 4x and downsample, for smooth edges at 64 px


def _position_word(row: int, column: int) -> str:
    """3x3 grid cell -> "top left", "top", "left", "center", ... ("middle"/"center" are left unsaid)."""
    if row == 1 and column == 1:
        return "center"
    if row == 1:
        return _COLUMNS[column]
    if column == 1:
        return _ROWS[row]
    return f"{_ROWS[row]} {_COLUMNS[column]}"


def _where(position: str) -> str:
    """Position word -> a phrase: "in the center", "on the left", "at the top", "in the top left corner"."""
    if position == "center":
        return "in the center"
    if position in ("left", "right"):
        return f"on the {position}"
    if position in ("top", "bottom"):
        return f"at the {position}"
    return f"in the {position} corner"


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _shape_captions(objects: list[dict], rng: random.Random) -> list[str]:
    """Five differently worded captions; every one names each object's size, colour and shape, always as an
    adjacent "size colour shape" phrase so that `object_accuracy` of the references is 1."""
    def phrase(obj: dict) -> str:
        return f"a {obj['size']} {obj['color']} {obj['shape']}"

    # Left to right (then top to bottom): the order of the first template.
    by_column = sorted(objects, key=lambda o: (o["_column"], o["_row"]))
    by_row = sorted(objects, key=lambda o: (o["_row"], o["_column"]))
    count = len(objects)
    shapes_word = "shape" if count == 1 else "shapes"
    captions = [_join([phrase(o) for o in by_column])]
    captions.append(f"{_NUMBER_WORDS[count]} {shapes_word}: " + _join([phrase(o) for o in by_row]))
    captions.append(_join([f"{phrase(o)} {_where(o['position'])}" for o in by_column]))
    if count == 1:
        captions.append(f"there is only {phrase(objects[0])} {_where(objects[0]['position'])}")
    elif count == 2:
        first, second = by_column
        if first["_column"] != second["_column"]:
            relation = "to the right of"
        else:
            first, second = by_row
            relation = "below"
        captions.append(f"there is {phrase(second)} {relation} {phrase(first)}")
    else:
        captions.append("three shapes on a light background: " + _join([phrase(o) for o in by_row[::-1]]))
    shuffled = list(objects)
    rng.shuffle(shuffled)
    lead = rng.choice(("a picture of", "an image with", "a drawing of", "a plain background with"))
    captions.append(f"{lead} " + _join([phrase(o) for o in shuffled]))
    return captions


def _draw_shapes(objects: list[dict], image_size: int, background: tuple[int, int, int]):
    from PIL import Image, ImageDraw

    scale = image_size * _SUPERSAMPLE
    canvas = Image.new("RGB", (scale, scale), background)
    draw = ImageDraw.Draw(canvas)
    for obj in objects:
        cx, cy, side = (v * _SUPERSAMPLE for v in obj["_box"])  # centre x, centre y, side in pixels
        half = side / 2
        color = COLORS[obj["color"]]
        if obj["shape"] == "circle":
            draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=color)
        elif obj["shape"] == "square":
            draw.rectangle([cx - half, cy - half, cx + half, cy + half], fill=color)
        else:  # triangle, pointing up, as wide as it is tall
            draw.polygon([(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)], fill=color)
    return canvas.resize((image_size, image_size), Image.Resampling.BOX)


def _random_objects(rng: random.Random, image_size: int) -> list[dict]:
    """1-3 objects in distinct cells of a 3x3 grid (so they never overlap), distinct (colour, shape) pairs."""
    count = rng.randint(1, 3)
    cells = rng.sample(range(9), count)
    pairs = rng.sample([(c, s) for c in COLORS for s in SHAPES], count)
    cell_side = image_size / 3
    objects = []
    for cell, (color, shape) in zip(cells, pairs):
        row, column = divmod(cell, 3)
        size = rng.choice(tuple(SIZES))
        side = SIZES[size] * image_size
        slack = max(0.0, (cell_side - side) / 2 - 1)  # jitter that keeps the shape inside its cell
        cx = (column + 0.5) * cell_side + rng.uniform(-slack, slack)
        cy = (row + 0.5) * cell_side + rng.uniform(-slack, slack)
        objects.append({"shape": shape, "color": color, "size": size, "position": _position_word(row, column),
                        "_row": row, "_column": column, "_box": (cx, cy, side)})
    return objects


def write_shapes_dataset(out_dir: str | Path, n: int, seed: int, image_size: int = 64,
                         splits: tuple[float, float, float] = (0.8, 0.1, 0.1), *, progress: bool = False) -> dict:
    """Write a synthetic COCO-format captions dataset of coloured shapes; deterministic for a seed.

    Layout: ``out_dir/annotations/captions_{train,val,test}.json`` and PNGs in ``out_dir/{train,val,test}/``.
    Each image shows 1-3 non-overlapping shapes (circle/square/triangle; six colours; small/large) on a
    light background and has five reference captions naming every object's size, colour and shape. Each
    COCO image entry also lists its ``objects`` ({"shape", "color", "size", "position"}) for
    `object_accuracy`. Returns a summary (counts per split, paths, seconds taken).
    """
    if not isinstance(n, int) or n < 1:
        raise DatasetError(f"n must be a positive number of images; got {n!r}.")
    if not isinstance(image_size, int) or image_size < 16:
        raise DatasetError(f"image_size must be an integer >= 16 pixels; got {image_size!r}.")
    if len(splits) != 3 or any(f < 0 for f in splits) or abs(sum(splits) - 1) > 1e-6:
        raise DatasetError(f"splits must be three non-negative fractions (train, val, test) summing to 1; "
                           f"got {tuple(splits)}.")
    started = time.perf_counter()
    out = Path(out_dir)
    counts = dict(zip(SPLITS, split_counts(n, tuple(splits))))
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        (out / split).mkdir(exist_ok=True)
        for stale in (out / split).glob("shapes_*.png"):  # images of an earlier, larger run
            stale.unlink()

    rng = random.Random(seed)
    image_id, annotation_id = 0, 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n, desc="shapes", unit="img", disable=not sys.stderr.isatty())
    annotation_paths = {}
    for split in SPLITS:
        images, annotations = [], []
        for _ in range(counts[split]):
            image_id += 1
            objects = _random_objects(rng, image_size)
            grey = rng.randint(228, 250)
            file_name = f"shapes_{image_id:06d}.png"
            _draw_shapes(objects, image_size, (grey, grey, grey)).save(out / split / file_name, format="PNG")
            for caption in _shape_captions(objects, rng):
                annotation_id += 1
                annotations.append({"id": annotation_id, "image_id": image_id, "caption": caption})
            public = [{k: v for k, v in o.items() if not k.startswith("_")} for o in objects]
            images.append({"id": image_id, "file_name": file_name, "width": image_size, "height": image_size,
                           "objects": public})
            if bar is not None:
                bar.update()
        document = {
            "info": {"description": "Caption Zoo synthetic shapes dataset", "seed": seed, "split": split,
                     "image_size": image_size},
            "images": images,
            "annotations": annotations,
        }
        annotation_paths[split] = out / "annotations" / f"captions_{split}.json"
        annotation_paths[split].write_text(json.dumps(document), encoding="utf-8")
    if bar is not None:
        bar.close()
    return {
        "out_dir": str(out),
        "n": n,
        "seed": seed,
        "image_size": image_size,
        "splits": counts,
        "captions": annotation_id,
        "annotations": {split: str(p) for split, p in annotation_paths.items()},
        "seconds": round(time.perf_counter() - started, 2),
    }


_SHAPE_FORMS = {form: shape for shape in SHAPES for form in (shape, shape + "s")}


def caption_objects(caption: str) -> set[tuple[str, str]]:
    """The (colour, shape) pairs a caption names: a colour word followed, within the next two words, by a
    shape word ("red circle", "red large circle", "two red circles"); another colour word in between ends
    the search ("red and blue squares" names only the blue squares)."""
    words = re.findall(r"[a-z]+", caption.lower())
    pairs = set()
    for i, word in enumerate(words):
        if word not in COLORS:
            continue
        for following in words[i + 1:i + 3]:
            if following in COLORS:
                break
            if following in _SHAPE_FORMS:
                pairs.add((word, _SHAPE_FORMS[following]))
                break
    return pairs


def object_accuracy(captions: dict[str, str], objects: dict[str, list[dict]]) -> dict[str, float]:
    """Share of images whose caption names the colour and shape of every object present and no absent one.

    `captions` maps image_id -> one generated caption; `objects` maps image_id -> the objects drawn
    (`Split.objects` of the shapes dataset). Counts of objects are ignored ("two red circles" = "a red circle").
    `by_objects` breaks the accuracy down by how many objects the image holds: a captioner that blends the
    objects of a busy image into one description does well on one object and badly on three.
    """
    unknown = [image_id for image_id in captions if image_id not in objects]
    if unknown:
        raise ValueError(f"{len(unknown)} caption(s) are for images without objects, e.g. {unknown[:3]}; pass "
                         f"the objects of the same split (Split.objects).")
    by_count: dict[int, list[int]] = {}  # objects in the image -> [right, images]
    for image_id, caption in captions.items():
        present = {(str(o["color"]), str(o["shape"])) for o in objects[image_id]}
        tally = by_count.setdefault(len(objects[image_id]), [0, 0])
        tally[0] += caption_objects(caption) == present
        tally[1] += 1
    correct, total = sum(right for right, _ in by_count.values()), len(captions)
    return {"object_accuracy": correct / total if total else 0.0, "images": total,
            "by_objects": {n: right / images for n, (right, images) in sorted(by_count.items())}}
