"""A set's images: each picture read once at the size it is needed, named by the sha256 of its file's bytes
(`captioning.images.image_content_hash`), so the same photo uploaded twice, or under two names, is one image;
its display copy; and its record in the store.

The display copy is an upright PNG of at most DISPLAY_SIDE pixels named `<hash>.png` in an image folder the
caller passes (the app serves that folder; DEFAULT_DISPLAY_DIR unless a front end says otherwise). Loads no
model and no torch: the grid (`rating.grid`) finds display copies through `display_path`.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from captioning.images import ImageLoadError, image_content_hash, image_size, load_image, prepare_for_display
from rating.store import RatingStore

# Where display copies go unless a front end says otherwise: the app serves this folder and the CLI's import
# writes into it, so images imported either way show in the grid.
DEFAULT_DISPLAY_DIR = Path(tempfile.gettempdir()) / "caption-zoo" / "images"
DISPLAY_SIDE = 640  # longest side of the display copies, pixels
MIN_DISPLAY_SIDE = 256  # smaller images are enlarged for display (whole factor, nearest neighbour)


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


def content_hash_or_none(path: str | os.PathLike) -> str | None:
    """The content hash of the file at `path`, or None when it is missing or not a file."""
    try:
        return image_content_hash(path)
    except ImageLoadError:
        return None  # missing or a folder: load_image says so in its own, clearer words
