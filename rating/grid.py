"""The rating grid: a set's images page by page, each with its captions in the rater's column order and the
rater's scores; where the rater's next unrated caption is; and, for a caller who may not see a blind set's model
names (`rating.access.may_see_names`), its captions by column label and the model behind a label.

    grid_page(store, name, rater, page, ...)            -> GridView (one page of the rating grid)
    first_unrated(store, name, rater, page_size, after, skip) -> (page, row, column) of the next unrated caption
    left_to_rate(store, name, rater)                    -> how many captions the rater has not scored
    page_of(store, name, image_hash, page_size)         -> the page of the grid that shows an image
    column_order(name, rater, image_hash, models)       -> blind mode's column order for one image and rater
    blind_captions(store, name, rater) / column_model(store, name, rater, image_hash, column)
                                                        -> captions by column label ("Caption A"), and back

Blind columns are shuffled per image and per rater, so a position bias (the first caption read more kindly)
falls on a different model for each rater, and seeded by set, image and rater, so a rater sees the same order
on every reload and the API's labels agree with that rater's grid. A set that is not blind shows model names,
sorted. Images are in natural file-name order (img2 before img10).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rating.images import display_path
from rating.store import RatingStore
from rating.validation import validate_name

PAGE_SIZE = 10  # image rows per page of the rating grid: ~10 x (1 + 2 per model) widgets keeps a page responsive


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


def column_order(set_name: str, rater: str, image_hash: str, models: list[str]) -> list[str]:
    """Blind mode's column order of one image for one rater: shuffled, and the same every time that rater opens
    the set (seeded by set, image and rater; changing the rule would silently reorder sets being rated)."""
    order = sorted(models)
    seed = hashlib.sha256(f"{set_name}\x00{image_hash}\x00{rater}".encode()).hexdigest()
    random.Random(seed).shuffle(order)
    return order


def column_label(index: int) -> str:
    """A blind column's label: "Caption A", "Caption B", ..."""
    return f"Caption {chr(ord('A') + index)}"


