"""The evaluation-set workflow: open a set, add images, caption them into it, import captions, page the grid.

Every front end calls these plain functions: the Gradio app (`app.py`), and later a REST server and a
`python -m rating` command line. They take a `RatingStore` and plain values, return dataclasses, report
user mistakes as ValueError (ImageLoadError for unreadable images, FileNotFoundError for missing files) and
never import a UI.

    open_set(store, name, rater, blind, preset)        -> SetInfo (an existing set keeps its blind flag/preset)
    may_see_names(store, name, who, admins)            -> whether `who` may see a blind set's model names
    may_manage(store, name, who, admins)               -> whether `who` may mark gold scores (owner, admins)
    blind_captions(store, name) / column_model(...)    -> a blind set's captions by column label, and back
    set_summary(store, name, rater)                    -> SetSummary (images, captions, rated by this rater)
    new_pairs(store, name, image_hashes, model_names)  -> the (image, model) pairs with no caption yet
    add_image(store, path, name, image_dir)            -> AddedImage (loaded, hashed, display copy, recorded)
    caption_into_set(store, name, models, images, ...) -> CaptionRun (captioned, saved, kept, problems)
    import_captions_file(store, name, file, folder)    -> ImportRun (captions, ratings, gold, references, problems)
    import_dataset_split(store, name, dataset, split)  -> DatasetImport (a split's images with their references)
    mark_gold(store, name, rater)                      -> a rater's scores become the captions' gold scores
    grid_page(store, name, rater, page, ...)           -> GridView (one page of the rating grid)
    column_order(name, image_hash, models)             -> blind mode's per-image column order
    set_results(store, name)                           -> SetResults (coverage, raters, gold, metrics vs humans)
    results_table(summary) / rater_results_table(raters) -> the tables as the app and the CLI show them
    export_set(store, name, folder)                    -> the CSV and XLSX files

Images: every picture is named by the sha256 of its file's bytes (`image_content_hash`), so the same photo
uploaded twice, or under two names, is one image. Its display copy is an upright PNG of at most
DISPLAY_SIDE pixels named `<hash>.png` in an image folder the caller passes (the app serves that folder).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from captioning.generation import get_settings
from captioning.images import ImageLoadError, image_content_hash, image_size, load_image, prepare_for_display
from captioning.pipeline import caption_images
from captioning.preprocessing import needed_side
from captioning.zoo import ZooModel
from rating.exports import export_csv, export_xlsx
from rating.imports import read_captions_file
from rating.results import agreement, coverage_summary, rater_table
from rating.store import EvaluationSetNotFoundError, RatingStore
from rating.validation import validate_name

DEFAULT_PRESET = "consistent"
# Where display copies go unless a front end says otherwise: the app serves this folder and the CLI's import
# writes into it, so images imported either way show in the grid.
DEFAULT_DISPLAY_DIR = Path(tempfile.gettempdir()) / "caption-zoo" / "images"
PAGE_SIZE = 10  # image rows per page of the rating grid: ~10 x (1 + 2 per model) widgets keeps a page responsive
CAPTION_BATCH = 8  # images read and captioned at a time: bounds memory however many photos come in one go
DISPLAY_SIDE = 640  # longest side of the display copies, pixels
MIN_DISPLAY_SIDE = 256  # smaller images are enlarged for display (whole factor, nearest neighbour)

# CSV columns that are per caption, not decoding settings, so they are not copied into `decoding`.
IMPORT_SKIP_COLUMNS = {"image_id", "model_name", "caption", "image_path", "weights_hash", "score", "model_score",
                       "caption_index", "gold_score", "rater", "reference"}

ImageSources = Sequence[tuple[str | os.PathLike, str]]  # (path of the file, name to show and store)
Progress = Callable[[int, int], None]  # progress(done, total), counted in captions


# ----------------------------------------------------------------------------------------------------------
# Sets


@dataclass(frozen=True)
class SetInfo:
    """An evaluation set as stored, and who opened it."""

    name: str
    rater: str
    blind: bool
    preset: str
    settings: dict[str, Any]
    created_at: str
    owner: str | None = None  # who created the set (None for a set from a database older than owners)


@dataclass(frozen=True)
class SetSummary:
    """Counts for a set's status line."""

    name: str
    blind: bool
    preset: str
    images: int
    captions: int
    rated: int  # captions this rater has scored


