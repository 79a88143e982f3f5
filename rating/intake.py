"""Bringing captions into an evaluation set: caption its images with zoo models, import a captions file made
anywhere, or bring in one split of a caption dataset with its reference captions.

    new_pairs(store, name, image_hashes, model_names)  -> the (image, model) pairs with no caption yet
    caption_into_set(store, name, models, images, ...) -> CaptionRun (captioned, saved, kept, problems)
    import_captions_file(store, name, file, folder)    -> ImportRun (captions, ratings, gold, references, problems)
    import_dataset_split(store, name, dataset, split)  -> DatasetImport (a split's images with their references)
    image_id_hash(image_id)                            -> the id of an image known only by its name in a file

A pair (image, model) the set already has a caption for is kept, never regenerated, so a caption someone has
rated never changes under them. The images themselves (hashing, display copies) are `rating.images`.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from captioning.generation import get_settings
from captioning.images import ImageLoadError
from captioning.pipeline import caption_images
from captioning.preprocessing import needed_side
from captioning.zoo import ZooModel
from rating.grid import natural_key
from rating.images import DISPLAY_SIDE, AddedImage, add_image, content_hash_or_none
from rating.imports import read_captions_file
from rating.sets import DEFAULT_PRESET
from rating.store import EvaluationSetNotFoundError, RatingStore
from rating.validation import DEFAULT_SCALE, scale_text, validate_name

CAPTION_BATCH = 8  # images read and captioned at a time: bounds memory however many photos come in one go

# CSV columns that are per caption, not decoding settings, so they are not copied into `decoding`.
IMPORT_SKIP_COLUMNS = {"image_id", "model_name", "caption", "image_path", "weights_hash", "score", "model_score",
                       "caption_index", "gold_score", "rater", "reference"}

ImageSources = Sequence[tuple[str | os.PathLike, str]]  # (path of the file, name to show and store)
Progress = Callable[[int, int], None]  # progress(done, total), counted in captions


def new_pairs(store: RatingStore, name: str, image_hashes: Iterable[str], model_names: Iterable[str]
              ) -> list[tuple[str, str]]:
    """The (image hash, model name) pairs the set has no caption for yet, image by image, then model by model."""
    existing = {(c["image_hash"], c["model_name"]) for c in store.get_captions(name)}
    models = list(model_names)
    return [(h, m) for h in dict.fromkeys(image_hashes) for m in models if (h, m) not in existing]


def one_line(caption: str) -> str:
    """A caption as one line: runs of whitespace (line breaks, tabs, form feeds) become one space.

    A caption is a sentence; a stray carriage return from a half-trained model would otherwise split a
    row of the CSV export in two for many readers.
    """
    return " ".join(caption.split())


@dataclass
class CaptionRun:
    """What caption_into_set did."""

    set_name: str
    preset: str  # the set's own preset, which is what was used
    models: list[str]
    image_hashes: list[str] = field(default_factory=list)  # distinct readable images, in the order given
    saved: int = 0  # new captions written
    problems: list[str] = field(default_factory=list)  # one message per file that could not be used

    @property
    def images(self) -> int:
        return len(self.image_hashes)

    @property
    def kept(self) -> int:
        """Pairs that already had a caption in the set, left as they were."""
        return self.images * len(self.models) - self.saved


def caption_into_set(store: RatingStore, set_name: str, models: Sequence[ZooModel], images: ImageSources,
                     preset: str | None = None, *, progress: Progress | None = None,
                     batch_size: int = CAPTION_BATCH, image_dir: str | os.PathLike | None = None) -> CaptionRun:
    """Caption every image with every model and save the new captions in the set `set_name` (which must exist).

    images: (path, name) pairs; the name is what the grid and the exports show. The same picture given twice
        (same bytes) is one image. A file that cannot be read becomes a message in `problems`; the rest go on.
    preset: used for a set that has none stored; a set's stored preset always wins, so that all of its
        captions are made the same way (CaptionRun.preset says which was used).
    progress(done, total): called as the work advances, in captions; ends with done == total.
    image_dir: where the display copies go (None: none are written).

    A pair (image, model) the set already has a caption for is kept, never regenerated, so adding a model or
    more images only does the new work and never changes a caption someone has rated. Images are read
    `batch_size` at a time, and each picture's full-size pixels are let go once its display copy exists and
    its batch is captioned, so memory stays bounded however many photos come in one call.
    """
    if not models:
        raise ValueError("caption_into_set needs at least one model; load zoo entries with ModelCache.get")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    info = store.get_set(set_name)
    run = CaptionRun(set_name=info["name"], preset=info["preset"] or preset or DEFAULT_PRESET,
                     models=[m.name for m in models])
    settings = get_settings(run.preset)
    sources = list(images)
    total = len(sources) * len(models)
    report = progress or (lambda done, total: None)
    existing = {(c["image_hash"], c["model_name"]) for c in store.get_captions(run.set_name)}
    # Decode each picture only as large as the models and the display copy need (None: some model needs it all).
    min_side = needed_side(models, display_side=DISPLAY_SIDE if image_dir is not None else None)
    seen: set[str] = set()
    report(0, total)
    for first in range(0, len(sources), batch_size):
        batch_sources = sources[first:first + batch_size]
        before = first * len(models)
        todo: list[AddedImage] = []  # this batch's new pictures that still lack a caption from some model
        for path, name in batch_sources:
            content_hash = content_hash_or_none(path)
            if content_hash is not None and content_hash in seen:
                continue  # the same picture twice: no second decode
            try:
                added = add_image(store, path, name, image_dir, content_hash=content_hash, min_side=min_side)
            except (ImageLoadError, OSError) as e:
                run.problems.append(str(e))
                continue
            seen.add(added.content_hash)
            run.image_hashes.append(added.content_hash)
            if all((added.content_hash, m.name) in existing for m in models):
                added.image = None  # nothing to caption: the display copy was all it was needed for
            else:
                todo.append(added)
        todo_models = [m for m in models if any((i.content_hash, m.name) not in existing for i in todo)]
        if todo:
            steps_here = len(batch_sources) * len(models)

            def step(done: int, steps: int, before: int = before, steps_here: int = steps_here) -> None:
                report(before + done * steps_here // max(1, steps), total)

            results = caption_images(todo_models, [i.image for i in todo], names=[i.content_hash for i in todo],
                                     settings=settings, batch_size=batch_size, progress=step)
            for i in todo:
                i.image = None  # the batch is captioned: let its full-size pixels go
            for r in results:
                if (r.image_name, r.model_name) not in existing:
                    store.save_caption(run.set_name, r.image_name, r.model_name, one_line(r.caption),
                                       weights_hash=r.weights_hash, decoding=r.settings)
                    existing.add((r.image_name, r.model_name))
                    run.saved += 1
        report(min(total, (first + len(batch_sources)) * len(models)), total)
    return run


@dataclass
class ImportRun:
    """What import_captions_file did. Importing the same file again saves nothing new: every count but
    `unchanged` and `ratings_unchanged` is then 0."""

    set_name: str
    saved: int  # captions written (new, or changed since the last import)
    images: int  # distinct images the file's imported captions belong to
    problems: list[str]  # images named in the file but not matched among those given, or unreadable
    message: str  # how the file was read (separator, encoding or sheet, skipped rows...), one line
    unchanged: int = 0  # captions the set already had exactly as the file gives them
    without_image: int = 0  # captions kept with no picture (image not given, or its name not matched)
    unmatched_images: list[str] = field(default_factory=list)  # image ids no given file matched
    ratings_saved: int = 0  # scores written (new, or changed)
    ratings_unchanged: int = 0  # scores the set already had
    invalid_scores: list[str] = field(default_factory=list)  # "row 7: score '3' is not 0, 1 or 2", left out
    gold_saved: int = 0  # known scores written or changed
    references_saved: int = 0  # reference captions added
    attached: int = 0  # captions, scores and references of images first imported without their file, now on it

    @property
    def imported(self) -> int:
        """Captions of the file that are now in the set (written now or already there)."""
        return self.saved + self.unchanged


def image_id_hash(image_id: str) -> str:
    """The stable id of an image known only by its name in an imported file: the sha256 of "id:" and the name
    (Unicode NFC, stripped, case folded, forward slashes), so the same name is the same image on every import
    and can never equal the content hash of a file."""
    name = unicodedata.normalize("NFC", image_id).strip().replace("\\", "/").casefold()
    return hashlib.sha256(f"id:{name}".encode()).hexdigest()


def _plain_value(text: str) -> Any:
    """'5' -> 5, '0.55' -> 0.55, 'true' -> True, anything else stays text (CSV cells are all text)."""
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if re.fullmatch(r"-?\d*\.\d+(e-?\d+)?", text, flags=re.I):
        return float(text)
    return {"true": True, "false": False}.get(text.lower(), text)


def import_captions_file(store: RatingStore, set_name: str, csv_path: str | os.PathLike,
                         image_folder: str | os.PathLike | None = None, *, image_dir: str | os.PathLike | None = None,
                         source_name: str | None = None, rater: str | None = None,
                         sheet: str | None = None, scale: tuple[int, int] | None = None,
                         only_rater: str | None = None) -> ImportRun:
    """Read a captions CSV or XLSX workbook (`image_id, model_name, caption`, see rating.imports) and save its
    captions, with the images it names from `image_folder` (optional), into the existing set `set_name`.

    Other columns become the captions' decoding settings, plus `source: imported from <file name>`
    (`source_name`, default the file's name). A caption whose image is not given (no folder, or no file there
    matches its name) is kept under `image_id_hash(image_id)`, with its name and no picture; unmatched names
    are listed in `problems` and `unmatched_images`. Captions whose image file is unreadable are skipped and
    listed in `problems`.

    A score column saves the scores as ratings by the file's `rater` column, else by `rater`; a file with
    scores and no rater anywhere is refused (ValueError) before anything is saved. Invalid scores are listed
    in `invalid_scores` and left out. `gold_score` and `reference` columns are stored too (RatingStore.
    gold_scores, RatingStore.references). Nothing already in the set as the file gives it is written again.
    Scores are checked against the set's score scale (0-2 unless the set was created with another); `scale`, when
    given, must be the set's (a new set is created with it by the caller: `rating.sets.open_set(scale=)`).
    `only_rater`: the file may hold scores of this rater alone (a signed-in rater importing their own scores);
    scores its rater column gives to anyone else are refused (ValueError) before anything is saved.
    Raises ValueError for a file without the required columns or an unknown sheet.
    """
    try:
        set_scale = store.set_scale(set_name)
    except EvaluationSetNotFoundError:
        set_scale = None  # the caller creates the set once the file is known to be importable
    if scale is not None and set_scale is not None and tuple(scale) != set_scale:
        raise ValueError(f"set {set_name!r} has the score scale {scale_text(set_scale)}, not {scale_text(scale)}; "
                         "import into a new set to use another scale")
    scale = tuple(scale) if scale is not None else set_scale or DEFAULT_SCALE
    # the file is read and checked before the set is looked up, so a front end may create the set only for a
    # file that will be imported (EvaluationSetNotFoundError comes after every mistake in the file itself)
    result = read_captions_file(csv_path, image_folder=image_folder, sheet=sheet, scale=scale)
    frame = result.captions
    default_rater = validate_name(rater, "rater name") if rater is not None and str(rater).strip() else None
    unnamed = result.ratings[result.ratings["rater"].isna()]
    if len(unnamed) and default_rater is None:
        raise ValueError(
            f"The file has {len(unnamed)} score(s) but no rater column, and no rater was given; pass the name of "
            "the person who gave these scores (rater=..., `--rater NAME` on the command line, or the rater name "
            "at the top of the app's page) and import again"
        )
    if only_rater is not None:
        others = sorted({str(r) for r in result.ratings["rater"].dropna()} - {validate_name(only_rater, "rater name")})
        if others:
            raise ValueError(f"The file has scores by {', '.join(others[:5])}; you may import only your own scores "
                             f"({only_rater}): the set's owner or an admin can import other raters' scores")
    set_name = store.get_set(set_name)["name"]
    run = ImportRun(set_name=set_name, saved=0, images=0, problems=[], message=result.message,
                    invalid_scores=list(result.invalid_scores))
    if image_folder is not None:
        run.unmatched_images = list(result.missing_images)
        run.problems += [f"Image '{i}' named in the file was not matched to any of the images given; its captions "
                         "are kept without a picture" for i in result.missing_images]
    paths = dict(zip(frame["image_id"], frame["image_path"])) if "image_path" in frame else {}
    hashes: dict[str, str] = {}
    for image_id in dict.fromkeys(frame["image_id"]):
        path = paths.get(image_id)
        if path is None:
            hashes[image_id] = image_id_hash(image_id)
            store.add_image_without_file(hashes[image_id], image_id)
            continue
        try:
            hashes[image_id] = add_image(store, path, Path(path).name, image_dir).content_hash
        except (ImageLoadError, OSError) as e:
            run.problems.append(str(e))
            continue
        # imported before by name only (no file then): its captions and scores now belong to the file's image
        moved, left = store.attach_file(set_name, image_id_hash(image_id), hashes[image_id])
        run.attached += moved
        if left:
            run.problems.append(f"Image '{image_id}' was imported before without its file and now with it; {left} "
                                "of its earlier captions or scores differ from the ones the file's image already "
                                "has, so both are kept")
    source = source_name or Path(csv_path).name
    existing = {(c["image_hash"], c["model_name"]): c for c in store.get_captions(set_name)}
    for record in frame.to_dict("records"):
        if record["image_id"] not in hashes:
            continue
        image_hash, model = hashes[record["image_id"]], record["model_name"]
        decoding = {k: _plain_value(str(v)) for k, v in record.items()
                    if k not in IMPORT_SKIP_COLUMNS and v not in (None, "")}
        decoding["source"] = f"imported from {source}"
        caption, weights = one_line(record["caption"]), record.get("weights_hash") or None
        if paths.get(record["image_id"]) is None:
            run.without_image += 1
        old = existing.get((image_hash, model))
        if old is not None and (old["caption"], old["model_weights_hash"], old["decoding"]) == (caption, weights, decoding):
            run.unchanged += 1
        else:
            store.save_caption(set_name, image_hash, model, caption, weights_hash=weights, decoding=decoding)
            run.saved += 1
        if record.get("gold_score"):
            run.gold_saved += store.set_gold_score(set_name, image_hash, model, int(record["gold_score"]))
    run.images = len({hashes[i] for i in frame["image_id"] if i in hashes})

    current = store.ratings(set_name)
    scores = {(r, h, m): int(s) for r, h, m, s in zip(current["rater"], current["image_hash"], current["model_name"],
                                                       current["score"])}
    for rating in result.ratings.to_dict("records"):
        if rating["image_id"] not in hashes:
            continue  # its image was unreadable, so its caption was not imported
        try:
            named = rating["rater"]
            named = named if isinstance(named, str) and named.strip() else None  # an empty cell: NaN or None
            who = validate_name(named, "rater name") if named is not None else default_rater
        except ValueError as e:
            run.invalid_scores.append(f"row {rating['row']}: {e}")
            continue
        key = (who, hashes[rating["image_id"]], rating["model_name"])
        if scores.get(key) == rating["score"]:
            run.ratings_unchanged += 1
        else:
            store.rate(set_name, who, key[1], key[2], rating["score"])
            run.ratings_saved += 1
    for image_id, references in result.references.items():
        if image_id in hashes:
            run.references_saved += store.add_references(set_name, hashes[image_id], references)
        elif image_id not in paths:  # an image with references only (no caption row): known by its name
            hashes[image_id] = image_id_hash(image_id)
            store.add_image_without_file(hashes[image_id], image_id)
            run.references_saved += store.add_references(set_name, hashes[image_id], references)
    return run


@dataclass
class DatasetImport:
    """What import_dataset_split did."""

    set_name: str
    split: str
    images: int  # images of the split now in the set (added now or already there)
    references_saved: int  # reference captions added (an import done before adds none)
    dataset_images: int  # images the split has
    captioned: CaptionRun | None = None  # when models were given
    problems: list[str] = field(default_factory=list)  # unreadable images, left out


def import_dataset_split(store: RatingStore, set_name: str, dataset: str | os.PathLike, split: str = "test", *,
                         format: str = "auto", limit: int | None = None, seed: int = 0,
                         models: Sequence[ZooModel] = (), preset: str | None = None,
                         image_dir: str | os.PathLike | None = None, progress: Progress | None = None) -> DatasetImport:
    """Bring one split of a caption dataset (COCO, Karpathy, Flickr8k or a captions folder: see
    `captioning.datasets`) into the existing set `set_name`: its images, each with the dataset's captions as
    its reference captions, so Results can set BLEU, CIDEr-D and BERTScore beside the raters' scores. With
    `models`, the images are captioned into the set too (`caption_into_set`: pairs already captioned are kept).

    limit: take that many images, drawn with `seed` from the split's sorted ids (the same draw every time).
    Raises captioning.datasets.DatasetError for a path or format that cannot be read, ValueError for a bad limit.
    """
    from captioning.datasets import load_dataset

    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of images, got {limit}")
    set_name = store.get_set(set_name)["name"]
    data = load_dataset(dataset, format=format, split=split)
    ids = sorted(data.image_paths, key=natural_key)
    if limit is not None and limit < len(ids):
        ids = sorted(random.Random(seed).sample(ids, limit), key=natural_key)
    run = DatasetImport(set_name=set_name, split=data.name, images=0, references_saved=0,
                        dataset_images=len(data.image_paths))
    sources = [(data.image_paths[i], i) for i in ids]
    hashes: dict[str, str] = {}
    if models:
        run.captioned = caption_into_set(store, set_name, models, sources, preset, progress=progress,
                                         image_dir=image_dir)
        run.problems += run.captioned.problems
    for path, image_id in sources:
        content_hash = content_hash_or_none(path)
        if content_hash is None:
            if not models:
                run.problems.append(f"{image_id}: the file is missing or unreadable; left out")
            continue
        if not models:  # caption_into_set has recorded it (and its display copy) otherwise
            try:
                add_image(store, path, image_id, image_dir, content_hash=content_hash)
            except (ImageLoadError, OSError) as e:
                run.problems.append(str(e))
                continue
        hashes[image_id] = content_hash
        run.references_saved += store.add_references(set_name, content_hash, data.references.get(image_id, []))
    run.images = len(set(hashes.values()))
    return run