def natural_key(text: str) -> list:
    """Sort key for file names in the order a file browser shows them: img2 before img10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


@dataclass
class _SetGrid:
    """What every view of a set's grid starts from: its captions by image, the images in grid order."""

    blind: bool
    captions: dict[str, dict[str, dict[str, Any]]]  # image hash -> model name -> caption (store.get_captions row)
    images: list[str]  # image hashes in natural file-name order

    def columns(self, set_name: str, rater: str, image_hash: str) -> list[str]:
        """The models of one image's captions, in the order `rater` sees them."""
        models = list(self.captions[image_hash])
        return column_order(set_name, rater, image_hash, models) if self.blind else sorted(models)

    def pages(self, page_size: int) -> int:
        return max(1, -(-len(self.images) // page_size))


def _set_grid(store: RatingStore, set_name: str) -> _SetGrid:
    by_image: dict[str, dict[str, dict[str, Any]]] = {}
    for c in store.get_captions(set_name):
        by_image.setdefault(c["image_hash"], {})[c["model_name"]] = c
    order = sorted(by_image, key=lambda h: (natural_key(next(iter(by_image[h].values()))["file_name"] or ""), h))
    return _SetGrid(bool(store.get_set(set_name)["blind"]), by_image, order)


def _rater_scores(store: RatingStore, set_name: str, rater: str) -> dict[tuple[str, str], int]:
    ratings = store.ratings(set_name, rater)
    return {(h, m): int(s) for h, m, s in zip(ratings["image_hash"], ratings["model_name"], ratings["score"])}


def _check_page_size(page_size: int) -> None:
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")


def grid_page(store: RatingStore, set_name: str, rater: str, page: int = 0, page_size: int = PAGE_SIZE, *,
              revealed: bool = False, image_dir: str | os.PathLike | None = None) -> GridView:
    """One page of the caption grid, drawn from the store: images in natural file-name order, each with its
    captions and `rater`'s scores.

    Blind mode is the set's own flag (not a parameter, so no caller can show a blind set's names by
    accident): labels are "Caption A", "Caption B"... in `rater`'s `column_order`, with " = <model>" added when
    `revealed`. `page` is clamped to the pages there are. Image paths are display copies in `image_dir`.
    """
    _check_page_size(page_size)
    rater = validate_name(rater, "rater name")
    grid = _set_grid(store, set_name)
    scores = _rater_scores(store, set_name, rater)
    pages = grid.pages(page_size)
    page = min(max(0, int(page or 0)), pages - 1)
    rows = []
    for image_hash in grid.images[page * page_size:(page + 1) * page_size]:
        models = grid.captions[image_hash]
        cells = []
        for index, model in enumerate(grid.columns(set_name, rater, image_hash)):
            label = model
            if grid.blind:
                label = column_label(index) + (f" = {model}" if revealed else "")
            cells.append(GridCell(label, model, models[model]["caption"], scores.get((image_hash, model))))
        path = display_path(image_dir, image_hash) if image_dir is not None else None
        file_name = next(iter(models.values()))["file_name"] or image_hash[:12]
        rows.append(GridRow(image_hash, file_name, str(path) if path is not None and path.exists() else None, cells))
    captions = sum(len(models) for models in grid.captions.values())
    return GridView(rows, page, pages, len(grid.images), len(scores), captions, grid.blind, bool(revealed))


def first_unrated(store: RatingStore, set_name: str, rater: str, page_size: int = PAGE_SIZE,
                  after: tuple[str, str] | None = None, skip: set[tuple[str, str]] | frozenset = frozenset()
                  ) -> tuple[int, int, int] | None:
    """Where `rater`'s first unrated caption is in their grid: (page, row on that page, column in that row), all
    counted from 0 as `grid_page` lays them out with this `page_size`; None when they have rated every caption.

    after: an (image_hash, model_name) position; the search then starts just after it and wraps around to the
    start of the grid, so "next unrated" walks every caption once (the position itself comes last). A position
    the grid does not have (a caption since removed) searches from the start. `skip`: (image_hash, model_name)
    captions not to stop at (e.g. those a set's overlap closes to this rater, `rating.queue.closed_captions`).
    """
    _check_page_size(page_size)
    rater = validate_name(rater, "rater name")
    grid = _set_grid(store, set_name)
    scores = _rater_scores(store, set_name, rater)

    def positions() -> Iterator[tuple[int, str, int, str]]:  # (image index, image hash, column, model)
        for index, image_hash in enumerate(grid.images):
            for column, model in enumerate(grid.columns(set_name, rater, image_hash)):
                yield index, image_hash, column, model

    cells = list(positions())
    start = 0
    if after is not None:
        found = [i for i, (_, image_hash, _, model) in enumerate(cells) if (image_hash, model) == tuple(after)]
        start = found[0] + 1 if found else 0
    for index, image_hash, column, model in cells[start:] + cells[:start]:
        if (image_hash, model) not in scores and (image_hash, model) not in skip:
            return index // page_size, index % page_size, column
    return None


def page_of(store: RatingStore, set_name: str, image_hash: str, page_size: int = PAGE_SIZE) -> int:
    """The page (from 0) of the set's grid that shows `image_hash`, as `grid_page` lays pages out with this
    `page_size` (the same for every rater: only the column order is theirs); 0 for an image the set lacks."""
    _check_page_size(page_size)
    images = _set_grid(store, set_name).images
    return images.index(image_hash) // page_size if image_hash in images else 0


def left_to_rate(store: RatingStore, set_name: str, rater: str) -> int:
    """How many captions of the set `rater` has not scored yet."""
    return len(store.unrated_captions(set_name, rater))


def blind_captions(store: RatingStore, set_name: str, rater: str) -> list[dict[str, Any]]:
    """Every caption of the set with `column` ("Caption A"... as `rater`'s grid shows it) instead of the model
    name, for whoever may not see a blind set's names. The labels are the rater's own: rate by them as `rater`
    (`column_model`). ValueError for an empty rater name."""
    rater = validate_name(rater, "rater name (a blind set's column labels are each rater's own)")
    grid = _set_grid(store, set_name)
    labels = {(h, m): column_label(i) for h in grid.images for i, m in enumerate(grid.columns(set_name, rater, h))}
    rows = [c for h in sorted(grid.captions) for _, c in sorted(grid.captions[h].items())]  # as get_captions orders
    return [{"image_hash": c["image_hash"], "file_name": c["file_name"],
             "column": labels[(c["image_hash"], c["model_name"])], "caption": c["caption"]} for c in rows]


def column_model(store: RatingStore, set_name: str, rater: str, image_hash: str, column: str) -> str:
    """The model behind a blind column label ("Caption B") of one image in `rater`'s grid; ValueError (naming the
    labels the image has, never a model) for a label the image does not have."""
    rater = validate_name(rater, "rater name")
    models = [c["model_name"] for c in store.get_captions(set_name) if c["image_hash"] == image_hash]
    order = column_order(set_name, rater, image_hash, models)
    labels = [column_label(i) for i in range(len(order))]
    if column not in labels:
        raise ValueError(f"Image {image_hash!r} of blind set {set_name!r} has no column {column!r}; its columns "
                         f"are {labels} (use the `column` the captions endpoint gives)")
    return order[labels.index(column)]