def open_set(store: RatingStore, name: str, rater: str, blind: bool = False, preset: str | None = None, *,
             owner: str | None = None) -> SetInfo:
    """Open the evaluation set `name` for `rater`, creating it (blind or not, with `preset`) if it is new.

    An existing set keeps the blind flag, preset and owner it was created with, so every rater rates under
    the same conditions; the returned SetInfo shows the stored values. A new set's owner is `owner` (the
    app passes the logged-in user when it has logins), else `rater`. Raises ValueError for a bad name or an
    unknown preset.
    """
    rater = validate_name(rater, "rater name")
    name = validate_name(name, "evaluation set name")
    preset = preset or DEFAULT_PRESET
    settings = get_settings(preset).to_dict()  # ValueError naming the presets for an unknown one
    info = store.create_or_open_set(name, blind=bool(blind), preset=preset, settings=settings,
                                    owner=owner or rater)
    return SetInfo(name=info["name"], rater=rater, blind=info["blind"], preset=info["preset"] or DEFAULT_PRESET,
                   settings=info["settings"], created_at=info["created_at"], owner=info["owner"])


def may_see_names(store: RatingStore, set_name: str, who: str | None, admins: Iterable[str] = ()) -> bool:
    """The one rule for a blind set's model names (grid reveal, results, exports, API): True for a set that
    is not blind; for a blind set only when `who` is its owner or one of `admins`. A set from a database
    older than owners has no owner, so only an admin may see its names. Raises for an unknown set."""
    info = store.get_set(set_name)
    if not info["blind"]:
        return True
    if not who:
        return False
    return who in set(admins) or (info["owner"] is not None and who == info["owner"])


def may_manage(store: RatingStore, set_name: str, who: str | None, admins: Iterable[str] = ()) -> bool:
    """Who may change what a set's results rest on (e.g. mark gold scores): its owner and the `admins`,
    blind or not. Raises for an unknown set."""
    owner = store.get_set(set_name)["owner"]
    return bool(who) and (who in set(admins) or (owner is not None and who == owner))


def names_refused(set_name: str) -> str:
    """What a rater who is not the owner is told when they ask for a blind set's results or names."""
    return (f"Results of blind set '{set_name}' are for its owner; ask them, or start the app with "
            "--admin YOUR_NAME")


def column_label(index: int) -> str:
    """A blind column's label: "Caption A", "Caption B", ..."""
    return f"Caption {chr(ord('A') + index)}"


def blind_captions(store: RatingStore, set_name: str) -> list[dict[str, Any]]:
    """Every caption of the set with `column` ("Caption A"... as the grid shows it, in `column_order`)
    instead of the model name, for whoever may not see a blind set's names."""
    captions = store.get_captions(set_name)
    by_image: dict[str, list[str]] = {}
    for c in captions:
        by_image.setdefault(c["image_hash"], []).append(c["model_name"])
    labels = {(h, m): column_label(i) for h, models in by_image.items()
              for i, m in enumerate(column_order(set_name, h, models))}
    return [{"image_hash": c["image_hash"], "file_name": c["file_name"],
             "column": labels[(c["image_hash"], c["model_name"])], "caption": c["caption"]} for c in captions]


def column_model(store: RatingStore, set_name: str, image_hash: str, column: str) -> str:
    """The model behind a blind column label ("Caption B") of one image; ValueError (naming the labels the
    image has, never a model) for a label the image does not have."""
    models = [c["model_name"] for c in store.get_captions(set_name) if c["image_hash"] == image_hash]
    order = column_order(set_name, image_hash, models)
    labels = [column_label(i) for i in range(len(order))]
    if column not in labels:
        raise ValueError(f"Image {image_hash!r} of blind set {set_name!r} has no column {column!r}; its columns "
                         f"are {labels} (use the `column` the captions endpoint gives)")
    return order[labels.index(column)]


