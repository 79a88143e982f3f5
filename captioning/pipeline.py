"""Caption many images with one or many zoo models: the call the CLI, the app and the trainer share.

Per batch of images: each image is preprocessed once per distinct preprocessing; each distinct vision
encoder (same weights and preprocessing, see `ZooModel.encoder_key`) runs once and its features are
shared by every model that uses it; then each model decodes the whole batch at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .generation import GenerationSettings, generate, get_settings
from .zoo import ZooModel


@dataclass
class CaptionResult:
    """The captions one model gave one image, with what produced them."""

    image_name: str
    model_name: str
    captions: list[str]
    scores: list[float]
    settings: dict[str, Any] = field(default_factory=dict)
    weights_hash: str = ""

    @property
    def caption(self) -> str:
        return self.captions[0]


def caption_images(models: Sequence[ZooModel], images: Sequence[Image.Image], *,
                   names: Sequence[str] | None = None,
                   settings: GenerationSettings | str = "consistent", batch_size: int = 16,
                   progress: Callable[[int, int], None] | None = None) -> list[CaptionResult]:
    """Caption every image with every model; results are ordered image by image, then model by model.

    images: RGB PIL images (use `captioning.images.load_image`); names default to "image-<i>".
    progress(done, total) is called after each (batch, model) with counts of captions made so far.
    """
    if isinstance(settings, str):
        settings = get_settings(settings)
    if not models:
        raise ValueError("caption_images needs at least one model")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    names = list(names) if names is not None else [f"image-{i}" for i in range(len(images))]
    if len(names) != len(images):
        raise ValueError(f"got {len(images)} images but {len(names)} names")
    total, done = len(images) * len(models), 0
    by_image: list[dict[str, CaptionResult]] = [{} for _ in images]
    for start in range(0, len(images), batch_size):
        chunk = list(images[start:start + batch_size])
        pixels: dict[str, Any] = {}
        features: dict[str, Any] = {}
        for model in models:
            if model.preprocess_key not in pixels:
                pixels[model.preprocess_key] = model.preprocess(chunk)
            if model.encoder_key not in features:
                features[model.encoder_key] = model.encode(pixels[model.preprocess_key])
            out = generate(model.model, features[model.encoder_key], settings)
            for i, (token_lists, scores) in enumerate(zip(out.tokens, out.scores)):
                by_image[start + i][model.name] = CaptionResult(
                    image_name=names[start + i], model_name=model.name,
                    captions=[model.decode(t) for t in token_lists], scores=scores,
                    settings=settings.to_dict(), weights_hash=model.weights_hash)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return [row[m.name] for row in by_image for m in models]
