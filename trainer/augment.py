"""Training-image augmentation (`data.augment`): random resized crop, horizontal flip, small rotation and
colour jitter, with PIL only (torchvision is not a dependency), following torchvision's documented semantics.

- crop: ``RandomResizedCrop(scale, ratio)``: up to 10 tries of an area share drawn uniformly from ``scale`` and
  an aspect ratio drawn log-uniformly from ``ratio``; the first box that fits is placed uniformly at random,
  else the centre crop of the whole image clamped to the ratio range. The box is resized to the encoder's input
  size, so the image processor's own resize and centre crop then keep all of it.
- flip: ``RandomHorizontalFlip(p)``. Refused when the training captions name left or right (a mirrored image
  no longer matches "on the left"), unless ``allow_flip_with_left_right`` says the user knows.
- rotation: ``RandomRotation(degrees)``: an angle uniform in [-d, d], counter-clockwise, same size, corners black.
- jitter: ``ColorJitter(brightness, contrast, saturation, hue)``: factors uniform in [max(0, 1 - v), 1 + v]
  (hue: a shift uniform in [-h, h] of the hue circle), the four applied in a random order.

Each sample's randomness comes from (seed, epoch, sample index), not from a worker's RNG, so a run is the same
with any ``data.num_workers`` and a resumed run sees the augmentations the interrupted one would have.

Augmentation changes the pixels the encoder reads, so it needs the encoder to run on pixels: with a frozen
encoder and the embedding cache on (each image encoded once), it is refused (`cache_problem`).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance

from .typed_config import at_least, setting

__all__ = ["AugmentConfig", "Augmenter", "active_augmentations", "cache_problem", "crop_box", "flip_problem",
           "encoder_input_size", "jitter", "left_right_captions", "make_augmenter"]

CROP_TRIES = 10  # torchvision's RandomResizedCrop tries this many boxes before its centre-crop fallback


def _range(low: float, high: float, what: str):
    """A check of a [min, max] pair inside (low, high]."""
    def check(value: list[float] | None) -> str | None:
        if value is None:
            return None
        if len(value) != 2 or not (low < value[0] <= value[1] <= high):
            bound = "" if high == math.inf else f" <= {high:g}"
            return f"must be [min, max] with {low:g} < min <= max{bound} ({what}), got {value}"
        return None
    return check


def _between(low: float, high: float):
    return lambda value: None if low <= value <= high else f"must be in [{low:g}, {high:g}]"


@dataclass(kw_only=True)
class AugmentConfig:
    """Random changes to the training images, each off by default; validation and test images are never changed.
    They need the encoder to read pixels: not with a frozen encoder and data.cache_embeddings on."""

    crop_scale: list[float] | None = setting(
        None, doc="Random resized crop: the crop's share of the image area, [min, max] in (0, 1] (torchvision's "
                  "RandomResizedCrop scale, e.g. [0.5, 1.0]); the crop is resized to the encoder's input size. "
                  "null = no crop.", check=_range(0, 1, "shares of the image area"))
    crop_ratio: list[float] = setting(
        doc="The crop's aspect-ratio range [min, max] (width / height, drawn log-uniformly); used with crop_scale.",
        factory=lambda: [3 / 4, 4 / 3], check=_range(0, math.inf, "width / height"))
    flip_probability: float = setting(
        0.0, doc="Chance of mirroring a training image left-right; 0 = never. Refused when training captions name "
                 "left or right (the mirrored image would contradict them), unless allow_flip_with_left_right.",
        check=_between(0, 1))
    allow_flip_with_left_right: bool = setting(
        False, doc="Flip even though training captions say left/right (e.g. the words mean something else there).")
    rotation_degrees: float = setting(
        0.0, doc="Small rotation: an angle uniform in [-d, d] degrees (corners filled black); 0 = none.",
        check=_between(0, 180))
    brightness: float = setting(0.0, doc="Colour jitter: brightness factor uniform in [max(0, 1 - v), 1 + v]; 0 = none.",
                                check=at_least(0))
    contrast: float = setting(0.0, doc="Colour jitter: contrast factor uniform in [max(0, 1 - v), 1 + v]; 0 = none.",
                              check=at_least(0))
    saturation: float = setting(0.0, doc="Colour jitter: saturation factor uniform in [max(0, 1 - v), 1 + v]; "
                                         "0 = none.", check=at_least(0))
    hue: float = setting(0.0, doc="Colour jitter: hue shift uniform in [-v, v] of the colour circle, v <= 0.5; "
                                  "0 = none.", check=_between(0, 0.5))


def active_augmentations(config: AugmentConfig | dict[str, Any]) -> list[str]:
    """The keys of ``data.augment`` that are on (``crop_scale``, ``flip_probability``, ...), in schema order."""
    get = config.get if isinstance(config, dict) else lambda key, default=None: getattr(config, key, default)
    on = []
    if get("crop_scale") is not None:
        on.append("crop_scale")
    on += [key for key in ("flip_probability", "rotation_degrees", "brightness", "contrast", "saturation", "hue")
           if get(key)]
    return on


def cache_problem(active: list[str]) -> str:
    """Why augmentation cannot run over cached embeddings, and what to do."""
    keys = ", ".join(f"data.augment.{key}" for key in active)
    return (f"data.augment: {keys} asked for, but with model.freeze_encoder true and data.cache_embeddings true "
            f"each image is encoded once and its cached embedding reused every epoch, so no augmented image would "
            f"ever reach the model; set data.cache_embeddings=false (the frozen encoder then reads augmented pixels "
            f"every step, slower) or model.freeze_encoder=false (fine-tune the encoder), or turn augmentation off")


_LEFT_RIGHT = re.compile(r"\b(left|right)(most|ward|wards|[- ]hand)?\b", re.IGNORECASE)


def left_right_captions(captions: Iterable[str]) -> list[str]:
    """The captions that name left or right ("on the left", "to the right of", "leftmost", ...)."""
    return [caption for caption in captions if _LEFT_RIGHT.search(caption)]


def flip_problem(config: AugmentConfig, captions: list[str]) -> str | None:
    """Why flipping is refused for these training captions, or None when it is off, harmless or allowed."""
    if not config.flip_probability or config.allow_flip_with_left_right:
        return None
    naming = left_right_captions(captions)
    if not naming:
        return None
    return (f"data.augment.flip_probability: {config.flip_probability} would mirror training images, but "
            f"{len(naming)} of {len(captions)} training captions name left or right (e.g. {naming[0]!r}), which a "
            f"mirrored image contradicts; set data.augment.flip_probability=0, or "
            f"data.augment.allow_flip_with_left_right=true if those words do not describe the image's sides")


# ----------------------------------------------------------------------------------------------------
# The transforms
# ----------------------------------------------------------------------------------------------------

def crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
             rng: random.Random) -> tuple[int, int, int, int]:
    """(left, top, crop width, crop height) as torchvision's ``RandomResizedCrop.get_params`` draws it."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(CROP_TRIES):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    # Fallback: the whole image, cut to the nearest allowed aspect ratio, centred.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _adjust_hue(image: Image.Image, shift: float) -> Image.Image:
    # torchvision's PIL backend: shift the H channel of HSV by shift * 255, wrapping around.
    h, s, v = image.convert("HSV").split()
    hue = (np.asarray(h, dtype=np.int16) + int(round(shift * 255))) % 256
    return Image.merge("HSV", (Image.fromarray(hue.astype(np.uint8), "L"), s, v)).convert(image.mode)