def mark_gold(store: RatingStore, set_name: str, rater: str,
              pairs: Iterable[tuple[str, str]] | None = None) -> int:
    """Make `rater`'s scores the known (gold) scores of the captions they rated in `set_name`: every caption
    they rated, or only the given (image_hash, model_name) pairs. An expert rates a few captions, their
    scores become gold, and Results show each other rater's agreement with them; raters are not told which
    captions are gold. Returns how many captions' gold scores changed (marking again changes nothing).
    A pair the rater has not rated is refused, naming it."""
    rater = validate_name(rater, "rater name")
    ratings = store.ratings(set_name, rater)
    scores = {(h, m): int(score) for h, m, score in zip(ratings["image_hash"], ratings["model_name"],
                                                        ratings["score"])}
    if not scores:
        raise ValueError(f"{rater!r} has rated nothing in set {set_name!r}; rate some captions first "
                         f"(raters so far: {', '.join(store.raters(set_name)) or 'none'})")
    wanted = list(scores) if pairs is None else [tuple(pair) for pair in pairs]
    unrated = [pair for pair in wanted if pair not in scores]
    if unrated:
        raise ValueError(f"{rater!r} has not rated {len(unrated)} of the given captions (e.g. image "
                         f"{unrated[0][0][:12]}, model {unrated[0][1]}); only rated captions can become gold")
    return sum(store.set_gold_score(set_name, h, m, scores[(h, m)]) for h, m in wanted)


@contextmanager
def undo_new_set_on_failure(store: RatingStore, name: Any) -> Iterator[None]:
    """Run an action that may create the set `name` (captioning into it, importing into it): if the action
    fails and the set did not exist before it, the set is removed again, provided nothing was saved in it, so
    a failed first attempt leaves no empty set behind. An invalid name is left for the action to refuse."""
    try:
        store.get_set(name)  # one indexed look-up (list_sets would count every set's captions and ratings)
        existed = True
    except EvaluationSetNotFoundError:
        existed = False
    except ValueError:
        existed = True  # an invalid name: nothing can be created under it
    try:
        yield
    except BaseException:
        if not existed:
            store.delete_set_if_empty(name)
        raise


def set_summary(store: RatingStore, name: str, rater: str) -> SetSummary:
    """How many images and captions the set has, and how many of the captions `rater` has rated."""
    info = store.get_set(name)
    captions = store.get_captions(name)
    unrated = len(store.unrated_captions(name, rater))
    return SetSummary(name=info["name"], blind=info["blind"], preset=info["preset"] or DEFAULT_PRESET,
                      images=len({c["image_hash"] for c in captions}), captions=len(captions),
                      rated=len(captions) - unrated)


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


# ----------------------------------------------------------------------------------------------------------
# Images and their display copies


@dataclass
class AddedImage:
    """An image recorded in the store: width x height of the photo itself; `image` is the upright RGB picture
    as decoded for this run (reduced to the side the models and the display need); drop it once used."""

    content_hash: str
    name: str
    width: int
    height: int
    image: Image.Image | None = None


def display_path(image_dir: str | os.PathLike, content_hash: str) -> Path:
    """Where the display copy of the image with this content hash lives (it may not exist)."""
    return Path(image_dir) / f"{content_hash}.png"


def display_copy(image: Image.Image) -> Image.Image:
    """What the grid shows: at most DISPLAY_SIDE pixels; small images (e.g. 64x64 shapes) are enlarged by a
    whole factor with nearest-neighbour, so that they are big enough to judge and keep their exact pixels."""
    display = prepare_for_display(image, DISPLAY_SIDE)
    longest = max(display.size)
    if longest < MIN_DISPLAY_SIDE:
        factor = -(-MIN_DISPLAY_SIDE // longest)
        display = display.resize((display.width * factor, display.height * factor), Image.Resampling.NEAREST)
    return display


def save_display_copy(image: Image.Image, image_dir: str | os.PathLike, content_hash: str) -> Path:
    """Write the display copy of `image` as `<hash>.png` in `image_dir` unless it is there already."""
    target = display_path(image_dir, content_hash)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        # Written beside the target and renamed: a concurrent reader never sees half a PNG.
        partial_file = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}")
        try:
            display_copy(image).save(partial_file, format="PNG")
            os.replace(partial_file, target)
        finally:
            partial_file.unlink(missing_ok=True)
    return target


