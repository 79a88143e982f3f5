"""Protects `data.augment` (trainer/augment.py) and `training.lr` (trainer/optim.py) below the training loop:
each transform does what torchvision's documents (crop boxes inside the image and the scale range, with the
centre-crop fallback; flips mirror; rotations stay within the bound; jitter changes pixels), the same seed
gives the same images and everything off is the identity; the config refuses augmentation over cached
embeddings and encoder rates for a frozen encoder, each with what to do; the optimiser gets one group per
part at its own rate."""

import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.datasets import CaptionRecord, SplitReport
from captioning.preprocessing import make_image_processor
from helpers import tiny_captioner
from trainer.augment import (
    AugmentConfig,
    Augmenter,
    crop_box,
    flip_problem,
    jitter,
    left_right_captions,
    make_augmenter,
)
from trainer.config import ConfigError, config_from_dict
from trainer.data import CaptionDataset, Split
from trainer.optim import LearningRates, parameter_groups, part_lrs

MINIMAL = {"experiment": {"name": "aug"}, "data": {"path": "d"}}


def picture(width: int = 40, height: int = 30, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


# ------------------------------------------------------------------------------------------------
# The transforms
# ------------------------------------------------------------------------------------------------

def test_everything_off_by_default_is_the_identity():
    config = AugmentConfig()
    assert make_augmenter(config, make_image_processor("clip", 32), seed=0) is None
    image = picture()
    assert Augmenter(config, (32, 32)).augment(image, epoch=0, index=0) is image


def test_crop_boxes_lie_inside_the_image_and_the_scale_range():
    rng = random.Random(0)
    for _ in range(500):
        left, top, w, h = crop_box(40, 30, (0.3, 0.7), (3 / 4, 4 / 3), rng)
        assert 0 <= left and 0 <= top and left + w <= 40 and top + h <= 30
        # rounding each side to whole pixels moves the area share by at most a pixel row and column
        assert 0.3 - 0.06 <= w * h / (40 * 30) <= 0.7 + 0.06
        assert 3 / 4 - 0.1 <= w / h <= 4 / 3 + 0.1


def test_crop_falls_back_to_the_centre_crop_clamped_to_the_ratio():
    # a 100 x 10 strip: no box with aspect ratio in [1, 1] and >= 90% of the area fits, in 10 tries or ever
    assert crop_box(100, 10, (0.9, 1.0), (1.0, 1.0), random.Random(0)) == (45, 0, 10, 10)
    assert crop_box(10, 100, (0.9, 1.0), (1.0, 2.0), random.Random(0)) == (0, 45, 10, 10)
    assert crop_box(40, 30, (1.0, 1.0), (0.5, 2.0), random.Random(0))[2:] == (40, 30)  # the whole image fits


def test_random_crop_is_resized_to_the_encoder_input():
    config = AugmentConfig(crop_scale=[0.2, 0.5])
    out = Augmenter(config, (32, 32)).augment(picture(), epoch=0, index=0)
    assert out.size == (32, 32)


def test_flip_mirrors_the_image():
    image = picture()
    out = Augmenter(AugmentConfig(flip_probability=1.0), (32, 32)).augment(image, 0, 0)
    assert np.array_equal(pixels(out), pixels(image)[:, ::-1])
    flips = [not np.array_equal(pixels(Augmenter(AugmentConfig(flip_probability=0.5), (32, 32)).augment(image, 0, i)),
                                pixels(image)) for i in range(200)]
    assert 60 < sum(flips) < 140  # about half


def test_rotation_angle_is_bounded():
    image = picture(41, 41)
    augmenter = Augmenter(AugmentConfig(rotation_degrees=10), (32, 32))
    for index in range(20):
        out = augmenter.augment(image, 0, index)
        angle = augmenter.rng(0, index).uniform(-10, 10)  # the draw the augmenter made
        assert -10 <= angle <= 10
        expected = image.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(0, 0, 0))
        assert np.array_equal(pixels(out), pixels(expected)) and out.size == image.size
    # a 90 degree bound does turn a square image by more than 10 degrees sometimes: corners go black
    wide = Augmenter(AugmentConfig(rotation_degrees=90), (32, 32))
    white = Image.new("RGB", (41, 41), (255, 255, 255))
    assert max((pixels(wide.augment(white, 0, i)) == 0).all(axis=2).sum() for i in range(20)) > 100


@pytest.mark.parametrize("key", ["brightness", "contrast", "saturation", "hue"])
def test_each_jitter_changes_pixels(key):
    image = picture()
    out = Augmenter(AugmentConfig(**{key: 0.4}), (32, 32)).augment(image, 0, 0)
    assert out.size == image.size and out.mode == "RGB"
    assert np.abs(pixels(out) - pixels(image)).mean() > 1


def test_jitter_factors_of_one_and_no_hue_shift_keep_the_image():
    image = picture()
    same = jitter(image, {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0})
    assert np.array_equal(pixels(same), pixels(image))
    dark = jitter(image, {"brightness": 0.0})
    assert pixels(dark).max() == 0