_ENHANCERS = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
              "saturation": ImageEnhance.Color}


def jitter(image: Image.Image, factors: dict[str, float]) -> Image.Image:
    """Apply colour changes in the given order: brightness/contrast/saturation factors (1 = unchanged) and a
    hue shift (0 = unchanged), as torchvision's ``adjust_*`` functions do on PIL images."""
    for name, value in factors.items():
        image = _adjust_hue(image, value) if name == "hue" else _ENHANCERS[name](image).enhance(value)
    return image


class Augmenter:
    """The ``data.augment`` transforms for one run; ``augment(image, epoch, index)`` changes one training image.

    output_size: (width, height) the encoder reads; a random crop is resized to it.
    """

    def __init__(self, config: AugmentConfig, output_size: tuple[int, int], seed: int = 0):
        self.config, self.output_size, self.seed = config, output_size, seed

    @property
    def active(self) -> bool:
        return bool(active_augmentations(self.config))

    def rng(self, epoch: int, index: int) -> random.Random:
        # A string seed is hashed with SHA-512 by `random`: the same on every worker, process and Python run.
        return random.Random(f"augment:{self.seed}:{epoch}:{index}")

    def augment(self, image: Image.Image, epoch: int, index: int) -> Image.Image:
        return self.apply(image, self.rng(epoch, index))

    def apply(self, image: Image.Image, rng: random.Random) -> Image.Image:
        c = self.config
        if c.crop_scale is not None:
            left, top, w, h = crop_box(image.width, image.height, tuple(c.crop_scale), tuple(c.crop_ratio), rng)
            image = image.resize(self.output_size, Image.Resampling.BILINEAR, box=(left, top, left + w, top + h))
        if c.flip_probability and rng.random() < c.flip_probability:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if c.rotation_degrees:
            image = image.rotate(rng.uniform(-c.rotation_degrees, c.rotation_degrees),
                                 resample=Image.Resampling.BILINEAR, fillcolor=(0,) * len(image.getbands()))
        factors = {name: rng.uniform(max(0.0, 1 - getattr(c, name)), 1 + getattr(c, name))
                   for name in ("brightness", "contrast", "saturation") if getattr(c, name)}
        if c.hue:
            factors["hue"] = rng.uniform(-c.hue, c.hue)
        if factors:
            order = list(factors)
            rng.shuffle(order)
            image = jitter(image, {name: factors[name] for name in order})
        return image


def _side(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def encoder_input_size(image_processor: Any) -> tuple[int, int]:
    """(width, height) of the images the processor hands the encoder: its crop size, else its resize size."""
    for attribute in ("crop_size", "size"):
        size = getattr(image_processor, attribute, None)
        if size:
            width = _side(size, "width") or _side(size, "shortest_edge")
            height = _side(size, "height") or _side(size, "shortest_edge")
            if width and height:
                return width, height
    return 224, 224


def make_augmenter(config: AugmentConfig, image_processor: Any, seed: int) -> Augmenter | None:
    """The run's augmenter for images going through ``image_processor``, or None when ``config`` turns nothing on."""
    if not active_augmentations(config):
        return None
    return Augmenter(config, encoder_input_size(image_processor), seed)
