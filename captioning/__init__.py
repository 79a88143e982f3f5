"""Caption Zoo's library: zoo entries, robust image loading and fast batched caption generation.

The public API, in the order a user meets it:
    load_model(path)            -> ZooModel (model + tokenizer + preprocessing, rebuilt offline from its folder)
    list_zoo(folder)            -> one dict per entry (kind, base models, K, parameters, size, metrics)
    load_image(source)          -> upright RGB PIL image, or ImageLoadError naming the file
    caption_images(models, images, settings="consistent") -> list[CaptionResult]
    PRESETS / get_settings(name, **overrides)

This package never imports gradio, the trainer or the app.
"""

from .generation import PRESETS, GenerationSettings, generate, get_settings
from .images import ImageLoadError, find_images, load_image
from .pipeline import CaptionResult, caption_images
from .zoo import ModelCache, ZooError, ZooModel, list_zoo, load_entry, save_entry

load_model = load_entry

__all__ = ["PRESETS", "CaptionResult", "GenerationSettings", "ImageLoadError", "ModelCache", "ZooError", "ZooModel",
           "caption_images", "find_images", "generate", "get_settings", "list_zoo", "load_entry", "load_image",
           "load_model", "save_entry"]