def test_same_seed_epoch_and_index_give_the_same_image():
    config = AugmentConfig(crop_scale=[0.3, 1.0], flip_probability=0.5, rotation_degrees=15, brightness=0.3,
                           contrast=0.3, saturation=0.3, hue=0.1)
    image = picture()
    a, b = Augmenter(config, (32, 32), seed=3), Augmenter(config, (32, 32), seed=3)
    assert np.array_equal(pixels(a.augment(image, 1, 5)), pixels(b.augment(image, 1, 5)))
    others = [a.augment(image, 2, 5), a.augment(image, 1, 6), Augmenter(config, (32, 32), seed=4).augment(image, 1, 5)]
    assert all(not np.array_equal(pixels(o), pixels(a.augment(image, 1, 5))) for o in others)


def split_of(folder, count=3):
    from helpers import write_images

    paths = write_images(folder, count)
    records = [CaptionRecord(image_id=f"i{k}", image_path=p, caption=f"a picture {k}") for k, p in enumerate(paths)]
    return Split(name="train", records=records, references={r.image_id: [r.caption] for r in records},
                 image_paths={r.image_id: r.image_path for r in records}, report=SplitReport())


def test_dataset_augments_per_epoch_and_not_without_augment(tmp_path):
    processor = make_image_processor("clip", 32)
    split = split_of(tmp_path)
    plain = CaptionDataset(split, processor)
    augmenter = make_augmenter(AugmentConfig(crop_scale=[0.2, 0.6], brightness=0.5), processor, seed=0)
    first, second = CaptionDataset(split, processor, augment=augmenter), CaptionDataset(split, processor, augment=augmenter)
    epoch0 = first[0]["pixel_values"]
    assert torch.equal(epoch0, second[0]["pixel_values"])  # reproducible
    assert not torch.equal(epoch0, plain[0]["pixel_values"])
    first.set_epoch(1)
    assert not torch.equal(epoch0, first[0]["pixel_values"])  # a fresh draw each epoch
    plain.set_epoch(1)
    assert torch.equal(plain[0]["pixel_values"], CaptionDataset(split, processor)[0]["pixel_values"])
    # cached embeddings are never augmented
    cached = CaptionDataset(split, processor, {r.image_id: torch.ones(4) for r in split.records}, augment=augmenter)
    assert torch.equal(cached[0]["image_embeds"], torch.ones(4))


# ------------------------------------------------------------------------------------------------
# Left/right captions and the config's refusals
# ------------------------------------------------------------------------------------------------

def test_left_right_captions_are_found():
    captions = ["a red circle on the left", "a square to the right of a circle", "the leftmost dog",
                "a bright light", "a copyright notice", "a blue square"]
    assert left_right_captions(captions) == captions[:3]


def test_flip_is_refused_for_left_right_captions_unless_allowed():
    captions = ["a red circle on the left", "a blue square"]
    problem = flip_problem(AugmentConfig(flip_probability=0.5), captions)
    assert problem.startswith("data.augment.flip_probability: 0.5 would mirror training images, but 1 of 2 "
                              "training captions name left or right (e.g. 'a red circle on the left')")
    assert "data.augment.allow_flip_with_left_right=true" in problem and "flip_probability=0" in problem
    assert flip_problem(AugmentConfig(flip_probability=0.5, allow_flip_with_left_right=True), captions) is None
    assert flip_problem(AugmentConfig(flip_probability=0.5), ["a blue square"]) is None
    assert flip_problem(AugmentConfig(), captions) is None


def config_with(**sections):
    data = {k: dict(v) for k, v in MINIMAL.items()}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return config_from_dict(data)


def test_augmentation_with_cached_embeddings_is_refused_with_what_to_do():
    with pytest.raises(ConfigError) as error:
        config_with(data={"augment": {"crop_scale": [0.5, 1.0], "hue": 0.1}})  # frozen encoder + cache: defaults
    (message,) = error.value.errors
    assert message.startswith("data.augment: data.augment.crop_scale, data.augment.hue asked for, but with "
                              "model.freeze_encoder true and data.cache_embeddings true")
    assert "set data.cache_embeddings=false" in message and "model.freeze_encoder=false" in message
    # either way out is accepted
    assert config_with(data={"augment": {"hue": 0.1}, "cache_embeddings": False}).data.augment.hue == 0.1
    assert config_with(data={"augment": {"hue": 0.1}}, model={"freeze_encoder": False}).data.augment.hue == 0.1