def read_image(path: str | os.PathLike, name: str, min_side: int | None = None) -> Image.Image:
    """The one place the workflow decodes a picture: upright RGB, its shorter side reduced to `min_side`.

    Everything downstream needs far fewer pixels than a phone photo has (the models' input size, DISPLAY_SIDE
    for the grid), so the picture is decoded at that size (JPEG draft mode, then an exact resize): eight
    50-megapixel photos then cost megabytes, not gigabytes. None = full size.
    """
    return load_image(path, name=name, min_side=min_side)


def add_image(store: RatingStore, path: str | os.PathLike, name: str, image_dir: str | os.PathLike | None = None,
              *, content_hash: str | None = None, min_side: int | None = DISPLAY_SIDE) -> AddedImage:
    """Load one image (ImageLoadError if unreadable), write its display copy into `image_dir` (if given) and
    record it in the store with the photo's own size. The picture, decoded with its shorter side reduced to
    `min_side` (default: what the display copy needs; None = full size), comes back in `.image` for the
    caller to use and drop."""
    image = read_image(path, name, min_side)
    content_hash = content_hash or image_content_hash(path)
    if image_dir is not None:
        save_display_copy(image, image_dir, content_hash)
    width, height = image_size(path) if min_side is not None else image.size
    store.add_image(content_hash, name, width, height)
    return AddedImage(content_hash, name, width, height, image)


def _hash_or_none(path: str | os.PathLike) -> str | None:
    try:
        return image_content_hash(path)
    except ImageLoadError:
        return None  # missing or a folder: load_image says so in its own, clearer words


# ----------------------------------------------------------------------------------------------------------
# Captioning into a set


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
            content_hash = _hash_or_none(path)
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


