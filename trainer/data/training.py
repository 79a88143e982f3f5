"""What training reads a split through: `CaptionDataset` (pixels or cached embeddings), `make_collate`,
`drop_unreadable` (the library's rule for unreadable images, applied before training), and the per-epoch
`SubsetSampler` / `subset_indices`."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from captioning.datasets import Split
from captioning.images import load_image
from captioning.model import encode_captions
from captioning.pipeline import read_images

if TYPE_CHECKING:
    from ..augment import Augmenter

# ----------------------------------------------------------------------------------------------------
# Subset sampling: a fresh random part of the training set each epoch
# ----------------------------------------------------------------------------------------------------


def subset_indices(n: int, ratio: float, epoch: int, seed: int) -> list[int]:
    """Sorted indices of a random `ratio` share of `range(n)`, fresh for each epoch.

    The same (seed, epoch) always gives the same subset; different epochs give different subsets, so over
    many epochs the whole dataset is seen. `ratio >= 1` returns every index.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}.")
    if not (isinstance(ratio, (int, float)) and 0 < ratio and math.isfinite(ratio)):
        raise ValueError(f"ratio must be a number in (0, 1]; got {ratio!r}.")
    if ratio >= 1:
        return list(range(n))
    size = min(n, max(1, round(n * ratio))) if n else 0
    # A string seed is hashed with SHA-512 by `random`, so it is stable across processes and Python runs.
    generator = random.Random(f"subset:{seed}:{epoch}")
    return sorted(generator.sample(range(n), size))


class SubsetSampler:
    """Iterable of dataset indices for one epoch (usable as a torch DataLoader `sampler`).

    Call `set_epoch(epoch)` before each epoch; iteration yields the epoch's subset in a seeded shuffled order.
    With `groups` (the record indices of each image) and `per_group` N, the subset is drawn over images and
    each chosen image contributes N of its captions (all of them when it has fewer), drawn afresh each epoch.
    """

    def __init__(self, n: int, ratio: float, seed: int = 0, *, groups: list[list[int]] | None = None,
                 per_group: int | None = None) -> None:
        if (groups is None) != (per_group is None):
            raise ValueError("groups and per_group are given together")
        if per_group is not None and per_group < 1:
            raise ValueError(f"per_group must be >= 1; got {per_group}.")
        subset_indices(len(groups) if groups is not None else n, ratio, 0, seed)  # validate arguments now
        self.n, self.ratio, self.seed, self.epoch = n, ratio, seed, 0
        self.groups, self.per_group = groups, per_group

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self, epoch: int | None = None) -> list[int]:
        epoch = self.epoch if epoch is None else epoch
        if self.groups is None:
            return subset_indices(self.n, self.ratio, epoch, self.seed)
        pick = random.Random(f"captions:{self.seed}:{epoch}")
        chosen: list[int] = []
        for g in subset_indices(len(self.groups), self.ratio, epoch, self.seed):
            group = self.groups[g]
            chosen.extend(group if len(group) <= self.per_group else pick.sample(group, self.per_group))
        return sorted(chosen)

    def __iter__(self) -> Iterator[int]:
        order = self.indices()
        random.Random(f"order:{self.seed}:{self.epoch}").shuffle(order)
        return iter(order)

    def __len__(self) -> int:
        # Epoch 0's size: the same every epoch unless images with fewer than per_group captions are subsampled.
        return len(self.indices(0))


# ----------------------------------------------------------------------------------------------------
# Dataset and batches
# ----------------------------------------------------------------------------------------------------

PIXEL_MEMO_BYTES = 2 * 1024**3  # preprocessed images are kept in memory when they all fit in this budget


class CaptionDataset(Dataset):
    """(image, caption) pairs; yields pixel values, or the cached embedding when one is given.

    Without augmentation preprocessing is deterministic, so when the split's preprocessed images fit in
    PIXEL_MEMO_BYTES each image is decoded and preprocessed once, not once per caption per epoch. With an
    `augment` (trainer/augment.py `Augmenter`) each sample is changed afresh, seeded by the epoch (`set_epoch`)
    and its index, so it is the same with any number of loader workers.
    """

    def __init__(self, split: Split, image_processor, embeddings: dict[str, torch.Tensor] | None = None,
                 augment: Augmenter | None = None):
        self.records = split.records
        self.image_processor = image_processor
        self.embeddings = embeddings
        self.augment = augment if embeddings is None else None  # cached embeddings are never augmented
        self.epoch = 0
        crop = getattr(image_processor, "crop_size", None) or image_processor.size
        side = max(crop.get("height", 0), crop.get("width", 0), crop.get("shortest_edge", 0)) or 224
        self._memo: dict[str, torch.Tensor] | None = (
            {} if self.augment is None and len(split.image_paths) * 3 * side * side * 4 <= PIXEL_MEMO_BYTES else None)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentations the next items get (called before each epoch's loader is iterated)."""
        self.epoch = epoch

    def pixels(self, image_id: str, path) -> torch.Tensor:
        if self._memo is not None and image_id in self._memo:
            return self._memo[image_id]
        pixel_values = self.image_processor(images=[load_image(path)], return_tensors="pt")["pixel_values"][0]
        if self._memo is not None:
            self._memo[image_id] = pixel_values
        return pixel_values

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        item: dict[str, Any] = {"caption": record.caption, "image_id": record.image_id}
        if self.embeddings is not None:
            item["image_embeds"] = self.embeddings[record.image_id]
        elif self.augment is not None:
            image = self.augment.augment(load_image(record.image_path), self.epoch, index)
            item["pixel_values"] = self.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]
        else:
            item["pixel_values"] = self.pixels(record.image_id, record.image_path)
        return item


def make_collate(tokenizer, max_tokens: int):
    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = encode_captions(tokenizer, [it["caption"] for it in items], max_tokens)
        key = "image_embeds" if "image_embeds" in items[0] else "pixel_values"
        batch[key] = torch.stack([it[key] for it in items])
        return batch
    return collate


def drop_unreadable(split: Split, *, chunk: int = 64) -> Split:
    """Leave out, before training starts, the images the library cannot read, by its one rule
    (`captioning.pipeline.read_images`); each is noted in the split's report and counted as missing."""
    bad: dict[str, str] = {}
    items = list(split.image_paths.items())
    for start in range(0, len(items), chunk):  # a chunk at a time: decoded images are not kept
        bad.update(read_images(items[start:start + chunk]).problems)
    if bad:
        split.report.notes.extend(f"unreadable image skipped: {problem}" for problem in bad.values())
        split.records = [r for r in split.records if r.image_id not in bad]
        split.image_paths = {k: v for k, v in split.image_paths.items() if k not in bad}
        split.references = {k: v for k, v in split.references.items() if k not in bad}
        split.report.missing_images += len(bad)
        split.report.images, split.report.captions = len(split.references), len(split.records)
    return split
