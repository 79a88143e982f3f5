"""Caption Zoo's library: zoo entries, robust image loading and fast batched caption generation.

The public API, in the order a user meets it:
    load_model(path)            -> ZooModel (model + tokenizer + preprocessing, rebuilt offline from its folder)
    list_zoo(folder)            -> one dict per entry (kind, base models, K, parameters, size, metrics)
    load_image(source)          -> upright RGB PIL image, or ImageLoadError naming the file
    read_images([(name, path), ...], min_side=None) -> ReadImages (images + the unreadable ones, named)
    caption_images(models, images, settings="consistent") -> list[CaptionResult]
    PRESETS / get_settings(name, **overrides)

Names are imported on first use, so `captioning.images` can be used without loading torch.
This package never imports gradio, the trainer or the app.
"""

from importlib import import_module

_EXPORTS = {
    "PRESETS": "generation", "GenerationSettings": "generation", "generate": "generation", "get_settings": "generation",
    "ImageLoadError": "images", "find_images": "images", "load_image": "images",
    "CaptionResult": "pipeline", "ReadImages": "pipeline", "caption_images": "pipeline", "read_images": "pipeline",
    "ModelCache": "zoo", "ZooError": "zoo", "ZooModel": "zoo", "list_zoo": "zoo", "load_entry": "zoo",
    "save_entry": "zoo", "load_model": "zoo",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'captioning' has no attribute {name!r}")
    module = import_module(f".{_EXPORTS[name]}", __name__)
    return getattr(module, "load_entry" if name == "load_model" else name)
