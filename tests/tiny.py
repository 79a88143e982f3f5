"""Tiny models built from configs for the tests: nothing is downloaded, everything runs in milliseconds."""

from __future__ import annotations

import torch
from transformers import CLIPVisionConfig, GPT2Config, ViTConfig

from captioning.config import CaptionerConfig, MapperConfig
from captioning.model import PrefixCaptioner

VOCAB = 96


def tiny_vision_config(encoder_type: str = "clip", image_size: int = 32) -> dict:
    if encoder_type == "clip":
        return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                                image_size=image_size, patch_size=8, projection_dim=24).to_dict()
    return ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     image_size=image_size, patch_size=8).to_dict()


def tiny_decoder_config(vocab_size: int = VOCAB, initializer_range: float = 0.3) -> dict:
    # A wide init makes the random model's next-token distributions peaked, so decoding paths that are
    # mathematically equal do not flip on float ties.
    return GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                      bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1,
                      initializer_range=initializer_range).to_dict()


def tiny_captioner(encoder_type: str = "clip", mapper: str = "mlp", prefix_length: int = 3, seed: int = 0,
                   freeze_decoder="none", freeze_encoder: bool = True, vocab_size: int = VOCAB) -> PrefixCaptioner:
    torch.manual_seed(seed)
    config = CaptionerConfig(
        encoder_type=encoder_type,
        encoder_config=tiny_vision_config(encoder_type),
        decoder_config=tiny_decoder_config(vocab_size),
        prefix_length=prefix_length,
        mapper=MapperConfig(type=mapper, num_layers=1, num_heads=4, clip_length=2),
        encoder_name="tiny-" + encoder_type,
        decoder_name="tiny-gpt2",
        freeze_encoder=freeze_encoder,
        freeze_decoder=freeze_decoder,
    )
    return PrefixCaptioner(config).eval()