# ----------------------------------------------------------------------------------------------------------
# Importing captions made elsewhere


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
                         sheet: str | None = None) -> ImportRun:
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
    Raises ValueError for a file without the required columns or an unknown sheet.
    """
    # the file is read and checked before the set is looked up, so a front end may create the set only for a
    # file that will be imported (EvaluationSetNotFoundError comes after every mistake in the file itself)
    result = read_captions_file(csv_path, image_folder=image_folder, sheet=sheet)
    frame = result.captions
    default_rater = validate_name(rater, "rater name") if rater is not None and str(rater).strip() else None
    unnamed = result.ratings[result.ratings["rater"].isna()]
    if len(unnamed) and default_rater is None:
        raise ValueError(
            f"The file has {len(unnamed)} score(s) but no rater column, and no rater was given; pass the name of "
            "the person who gave these scores (rater=..., `--rater NAME` on the command line, or the rater name "
            "at the top of the app's page) and import again"
        )
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
            who = validate_name(rating["rater"], "rater name") if rating["rater"] else default_rater
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
        content_hash = _hash_or_none(path)
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


# ----------------------------------------------------------------------------------------------------------
# The rating grid


@dataclass
class GridCell:
    label: str  # what the rater sees above the caption: the model name, or "Caption B" in blind mode
    model_name: str  # never sent to the page in blind mode; only the server-side handler knows it
    caption: str
    score: int | None


@dataclass
class GridRow:
    image_hash: str
    file_name: str
    image_path: str | None  # None when the display copy is gone (e.g. the temp folder was cleared)
    cells: list[GridCell]


@dataclass
class GridView:
    rows: list[GridRow]
    page: int
    pages: int
    images: int
    rated: int
    captions: int
    blind: bool
    revealed: bool


EMPTY_GRID = GridView([], 0, 0, 0, 0, 0, False, False)


def column_order(eval_set: str, image_hash: str, models: list[str]) -> list[str]:
    """Blind mode's per-image column order: shuffled, but the same every time the set is opened.

    Seeded by set and image only, so every rater, every restart and every version of this code shows the
    same columns (changing it would silently reorder the columns of sets already being rated).
    """
    order = sorted(models)
    seed = hashlib.sha256(f"{eval_set}\x00{image_hash}".encode()).hexdigest()
    random.Random(seed).shuffle(order)
    return order


def natural_key(text: str) -> list:
    """Sort key for file names in the order a file browser shows them: img2 before img10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def grid_page(store: RatingStore, set_name: str, rater: str, page: int = 0, page_size: int = PAGE_SIZE, *,
              revealed: bool = False, image_dir: str | os.PathLike | None = None) -> GridView:
    """One page of the caption grid, drawn from the store: images in natural file-name order, each with its
    captions and `rater`'s scores.

    Blind mode is the set's own flag (not a parameter, so no caller can show a blind set's names by
    accident): labels are "Caption A", "Caption B"... in `column_order`, with " = <model>" added when
    `revealed`. `page` is clamped to the pages there are. Image paths are display copies in `image_dir`.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    blind = bool(store.get_set(set_name)["blind"])
    captions = store.get_captions(set_name)
    ratings = store.ratings(set_name, rater)
    scores = {(h, m): int(s) for h, m, s in zip(ratings["image_hash"], ratings["model_name"], ratings["score"])}
    by_image: dict[str, dict[str, dict[str, Any]]] = {}
    for c in captions:
        by_image.setdefault(c["image_hash"], {})[c["model_name"]] = c
    order = sorted(by_image, key=lambda h: (natural_key(next(iter(by_image[h].values()))["file_name"] or ""), h))
    pages = max(1, -(-len(order) // page_size))
    page = min(max(0, int(page or 0)), pages - 1)
    rows = []
    for image_hash in order[page * page_size:(page + 1) * page_size]:
        models = by_image[image_hash]
        names = column_order(set_name, image_hash, list(models)) if blind else sorted(models)
        cells = []
        for index, model in enumerate(names):
            label = model
            if blind:
                label = column_label(index) + (f" = {model}" if revealed else "")
            cells.append(GridCell(label, model, models[model]["caption"], scores.get((image_hash, model))))
        path = display_path(image_dir, image_hash) if image_dir is not None else None
        file_name = next(iter(models.values()))["file_name"] or image_hash[:12]
        rows.append(GridRow(image_hash, file_name, str(path) if path is not None and path.exists() else None, cells))
    return GridView(rows, page, pages, len(order), len(scores), len(captions), blind, bool(revealed))


# ----------------------------------------------------------------------------------------------------------
# Results and exports


@dataclass
class SetResults:
    """Everything the results view shows: raw ratings, the per-model table with coverage, the sentence that
    says what it rests on, the per-rater table and rater agreement."""

    ratings: pd.DataFrame
    summary: pd.DataFrame  # rating.results.coverage_summary(...).table: every model of the set
    agreement: dict[str, Any]  # rating.results.agreement
    raters: list[str]
    message: str = ""  # rating.results.coverage_summary(...).message
    rater_table: pd.DataFrame = field(default_factory=pd.DataFrame)  # rating.results.rater_table
    gold: pd.DataFrame | None = None  # the set's gold scores, when the store has any
    # Where images have reference captions: rating.metric_agreement.metric_agreement's two tables, else None.
    metric_models: pd.DataFrame | None = None  # per model: BLEU-4, CIDEr-D, BERTScore F1 beside human accuracy
    metric_tau: pd.DataFrame | None = None  # Kendall's tau between each metric and the mean human score


def _gold_scores(store: RatingStore, set_name: str) -> pd.DataFrame | None:
    """The set's gold scores (image_hash, model_name, gold_score), or None when it has none."""
    gold = store.gold_scores(set_name)
    if gold is None or "gold_score" not in gold.columns or gold["gold_score"].notna().sum() == 0:
        return None
    return gold


def set_results(store: RatingStore, set_name: str, *, metrics: bool = True, metric_bertscore: bool = True
                ) -> SetResults:
    """Per-model accuracy with coverage (model names shown, also for blind sets), per-rater figures (with
    agreement with gold when the set has gold scores) and agreement over every rater's scores; where images
    have reference captions, each model's BLEU-4, CIDEr-D and BERTScore (``metric_bertscore``) on them beside
    its human accuracy, and Kendall's tau between each metric and the human scores per caption (metrics=False:
    not computed, for callers that only show the other tables)."""
    ratings = store.ratings(set_name)
    captions = store.get_captions(set_name)
    coverage = coverage_summary(ratings, captions)
    gold = _gold_scores(store, set_name)
    metric_models = metric_tau = None
    references = store.references(set_name) if metrics else {}
    if references:
        from .metric_agreement import metric_agreement  # loads nltk/pycocoevalcap (and BERTScore) only when needed

        metric_models, metric_tau = metric_agreement(ratings, captions, references, bertscore=metric_bertscore)
    return SetResults(ratings=ratings, summary=coverage.table, agreement=agreement(ratings),
                      raters=store.raters(set_name), message=coverage.message,
                      rater_table=rater_table(ratings, captions, gold), gold=gold,
                      metric_models=metric_models, metric_tau=metric_tau)


