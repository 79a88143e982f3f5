"""Protects captioning.config's model rules and the pretrained loaders' messages: every problem of a captioner
config is listed at once, keyed by field (what the trainer reports under model.), `validate()` raises them
all, the decoder's sizes are checked before any module is built, and a missing folder or an offline hub
name is one clear ConfigValueError instead of transformers' OSError. Nothing is downloaded."""

import pytest

from captioning.config import CaptionerConfig, ConfigValueError, MapperConfig, config_problems
from captioning.hub import PretrainedLoadError
from captioning.model import load_decoder, load_vision_encoder
from captioning.tokenization import load_tokenizer
from helpers import tiny_decoder_config, tiny_vision_config


def test_every_problem_is_listed_keyed_by_field():
    problems = config_problems({"encoder_type": "resnet", "prefix_length": 10, "freeze_decoder": "half",
                                "mapper": {"type": "grid", "hidden_size": -1, "num_heads": 0}})
    assert problems == [
        "encoder_type: Unknown encoder type 'resnet'; allowed encoder types = ['clip', 'vit']",
        "mapper.hidden_size: must be >= 0 or null (null = ClipCap's width, 0 = a single Linear + Tanh), got -1",
        "mapper.num_heads: must be >= 1, got 0",
        "prefix_length: the grid mapper pools patches into a g x g grid, so prefix_length must be a square; "
        "got 10 (try 9 or 16)",
        "freeze_decoder: must be 'none', 'all' or a number of blocks >= 0, got 'half'",
    ]
    assert config_problems({"mapper": {"type": "mpl"}}) == [
        "mapper.type: Unknown mapper 'mpl'; allowed mappers = ['mlp', 'transformer', 'grid'] (did you mean 'mlp'?)"]
    assert config_problems({"prefix_length": "4"}) == ["prefix_length: must be an int >= 1, got '4'"]
    # fields left out are not checked; fine values give no problem; hidden_size 0 is the single Linear + Tanh
    assert config_problems({}) == []
    assert config_problems({"prefix_length": 9, "freeze_decoder": 2, "mapper": MapperConfig("grid", 0)}) == []


def test_validate_raises_all_problems_at_once():
    config = CaptionerConfig(encoder_type="clip", encoder_config=tiny_vision_config(),
                             decoder_config=tiny_decoder_config(), prefix_length=0, freeze_decoder=-1)
    with pytest.raises(ConfigValueError) as info:
        config.validate()
    assert info.value.problems == ["prefix_length: must be >= 1, got 0",
                                   "freeze_decoder: must be 'none', 'all' or a number of blocks >= 0, got -1"]
    assert str(info.value) == "; ".join(info.value.problems)


def test_decoder_sizes_are_checked_against_heads_and_frozen_blocks():
    decoder = {**tiny_decoder_config(), "n_head": 5}  # width 32
    assert config_problems({"decoder_config": decoder}) == [
        "decoder_config: the decoder width 32 is not divisible by n_head=5; choose from the divisors of 32: "
        "1, 2, 4, 8, 16, 32"]
    values = {"mapper": {"type": "transformer", "num_heads": 3}, "freeze_decoder": 3}
    assert config_problems(values, decoder_width=32, decoder_heads=4, decoder_blocks=2) == [
        "mapper.num_heads: the decoder width 32 is not divisible by mapper.num_heads=3; choose from the divisors "
        "of 32: 1, 2, 4, 8, 16, 32",
        "freeze_decoder: 3 blocks to freeze but the decoder has only 2 blocks; use 'all' or a smaller N"]
    # an MLP mapper has no heads: its num_heads is not checked against the width
    assert config_problems({"mapper": {"type": "mlp", "num_heads": 3}}, decoder_width=32) == []


def test_a_missing_folder_is_one_clear_error(tmp_path):
    missing = str(tmp_path / "nope")
    for load in (lambda: load_vision_encoder(missing), lambda: load_decoder(missing), lambda: load_tokenizer(missing)):
        with pytest.raises(PretrainedLoadError, match=rf"folder '{missing}' does not exist") as info:
            load()
        assert isinstance(info.value, ConfigValueError) and not info.value.offline
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainedLoadError, match="cannot load the decoder from folder") as info:
        load_decoder(str(tmp_path / "empty"))
    assert info.value.what == "decoder"


def test_a_hub_name_offline_says_so_and_how_to_use_a_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedLoadError) as info:
        load_vision_encoder("openai/clip-vit-base-patch32")
    message = str(info.value)
    assert info.value.offline and info.value.what == "vision encoder"
    assert "is not a local folder" in message and "offline (HF_HUB_OFFLINE is set)" in message
    assert "point at a local folder with config.json + weights" in message


def test_grid_cells_must_fit_the_encoders_patch_grid():
    grid16 = {"prefix_length": 16, "mapper": {"type": "grid"}}
    assert config_problems(grid16, encoder_patches=4) == []  # 4 x 4 cells from 4 x 4 patches
    assert config_problems(grid16, encoder_patches=3) == [
        "prefix_length: the grid mapper's 4 x 4 cells need at least that many patches per side, but the encoder "
        "gives 3 x 3 (image_size / patch_size); use prefix_length <= 9 or a larger model.image_size"]
    assert config_problems({**grid16, "mapper": {"type": "mlp"}}, encoder_patches=3) == []  # pooled: no grid
