"""Caption many images with one or many zoo models: the one captioning path the CLI, the app, `trainer.evaluate`
and the trainer's validation share, and the one rule for images that cannot be read (`read_images`).

Per batch of images: each image is preprocessed once per distinct preprocessing; each distinct vision
encoder (same weights, preprocessing and features taken, see `captioning.zoo.encoder_key`) runs once and its
features are shared by every model that uses it; then each model decodes the whole batch at once. Features
computed beforehand (the trainer's embedding cache) come in through `features`, keyed by the same encoder
key: a model whose key is there skips preprocessing and encoding, and no image needs to be loaded for it.
`caption_features` is the decoding step alone (one model, one batch of features): the Ray engine
(`captioning.commands.ray_engine`) runs the encoder in another process and decodes with it.

Unreadable images: `read_images` loads (name, source) pairs with `load_image`; an image it refuses (missing,
not an image, truncated, too many pixels) is left out and its problem kept, named by file, in
`ReadImages.problems`; captioning goes on with the others. Command lines print each problem as one
`skipped: <problem>` line on stderr (`ReadImages.report`); the trainer records them in the split's report.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import torch
from PIL import Image

from .generation import GenerationSettings, generate, get_settings
from .images import ImageLoadError, ImageSource, load_image
from .zoo import ZooModel

FeatureSource = Callable[[list[str]], torch.Tensor]  # names of a batch -> that batch's encoder features


@dataclass
class ReadImages:
    """What `read_images` made of (name, source) pairs: the readable images in order, and the unreadable ones."""

    names: list[str] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # name -> why it cannot be read (names the file)

    def report(self, file: IO[str] | None = None) -> None:
        """One `skipped: <problem>` line per unreadable image (stderr by default)."""
        for problem in self.problems.values():
            print(f"skipped: {problem}", file=file if file is not None else sys.stderr)


def read_images(sources: Iterable[tuple[str, ImageSource]], *, min_side: int | None = None) -> ReadImages:
    """Load (name, source) pairs with `load_image`; never raises for an unreadable image (see the module doc).

    min_side: decode each image with its shorter side reduced to this (`captioning.preprocessing.needed_side`
    of the models says how much they use); None = full size.
    """
    out = ReadImages()
    for name, source in sources:
        try:
            image = load_image(source, min_side=min_side)
        except ImageLoadError as e:
            out.problems[name] = str(e)
            continue
        out.names.append(name)
        out.images.append(image)
    return out


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

    def rows(self, columns: Sequence[str]) -> list[dict[str, Any]]:
        """One table row per caption, with the keys of `columns` this result has (the batch CLI's CSV and
        the Ray engine's Parquet shards: image_id, model_name, caption, caption_index, score, the decoding
        settings, weights_hash); a setting the strategy does not use is absent."""
        return [{"image_id": self.image_name, "model_name": self.model_name, "caption": caption,
                 "caption_index": i, "score": round(score, 4), "weights_hash": self.weights_hash,
                 **{k: v for k, v in self.settings.items() if k in columns}}
                for i, (caption, score) in enumerate(zip(self.captions, self.scores))]


def caption_features(model: ZooModel, features: torch.Tensor, names: Sequence[str],
                     settings: GenerationSettings) -> list[CaptionResult]:
    """Decode one batch of encoder features (`ZooModel.encode` of the preprocessed images, or features of the
    same encoder key; for a foreign model, its processor's inputs) with one model: one CaptionResult per row, named by `names`, in order.

    The decoding step of `caption_images`; engines that run the encoder elsewhere (`captioning.commands.ray_engine`)
    call it with the features they received.
    """
    rows = model.model.rows(features) if model.foreign else features.shape[0]
    if len(names) != rows:
        raise ValueError(f"got features of {rows} images but {len(names)} names")
    if model.foreign:  # another maker's model: its own generate, from its processor's inputs
        tokens, scores = model.model.generate(features.to(model.device), settings)
    else:
        out = generate(model.model, features.to(model.device), settings)
        tokens, scores = out.tokens, out.scores
    return [CaptionResult(image_name=name, model_name=model.name, captions=[model.decode(t) for t in token_lists],
                          scores=image_scores, settings=settings.to_dict(), weights_hash=model.weights_hash)
            for name, token_lists, image_scores in zip(names, tokens, scores)]


def caption_images(models: Sequence[ZooModel], images: Sequence[Image.Image] | None, *,
                   names: Sequence[str] | None = None,
                   settings: GenerationSettings | str = "consistent", batch_size: int = 16,
                   features: Mapping[str, FeatureSource] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> list[CaptionResult]:
    """Caption every image with every model; results are ordered image by image, then model by model.

    images: RGB PIL images (use `read_images` / `captioning.images.load_image`); names default to "image-<i>".
    features: encoder key (`ZooModel.encoder_key`) -> function giving the features of a batch from its names;
    models with that key skip preprocessing and encoding. `images` may be None when every model's key is
    there (names are then required).
    progress(done, total) is called after each (batch, model) with counts of captions made so far.
    """
    if isinstance(settings, str):
        settings = get_settings(settings)
    if not models:
        raise ValueError("caption_images needs at least one model")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    features = dict(features or {})
    if images is None:
        lacking = [m.name for m in models if m.encoder_key not in features]
        if lacking:
            raise ValueError(f"images=None needs precomputed features for every model; none for {lacking}")
        if names is None:
            raise ValueError("images=None needs the names of the images (features are looked up by name)")
        count = len(names)
    else:
        count = len(images)
    names = list(names) if names is not None else [f"image-{i}" for i in range(count)]
    if len(names) != count:
        raise ValueError(f"got {count} images but {len(names)} names")
    total, done = count * len(models), 0
    by_image: list[dict[str, CaptionResult]] = [{} for _ in range(count)]
    for start in range(0, count, batch_size):
        batch_names = names[start:start + batch_size]
        pixels: dict[str, Any] = {}
        encoded: dict[str, torch.Tensor] = {}
        for model in models:
            key = model.encoder_key
            if key not in encoded:
                if key in features:
                    encoded[key] = features[key](batch_names).to(model.device)
                else:
                    if model.preprocess_key not in pixels:
                        pixels[model.preprocess_key] = model.preprocess(list(images[start:start + batch_size]))
                    encoded[key] = model.encode(pixels[model.preprocess_key])
            for i, result in enumerate(caption_features(model, encoded[key], batch_names, settings)):
                by_image[start + i][model.name] = result
            done += len(batch_names)
            if progress is not None:
                progress(done, total)
    return [row[m.name] for row in by_image for m in models]