@pytest.mark.parametrize(("augment", "message"), [
    ({"crop_scale": [0.5]}, "data.augment.crop_scale: must be [min, max] with 0 < min <= max <= 1"),
    ({"crop_scale": [0.9, 0.5]}, "data.augment.crop_scale: must be [min, max] with 0 < min <= max <= 1"),
    ({"crop_ratio": [0, 2]}, "data.augment.crop_ratio: must be [min, max] with 0 < min <= max (width / height)"),
    ({"flip_probability": 1.5}, "data.augment.flip_probability: must be in [0, 1], got 1.5"),
    ({"rotation_degrees": -3}, "data.augment.rotation_degrees: must be in [0, 180], got -3"),
    ({"hue": 0.7}, "data.augment.hue: must be in [0, 0.5], got 0.7"),
    ({"brightness": -1}, "data.augment.brightness: must be >= 0, got -1"),
    ({"flip_probabilty": 0.5}, "Unknown config key 'data.augment.flip_probabilty' (did you mean 'data.augment.flip_probability'?)"),
])
def test_bad_augment_values_are_explained(augment, message):
    with pytest.raises(ConfigError) as error:
        config_with(data={"augment": augment, "cache_embeddings": False})
    assert any(e.startswith(message) for e in error.value.errors), error.value.errors


def test_per_part_rates_need_the_part_to_be_trained():
    with pytest.raises(ConfigError) as error:
        config_with(training={"lr": {"encoder": 3e-5}})  # model.freeze_encoder defaults to true
    assert error.value.errors == [
        "training.lr.encoder: 3e-05 is a rate for the image encoder, but model.freeze_encoder is true, so the encoder "
        "is not trained; set model.freeze_encoder=false to fine-tune it, or remove training.lr.encoder"]
    with pytest.raises(ConfigError, match=r"training.lr.decoder: 0.001 is a rate for the decoder, but "
                                          r"model.freeze_decoder is 'all'"):
        config_with(training={"lr": {"decoder": 1e-3}}, model={"freeze_decoder": "all"})
    with pytest.raises(ConfigError, match=r"training.lr.mapper: must be > 0, got -1"):
        config_with(training={"lr": {"mapper": -1}})
    with pytest.raises(ConfigError, match=r"training.lr is now a section: use training.learning_rate: 3e-05"):
        config_with(training={"lr": 3e-5})
    cfg = config_with(training={"lr": {"encoder": 3e-5}}, model={"freeze_encoder": False})
    assert cfg.training.lr == LearningRates(encoder=3e-5)


def test_fine_tuning_overrides_read_from_the_command_line(tmp_path):
    from trainer.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("experiment: {name: ft}\ndata: {path: d}\n")
    cfg = load_config(path, ["model.freeze_encoder=false", "training.lr.encoder=3e-5", "data.augment.crop_scale=[0.6, 1]",
                             "data.augment.brightness=0.2"])
    assert cfg.training.lr.encoder == pytest.approx(3e-5) and cfg.data.augment.crop_scale == [0.6, 1.0]
    assert cfg.data.augment.brightness == 0.2 and cfg.data.augment.flip_probability == 0.0


# ------------------------------------------------------------------------------------------------
# Optimiser groups
# ------------------------------------------------------------------------------------------------

def test_one_rate_keeps_the_two_groups_of_before():
    model = tiny_captioner(freeze_encoder=False)
    groups = parameter_groups(model, 1e-3, LearningRates(), 0.01)
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(1e-3, 0.01), (1e-3, 0.0)]
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert [id(p) for g in groups for p in g["params"]] == [id(p) for p in trainable if p.ndim >= 2] + [
        id(p) for p in trainable if p.ndim < 2]
    assert part_lrs(torch.optim.AdamW(groups)) == {}


def test_per_part_rates_give_one_group_pair_per_trained_part():
    model = tiny_captioner(freeze_encoder=False)
    groups = parameter_groups(model, 1e-3, LearningRates(encoder=3e-5, decoder=2e-4), 0.01)
    names = [g["name"] for g in groups]
    assert names == ["encoder", "encoder (no decay)", "mapper", "mapper (no decay)", "decoder", "decoder (no decay)"]
    by_name = {g["name"]: g for g in groups}
    assert by_name["encoder"]["lr"] == 3e-5 and by_name["mapper"]["lr"] == 1e-3 and by_name["decoder"]["lr"] == 2e-4
    assert by_name["decoder (no decay)"]["weight_decay"] == 0.0 and by_name["decoder"]["weight_decay"] == 0.01
    for part in ("encoder", "mapper", "decoder"):
        ids = {id(p) for name in (part, f"{part} (no decay)") for p in by_name[name]["params"]}
        assert ids == {id(p) for p in getattr(model, part).parameters()}, part
    optimizer = torch.optim.AdamW(groups)
    assert part_lrs(optimizer) == {"encoder": 3e-5, "mapper": 1e-3, "decoder": 2e-4}
    # the scheduler scales every group by the same factor
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    optimizer.step()
    scheduler.step()
    assert part_lrs(optimizer) == pytest.approx({"encoder": 1.5e-5, "mapper": 5e-4, "decoder": 1e-4})


def test_frozen_parts_get_no_group():
    model = tiny_captioner(freeze_encoder=True, freeze_decoder="all")
    groups = parameter_groups(model, 1e-3, LearningRates(mapper=5e-3), 0.0)
    assert {g["name"] for g in groups} == {"mapper", "mapper (no decay)"}
    assert math.isclose(groups[0]["lr"], 5e-3)