def _percent(value: float) -> float | None:
    return None if pd.isna(value) else round(float(value) * 100, 1)


def results_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as shown in the page: rounded, the interval in one column, coverage after it.

    The first columns keep their order for API clients: rank, model, images rated, total score (both over
    all the model's rated images), accuracy % (on the images rated for every model: ranked), 95% CI.
    Unranked models (no common image yet) show an empty rank, accuracy and interval.
    """
    has_coverage = "accuracy_all" in summary.columns  # a plain summary_table frame has no coverage columns

    def one(value: float) -> float | None:
        return None if pd.isna(value) else round(float(value), 1)

    shown = pd.DataFrame({
        "rank": [None if pd.isna(r) else int(r) for r in summary["rank"]], "model": summary["model"],
        "images rated": summary["images_rated"], "total score": summary["total"].round(2),
        "accuracy %": [one(a) for a in summary["accuracy"]],
        "95% CI": ["" if pd.isna(lo) or pd.isna(hi) else f"{lo:.1f} – {hi:.1f}"
                   for lo, hi in zip(summary["ci_low"], summary["ci_high"])]})
    if has_coverage:
        shown["common images"] = summary["common_images"]
        shown["accuracy % (all rated)"] = [one(a) for a in summary["accuracy_all"]]
        shown["captions rated"] = [f"{r} / {n}" for r, n in zip(summary["captions_rated"], summary["captions"])]
        shown["coverage %"] = [_percent(c) for c in summary["coverage"]]
        shown["note"] = summary["note"]
    return shown


def rater_results_table(table: pd.DataFrame) -> pd.DataFrame:
    """The per-rater table as shown in the page: progress and gold agreement in percent, rounded."""
    shown = pd.DataFrame({"rater": table["rater"],
                          "captions rated": [f"{r} / {n}" for r, n in zip(table["captions_rated"], table["captions"])],
                          "progress %": [_percent(p) for p in table["progress"]],
                          "mean score": table["mean_score"].round(2), "leniency": table["leniency"].round(2),
                          "shared captions": table["shared_captions"]})
    if "gold_rated" in table.columns:
        shown["gold rated"] = table["gold_rated"]
        shown["gold exact %"] = [_percent(v) for v in table["gold_exact_match"]]
        shown["gold mean |diff|"] = table["gold_mean_abs_diff"].round(2)
        shown["gold κ"] = table["gold_cohen_kappa"].round(3)
    for column in [c for c in table.columns if c.startswith("accuracy ")]:
        shown[column.replace("accuracy ", "accuracy % ", 1)] = table[column].round(1)
    return shown


def file_slug(name: str) -> str:
    """A set name made safe as a file name: 'coco val/50' -> 'coco-val-50'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "ratings"


def export_set(store: RatingStore, set_name: str, folder: str | os.PathLike) -> list[Path]:
    """Write `<slug>_summary.csv`, `<slug>_ratings.csv` and `<slug>.xlsx` (summary with coverage, every raw rating
    and, with two or more raters or gold scores, per-rater figures and agreement) into `folder`; returns their
    paths in that order."""
    results = set_results(store, set_name)
    folder = Path(folder)
    slug = file_slug(set_name)
    paths = export_csv(results.summary, results.ratings, folder / f"{slug}.csv")
    # With one rater and no gold items the per-rater sheet would only repeat the summary.
    per_rater = results.rater_table if len(results.raters) >= 2 or results.gold is not None else None
    paths.append(export_xlsx(results.summary, results.ratings, folder / f"{slug}.xlsx", agreement=results.agreement,
                             raters=per_rater))
    return paths

