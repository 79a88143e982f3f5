"""The prefix captioner: vision encoder -> mapping network -> K prefix embeddings -> GPT-2.

Follows ClipCap (Mokady et al., 2021) and the CLIP-GPT2 / ViT-GPT2 projects of the field:
- the vision encoder is any CLIP checkpoint (its *projected* image embedding, as
  `openai/clip-vit-base-patch32` gives) or a ViT (its pooled output);
- the mapping network turns that one embedding into K embeddings of GPT-2's width (`n_embd`, read from
  the decoder's config, never a literal);
- they are prepended to GPT-2's token embeddings; the loss covers the caption tokens only (prefix and
  padding positions are labelled -100; every caption ends with EOS, whose label is kept).

The class also exposes the three calls the generation engine needs (`prefill`, `step`, `reorder_cache`);
the engine knows nothing about images or tokenizers beyond them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    DynamicCache,
    ViTConfig,
    ViTModel,
)
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .config import PATCH_MAPPERS, CaptionerConfig, ConfigValueError, MapperConfig, frozen_blocks_problem
from .gpt2_runner import Gpt2Runner, KVCache, runner_for, unsupported_reason
from .hub import load_pretrained
from .mapping import build_mapper

IGNORE_INDEX = -100  # labels at prefix and padding positions; never a real token id


# ----------------------------------------------------------------------------------------------------------
# Building the parts


def detect_encoder_type(model_type: str) -> str:
    """Map a transformers `model_type` to our encoder type ("clip" or "vit")."""
    if model_type in ("clip", "clip_vision_model"):
        return "clip"
    if model_type == "vit":
        return "vit"
    raise ConfigValueError(
        f"Unsupported vision encoder model_type {model_type!r}; supported: CLIP checkpoints (clip, "
        "clip_vision_model) and ViT (vit). Use encoder_type='clip' or 'vit' with a matching checkpoint."
    )


def vision_config_from_dict(encoder_type: str, config: dict[str, Any]):
    if encoder_type == "clip":
        config = dict(config)
        if config.get("model_type") == "clip" and "vision_config" in config:  # a full CLIP config was given
            config = dict(config["vision_config"])
        config.pop("model_type", None)
        return CLIPVisionConfig(**config)
    if encoder_type == "vit":
        config = {k: v for k, v in config.items() if k != "model_type"}
        return ViTConfig(**config)
    raise ConfigValueError(f"Unknown encoder type {encoder_type!r}; allowed encoder types = ['clip', 'vit']")


def build_vision_encoder(encoder_type: str, config) -> nn.Module:
    """A vision encoder at random init from its config (the zoo loader fills in the weights)."""
    if encoder_type == "clip":
        return CLIPVisionModelWithProjection(config)
    return ViTModel(config, add_pooling_layer=True)


def load_vision_encoder(name: str, encoder_type: str = "auto", revision: str | None = None) -> tuple[str, nn.Module]:
    """Load pretrained encoder weights from a hub name or a local folder; returns (encoder_type, module).

    A folder that does not exist, or a hub name that is not available (offline), raises PretrainedLoadError."""
    if encoder_type not in ("auto", "clip", "vit"):
        raise ConfigValueError(f"Unknown encoder type {encoder_type!r}; allowed: 'auto', 'clip', 'vit'")

    def load() -> tuple[str, nn.Module]:
        kind = encoder_type
        if kind == "auto":
            kind = detect_encoder_type(AutoConfig.from_pretrained(name, revision=revision).model_type)
        if kind == "clip":
            return "clip", CLIPVisionModelWithProjection.from_pretrained(name, revision=revision)
        return "vit", ViTModel.from_pretrained(name, revision=revision, add_pooling_layer=True)

    return load_pretrained(load, name, "vision encoder")


def load_decoder(name: str) -> nn.Module:
    """Load a pretrained GPT-2-family decoder from a hub name or a local folder (PretrainedLoadError if it cannot)."""
    return load_pretrained(lambda: AutoModelForCausalLM.from_pretrained(name), name, "decoder")


def decoder_config_from_dict(config: dict[str, Any]):
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ConfigValueError(f"decoder config has unknown model_type {model_type!r}; expected a GPT-2-family model")
    return CONFIG_MAPPING[model_type].from_dict({k: v for k, v in config.items() if k != "model_type"})


def encoder_embed_dim(encoder_type: str, config, patches: bool = False) -> int:
    """Width of the image features the mapper receives: the single (projected) embedding, or patch tokens."""
    return config.projection_dim if encoder_type == "clip" and not patches else config.hidden_size


# ----------------------------------------------------------------------------------------------------------
# The model


class PrefixCaptioner(nn.Module):
    """Vision encoder + mapping network + GPT-2-family decoder; see the module docstring."""

    def __init__(self, config: CaptionerConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__()
        # Every rule, with the decoder's sizes (transformers' defaults filled in), checked before any module is built.
        decoder_config = decoder.config if decoder is not None else decoder_config_from_dict(config.decoder_config)
        vision_config = encoder.config if encoder is not None else vision_config_from_dict(
            config.encoder_type, config.encoder_config)
        image_size, patch_size = getattr(vision_config, "image_size", None), getattr(vision_config, "patch_size", None)
        config.validate(decoder_width=getattr(decoder_config, "hidden_size", None),
                        decoder_heads=getattr(decoder_config, "num_attention_heads", None),
                        decoder_blocks=getattr(decoder_config, "num_hidden_layers", None),
                        encoder_patches=image_size // patch_size if image_size and patch_size else None)
        self.config = config
        self.encoder = encoder if encoder is not None else build_vision_encoder(config.encoder_type, vision_config)
        self.decoder = decoder if decoder is not None else AutoModelForCausalLM.from_config(decoder_config)
        self.n_embd = self.decoder.get_input_embeddings().embedding_dim
        self.uses_patches = config.mapper.type in PATCH_MAPPERS
        self.embed_dim = encoder_embed_dim(config.encoder_type, self.encoder.config, self.uses_patches)
        self.mapper = build_mapper(config.mapper, self.embed_dim, self.n_embd, config.prefix_length)
        self.apply_freezing()

    # -- construction ------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained_parts(
        cls,
        encoder: str = "openai/clip-vit-base-patch32",
        decoder: str = "gpt2",
        *,
        prefix_length: int = 10,
        mapper: MapperConfig | None = None,
        encoder_type: str = "auto",
        encoder_revision: str | None = None,
        freeze_encoder: bool = True,
        freeze_decoder: str | int = "none",
    ) -> PrefixCaptioner:
        """Pretrained encoder and decoder (hub names or local folders) and a fresh mapper: a training start."""
        encoder_type, encoder_module = load_vision_encoder(encoder, encoder_type, encoder_revision)
        decoder_module = load_decoder(decoder)
        config = CaptionerConfig(
            encoder_type=encoder_type,
            encoder_config=encoder_module.config.to_dict(),
            decoder_config=decoder_module.config.to_dict(),
            prefix_length=prefix_length,
            mapper=mapper or MapperConfig(),
            encoder_name=encoder,
            encoder_revision=encoder_revision,
            decoder_name=decoder,
            freeze_encoder=freeze_encoder,
            freeze_decoder=freeze_decoder,
        )
        return cls(config, encoder=encoder_module, decoder=decoder_module)

    # -- freezing ----------------------------------------------------------------------------------------

    def decoder_blocks(self) -> nn.ModuleList:
        base = self.decoder.base_model
        for name in ("h", "layers", "blocks"):
            if hasattr(base, name):
                return getattr(base, name)
        raise ConfigValueError(f"cannot find the transformer blocks of decoder {type(self.decoder).__name__}")

    def apply_freezing(self) -> None:
        """Set requires_grad from the config; frozen parts also go to eval mode in `train()`."""
        for p in self.parameters():
            p.requires_grad_(True)
        if self.config.freeze_encoder:
            self.encoder.requires_grad_(False)
        fd = self.config.freeze_decoder
        if fd == "all":
            self.decoder.requires_grad_(False)
        elif isinstance(fd, int) and fd > 0:
            blocks = self.decoder_blocks()
            problem = frozen_blocks_problem(fd, len(blocks))
            if problem:
                raise ConfigValueError(f"freeze_decoder: {problem}")
            # Embeddings sit below block 0: freezing the first N blocks freezes them (and the tied LM head).
            self.decoder.get_input_embeddings().requires_grad_(False)
            for name in ("wpe", "embed_positions"):
                if hasattr(self.decoder.base_model, name):
                    getattr(self.decoder.base_model, name).requires_grad_(False)
            for block in blocks[:fd]:
                block.requires_grad_(False)

    def train(self, mode: bool = True) -> PrefixCaptioner:
        super().train(mode)
        if mode and self.config.freeze_encoder:
            self.encoder.eval()  # a frozen encoder must not run dropout / update statistics
        return self

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and frozen parameters; a tied tensor (GPT-2's wte / LM head) counts once."""
        counts = {"trainable": 0, "frozen": 0}
        parts = {"encoder": self.encoder, "mapper": self.mapper, "decoder": self.decoder}
        seen: set[int] = set()
        for part_name, module in parts.items():
            part_total = 0
            for p in module.parameters():  # parameters() already skips shared (tied) tensors within a module
                if id(p) in seen:
                    continue
                seen.add(id(p))
                part_total += p.numel()
                counts["trainable" if p.requires_grad else "frozen"] += p.numel()
            counts[part_name] = part_total
        counts["total"] = counts["trainable"] + counts["frozen"]
        return counts

    # -- forward (training) -------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.mapper.parameters()).device

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, embed_dim): CLIP's projected embedding or ViT's pooled output; with a patch
        mapper (grid) -> (B, N, hidden): the last layer's patch tokens (the class token left out)."""
        out = self.encoder(pixel_values=pixel_values)
        if self.uses_patches:
            return out.last_hidden_state[:, 1:]
        return out.image_embeds if self.config.encoder_type == "clip" else out.pooler_output

    def prefix_embeddings(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) -> (B, K, n_embd), in the decoder's dtype."""
        prefix = self.mapper(image_embeds.to(next(self.mapper.parameters()).dtype))
        return prefix.to(self.decoder.get_input_embeddings().weight.dtype)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *, pixel_values: torch.Tensor | None = None,
                image_embeds: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Teacher-forced loss over the caption tokens only.

        input_ids / attention_mask: (B, T) right-padded captions, each ending with EOS (see `encode_captions`).
        Either pixel_values (B, 3, H, W) or precomputed image_embeds (B, embed_dim) is given.
        """
        if image_embeds is None:
            if pixel_values is None:
                raise ValueError("forward needs pixel_values or image_embeds")
            image_embeds = self.encode_images(pixel_values)
        prefix = self.prefix_embeddings(image_embeds)  # (B, K, n_embd)
        batch, k = prefix.shape[:2]
        token_embeds = self.decoder.get_input_embeddings()(input_ids)  # (B, T, n_embd)
        inputs_embeds = torch.cat((prefix, token_embeds), dim=1)  # (B, K + T, n_embd)
        prefix_mask = torch.ones(batch, k, dtype=attention_mask.dtype, device=attention_mask.device)
        full_mask = torch.cat((prefix_mask, attention_mask), dim=1)  # (B, K + T)
        # Labels come from the mask, not the pad id: GPT-2's pad is its EOS, which is a real target.
        caption_labels = input_ids.masked_fill(attention_mask == 0, IGNORE_INDEX)  # (B, T)
        labels = torch.cat((torch.full((batch, k), IGNORE_INDEX, dtype=input_ids.dtype, device=input_ids.device),
                            caption_labels), dim=1)  # (B, K + T)
        out = self.decoder(inputs_embeds=inputs_embeds, attention_mask=full_mask, labels=labels)
        return {"loss": out.loss, "logits": out.logits}

    # -- the generation engine's interface -----------------------------------------------------------------

    def encoder_inputs(self, image_features: torch.Tensor) -> torch.Tensor:
        """Features the engine passes around per image: here the (B, embed_dim) image embedding."""
        return image_features

    def _logits(self, hidden_last: torch.Tensor) -> torch.Tensor:
        return self.decoder.get_output_embeddings()(hidden_last).float()  # (B, V)

    quantize_options = ("int8",)  # the opt-in fast paths `prefill(quantize=...)` accepts

    def quantize_problem(self, quantize: str) -> str | None:
        """Why this model cannot decode with `prefill(quantize=...)`, or None when it can."""
        if quantize not in self.quantize_options:
            return f"quantize must be None or one of {list(self.quantize_options)}, got {quantize!r}"
        return unsupported_reason(self.decoder, quantize)

    def _runner_backend(self, quantize: str | None) -> str | None:
        """The `captioning.gpt2_runner` backend to decode with; None = transformers' own forward."""
        if quantize is not None:
            problem = self.quantize_problem(quantize)
            if problem:
                raise ValueError(f"quantize={quantize!r} cannot run on this model: {problem}; "
                                 "use quantize=None (the exact path)")
            return quantize
        if self.decoder.training:  # dropout is on: keep transformers' forward, which applies it
            return None
        for backend in ("fp32", "plain"):
            if unsupported_reason(self.decoder, backend) is None:
                return backend
        return None

    prefill_takes_max_new_tokens = True  # the engine passes the caption length: the KV buffer is sized once

    def prefill(self, image_features: torch.Tensor, quantize: str | None = None,
                max_new_tokens: int | None = None) -> tuple[torch.Tensor, Any]:
        """Run the K prefix embeddings through the decoder; returns next-token logits (B, V) and the KV cache.

        The LM head runs on the last position only: logits over the prefix positions are never needed.
        A GPT-2 decoder runs on `captioning.gpt2_runner` (in-place KV buffer, oneDNN matmuls on the module's
        own weights); quantize="int8" asks for its int8 path, which changes numerics (the engine records it in
        the settings). max_new_tokens (optional) sizes the runner's KV buffer once for the whole caption.
        """
        prefix = self.prefix_embeddings(image_features)  # (B, K, n_embd)
        backend = self._runner_backend(quantize)
        if backend is not None:
            return runner_for(self.decoder, backend).prefill(prefix, max_new_tokens=max_new_tokens)
        cache = DynamicCache()
        out = self.decoder.base_model(inputs_embeds=prefix, past_key_values=cache, use_cache=True)
        return self._logits(out.last_hidden_state[:, -1]), out.past_key_values

    def step(self, tokens: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """Feed one token per sequence (B,) with the cache; returns next-token logits (B, V)."""
        if isinstance(cache, KVCache):
            return cache.runner.step(tokens, cache)
        out = self.decoder.base_model(input_ids=tokens[:, None], past_key_values=cache, use_cache=True)
        return self._logits(out.last_hidden_state[:, -1]), out.past_key_values

    @staticmethod
    def reorder_cache(cache: Any, index: torch.Tensor) -> Any:
        """Select / repeat rows of the cache (beam search and several captions per image)."""
        if isinstance(cache, KVCache):
            return Gpt2Runner.reorder_cache(cache, index)
        cache.reorder_cache(index)
        return cache

    @property
    def eos_token_id(self) -> int:
        return self.decoder.config.eos_token_id

    @property
    def vocab_size(self) -> int:
        return self.decoder.get_output_embeddings().weight.shape[0]


# ----------------------------------------------------------------------------------------------------------
# Captions <-> tokens


def encode_captions(tokenizer, captions: list[str], max_tokens: int | None = None) -> dict[str, torch.Tensor]:
    """Tokenize captions for training: each ends with EOS; right-padded with a mask.

    Captions longer than max_tokens (EOS included) are truncated, keeping the EOS, so the model always
    learns to stop. The pad id is whatever the tokenizer has (GPT-2's is its EOS); labels come from the
    mask, so padding is never confused with a real EOS target.
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos_token; a captioner needs one to learn where captions end")
    rows = []
    for caption in captions:
        ids = tokenizer(caption.strip(), add_special_tokens=False)["input_ids"]
        if max_tokens is not None:
            ids = ids[: max_tokens - 1]
        rows.append(ids + [eos])
    length = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        attention_mask[i, : len(row)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def module_fingerprint(module: nn.Module) -> str:
    """A content hash of a module's weights (names, shapes, dtypes, bytes): equal weights, equal key.

    Used to share one vision encoder between zoo entries that carry the same encoder weights.
    """
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
