"""Image preprocessing for the vision encoders: resize, centre-crop, normalise (transformers' processors).

The pure-PIL processors are used so that torchvision is never needed. `input_side` and `needed_side` say
how many pixels the processors actually read, so callers can decode photos at that size
(`captioning.images.load_image(path, min_side=needed_side(models))`) instead of at 50 megapixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from transformers import AutoImageProcessor

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # OpenAI CLIP's training statistics
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def make_image_processor(encoder_type: str, image_size: int):
    """A processor for an encoder built from a config: CLIP's (shortest edge + centre crop) or ViT's (resize)."""
    if encoder_type == "clip":
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        return CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                     crop_size={"height": image_size, "width": image_size},
                                     image_mean=CLIP_MEAN, image_std=CLIP_STD)
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    return ViTImageProcessorPil(size={"height": image_size, "width": image_size})


def load_image_processor(name_or_path: str, image_size: int | None = None):
    """The pretrained encoder's own processor (hub name or folder), optionally at another image size."""
    processor = AutoImageProcessor.from_pretrained(name_or_path)
    if image_size is not None:
        if "shortest_edge" in (processor.size or {}):
            processor.size = {"shortest_edge": image_size}
        else:
            processor.size = {"height": image_size, "width": image_size}
        if getattr(processor, "crop_size", None):
            processor.crop_size = {"height": image_size, "width": image_size}
    return processor


def _size_value(size: Any, key: str) -> int | None:
    """`size[key]` for the dicts older processors keep and the SizeDicts newer ones do; None when unset."""
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def input_side(image_processor: Any) -> int | None:
    """The shorter image side, in pixels, beyond which `image_processor` throws detail away; None = all of it.

    - shortest-edge resize (CLIP): the shortest edge; the centre crop is taken from that.
    - fixed height x width resize (ViT): the larger of the two, since the image is squashed to that box
      and its shorter side must cover both.
    - longest-edge / max box resizes: their largest side (an upper bound: enough for any aspect ratio).
    - pixel-count sizes (Qwen2-VL: min / max pixels): the square root of the max, which no shorter side exceeds.
    - no resize (`do_resize` false) or a size it does not know: None, meaning the full image is needed.
    """
    if not getattr(image_processor, "do_resize", True):
        return None
    size = getattr(image_processor, "size", None)
    if not size:
        return None
    if hasattr(image_processor, "merge_size"):
        # Qwen2-VL's processors: `size` holds pixel COUNTS (min / max pixels per image), not sides. An image is
        # scaled to at most max pixels, so its shorter side never keeps more than sqrt(max pixels).
        most = _size_value(size, "longest_edge") or getattr(image_processor, "max_pixels", None)
        return math.isqrt(int(most)) + 1 if most else None
    shortest = _size_value(size, "shortest_edge")
    if shortest:
        return shortest
    sides = [_size_value(size, key) for key in ("height", "width", "longest_edge", "max_height", "max_width")]
    sides = [side for side in sides if side]
    return max(sides) if sides else None


def needed_side(models: Iterable[Any], display_side: int | None = None) -> int | None:
    """The `min_side` to load images at so that every model (and a display copy) gets all the pixels it uses.

    models: zoo models (anything with an `image_processor`) or image processors themselves.
    display_side: also keep this many pixels on the shorter side (e.g. the longest side a page shows), or None.
    Returns the largest side needed, or None when any model needs the full image (see `input_side`).
    """
    sides = [] if display_side is None else [int(display_side)]
    for model in models:
        side = input_side(getattr(model, "image_processor", model))
        if side is None:
            return None
        sides.append(side)
    if not sides:
        raise ValueError("needed_side() got no models and no display_side; pass at least one model.")
    return max(sides)
