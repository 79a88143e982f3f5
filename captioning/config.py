"""The prefix captioner's configuration: what a zoo entry's `config.json` holds.

A `CaptionerConfig` carries everything needed to rebuild a model offline: the vision encoder's and the
decoder's full transformers config dicts (not just their hub names), the mapping network, the prefix
length K and the freezing policy. The hub names are kept for the record (and for the model card), but a
zoo folder never needs them to load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

ENCODER_TYPES = ("clip", "vit")
MAPPER_TYPES = ("mlp", "transformer", "grid")
PATCH_MAPPERS = ("grid",)  # mappers that read the encoder's patch tokens, not its single pooled embedding


def grid_side(prefix_length: int) -> int | None:
    """The grid mapper's g for K = g * g prefix embeddings; None when K is not a square."""
    side = round(prefix_length ** 0.5)
    return side if side * side == prefix_length else None
FORMAT_NAME = "caption-zoo/prefix-captioner"
FORMAT_VERSION = 1


class ConfigValueError(ValueError):
    """A captioner config value is impossible; the message says which, what was received and what is allowed."""


@dataclass
class MapperConfig:
    """The mapping network from the image features to K prefix embeddings of the decoder's width.

    type: "mlp" (Linear -> Tanh -> Linear, ClipCap's MLP) or "transformer" (ClipCap's transformer mapper),
        both from the single pooled image embedding; or "grid": the encoder's patch tokens, average-pooled
        to a g x g grid (K = g * g) and each projected by LayerNorm -> Linear -> GELU -> Linear (LLaVA's
        projector), so every prefix embedding sees one region of the image.
    hidden_size: mlp only. None = ClipCap's (embed_dim + K * n_embd) // 2; 0 = a single Linear + Tanh.
    num_layers, num_heads: transformer only.
    clip_length: transformer only: how many tokens the image embedding is projected into before the
        learned constant prefix tokens attend to them.
    """

    type: str = "mlp"
    hidden_size: int | None = None
    num_layers: int = 8
    num_heads: int = 8
    clip_length: int = 10

    def validate(self) -> None:
        if self.type not in MAPPER_TYPES:
            raise ConfigValueError(f"Unknown mapper {self.type!r}; allowed mappers = {list(MAPPER_TYPES)}")
        if self.hidden_size is not None and self.hidden_size < 0:
            raise ConfigValueError(f"mapper.hidden_size must be >= 0 or null, got {self.hidden_size}")
        for name in ("num_layers", "num_heads", "clip_length"):
            if getattr(self, name) < 1:
                raise ConfigValueError(f"mapper.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class CaptionerConfig:
    """Everything that defines a prefix captioner's architecture and freezing.

    encoder_type: "clip" (CLIPVisionModelWithProjection; the projected image embedding is used) or "vit"
        (ViTModel; the pooled output is used).
    encoder_name / decoder_name: where the weights originally came from (hub name or folder); informational.
    encoder_config / decoder_config: the full transformers config dicts, so the model rebuilds offline.
    prefix_length: K, the number of visual prefix embeddings prepended to the decoder's input.
    freeze_encoder: the vision encoder does not train (the default, as in ClipCap).
    freeze_decoder: "none" (GPT-2 trains), "all" (only the mapper, and the encoder if unfrozen, train), or
        an int N: the token/position embeddings (and so the tied LM head) and the first N blocks are frozen.
    """

    encoder_type: str
    encoder_config: dict[str, Any]
    decoder_config: dict[str, Any]
    prefix_length: int = 10
    mapper: MapperConfig = field(default_factory=MapperConfig)
    encoder_name: str = ""
    encoder_revision: str | None = None
    decoder_name: str = ""
    freeze_encoder: bool = True
    freeze_decoder: str | int = "none"

    def validate(self) -> None:
        if self.encoder_type not in ENCODER_TYPES:
            raise ConfigValueError(
                f"Unknown encoder type {self.encoder_type!r}; allowed encoder types = {list(ENCODER_TYPES)}"
            )
        if not isinstance(self.prefix_length, int) or self.prefix_length < 1:
            raise ConfigValueError(f"prefix_length must be an int >= 1, got {self.prefix_length!r}")
        if self.mapper.type in PATCH_MAPPERS and grid_side(self.prefix_length) is None:
            raise ConfigValueError(f"the grid mapper pools patches into a g x g grid, so prefix_length must be a square "
                                   f"(1, 4, 9, 16, ...), got {self.prefix_length}")
        fd = self.freeze_decoder
        if isinstance(fd, bool) or not (fd in ("none", "all") or (isinstance(fd, int) and fd >= 0)):
            raise ConfigValueError(f"freeze_decoder must be 'none', 'all' or an int >= 0, got {fd!r}")
        self.mapper.validate()

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaptionerConfig:
        data = dict(data)
        data.pop("format", None)
        version = data.pop("format_version", FORMAT_VERSION)
        if version > FORMAT_VERSION:
            raise ConfigValueError(
                f"config format_version {version} is newer than this Caption Zoo understands ({FORMAT_VERSION}); "
                "upgrade caption-zoo to load it"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"training", "image_processor", "encoder_fingerprint"})
        if unknown:
            raise ConfigValueError(f"Unknown captioner config keys {unknown}; known keys = {sorted(known)}")
        for required in ("encoder_type", "encoder_config", "decoder_config"):
            if required not in data:
                raise ConfigValueError(f"captioner config is missing {required!r}")
        mapper = data.get("mapper") or {}
        if isinstance(mapper, dict):
            unknown_m = sorted(set(mapper) - {f.name for f in dataclasses.fields(MapperConfig)})
            if unknown_m:
                raise ConfigValueError(f"Unknown mapper config keys {unknown_m}")
            mapper = MapperConfig(**mapper)
        cfg = cls(**{k: v for k, v in data.items() if k in known and k != "mapper"}, mapper=mapper)
        cfg.validate()
        return cfg
