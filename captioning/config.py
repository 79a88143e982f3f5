"""The prefix captioner's configuration: what a zoo entry's `config.json` holds, and every rule on it.

A `CaptionerConfig` carries everything needed to rebuild a model offline: the vision encoder's and the
decoder's full transformers config dicts (not just their hub names), the mapping network, the prefix
length K and the freezing policy. The hub names are kept for the record (and for the model card), but a
zoo folder never needs them to load.

The model rules live here once: `config_problems` lists every problem of a (partial) captioner config as
messages keyed by field ("prefix_length: ...", "mapper.type: ..."); `CaptionerConfig.validate()` raises
them, and the trainer's experiment check reports the same messages under `model.`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

ENCODER_TYPES = ("clip", "vit")
# The dtypes a zoo entry's weights may be stored in (`python -m captioning convert` writes the half ones).
WEIGHT_DTYPES = ("float32", "float16", "bfloat16")
MAPPER_TYPES = ("mlp", "transformer", "grid")
PATCH_MAPPERS = ("grid",)  # mappers that read the encoder's patch tokens, not its single pooled embedding
FREEZE_DECODER_MODES = ("none", "all")  # or an int N: the first N blocks
FORMAT_NAME = "caption-zoo/prefix-captioner"
FORMAT_VERSION = 1


def grid_side(prefix_length: int) -> int | None:
    """The grid mapper's g for K = g * g prefix embeddings; None when K is not a square."""
    side = round(prefix_length ** 0.5)
    return side if side * side == prefix_length else None


class ConfigValueError(ValueError):
    """A captioner config value is impossible; the message says which, what was received and what is allowed.

    ``problems`` lists each problem on its own (keyed by field where there is one); ``str()`` joins them.
    """

    def __init__(self, message: str | list[str]):
        self.problems = [message] if isinstance(message, str) else list(message)
        super().__init__("; ".join(self.problems))


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass
class MapperConfig:
    """The mapping network from the image features to K prefix embeddings of the decoder's width."""

    type: Literal[MAPPER_TYPES] = field(default="mlp", metadata=_doc(
        "'mlp' (Linear -> Tanh -> Linear, ClipCap's MLP) or 'transformer' (ClipCap's transformer mapper), both "
        "from the single pooled image embedding; or 'grid': the encoder's patch tokens average-pooled to a g x g "
        "grid (K = g * g must be a square), each cell projected by LayerNorm -> Linear -> GELU -> Linear "
        "(LLaVA's projector), so every prefix embedding sees one region of the image."))
    hidden_size: int | None = field(default=None, metadata=_doc(
        "mlp only: hidden width; null = ClipCap's (embed_dim + K * n_embd) // 2; 0 = a single Linear + Tanh."))
    num_layers: int = field(default=8, metadata=_doc("transformer only: number of layers."))
    num_heads: int = field(default=8, metadata=_doc(
        "transformer only: attention heads (must divide the decoder width n_embd)."))
    clip_length: int = field(default=10, metadata=_doc(
        "transformer only: tokens the image embedding is projected into before the K learned constant "
        "prefix tokens attend to them."))

    def validate(self) -> None:
        problems = mapper_problems(dataclasses.asdict(self))
        if problems:
            raise ConfigValueError(problems)


# ----------------------------------------------------------------------------------------------------------
# The rules. Each function takes plain values (a field left out is not checked, so a caller that already
# refused a field's type does not hear about it twice) and returns messages "field: what is wrong, got X".


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _did_you_mean(value: Any, allowed: tuple[str, ...]) -> str:
    match = difflib.get_close_matches(str(value), allowed, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def heads_problem(width: int, heads: int, what: str) -> str | None:
    """'... not divisible ...' when `heads` attention heads cannot split a width of `width`; else None."""
    if _is_int(width) and _is_int(heads) and heads >= 1 and width % heads:
        divisors = ", ".join(str(d) for d in range(1, width + 1) if width % d == 0)
        return f"the decoder width {width} is not divisible by {what}={heads}; choose from the divisors of {width}: {divisors}"
    return None


def frozen_blocks_problem(freeze_decoder: Any, blocks: int) -> str | None:
    """Freezing N blocks needs N <= the decoder's block count."""
    if _is_int(freeze_decoder) and _is_int(blocks) and freeze_decoder > blocks:
        return f"{freeze_decoder} blocks to freeze but the decoder has only {blocks} blocks; use 'all' or a smaller N"
    return None


def mapper_problems(mapper: Mapping[str, Any]) -> list[str]:
    """Every problem of a mapper config's given fields, keyed by field ("type: ...")."""
    problems = []
    if "type" in mapper and mapper["type"] not in MAPPER_TYPES:
        problems.append(f"type: Unknown mapper {mapper['type']!r}; allowed mappers = {list(MAPPER_TYPES)}"
                        f"{_did_you_mean(mapper['type'], MAPPER_TYPES)}")
    if "hidden_size" in mapper:
        value = mapper["hidden_size"]
        if value is not None and not (_is_int(value) and value >= 0):
            problems.append(f"hidden_size: must be >= 0 or null (null = ClipCap's width, 0 = a single Linear + "
                            f"Tanh), got {value!r}")
    for name in ("num_layers", "num_heads", "clip_length"):
        if name in mapper and not (_is_int(mapper[name]) and mapper[name] >= 1):
            problems.append(f"{name}: must be >= 1, got {mapper[name]!r}")
    return problems


_WIDTH_KEYS, _HEADS_KEYS, _BLOCKS_KEYS = ("n_embd", "hidden_size"), ("n_head", "num_attention_heads"), \
    ("n_layer", "num_hidden_layers")


def _first(config: Any, keys: tuple[str, ...]) -> Any:
    if not isinstance(config, Mapping):
        return None
    return next((config[k] for k in keys if k in config), None)


def config_problems(values: Mapping[str, Any], *, decoder_width: int | None = None, decoder_heads: int | None = None,
                    decoder_blocks: int | None = None, encoder_patches: int | None = None) -> list[str]:
    """Every problem of a captioner config, as messages keyed by field (``prefix_length: ...``,
    ``mapper.type: ...``); [] when it is fine.

    values: any of CaptionerConfig's fields (``mapper`` as a dict or a MapperConfig); fields left out are not
    checked. decoder_width / heads / blocks: the decoder's resolved sizes when known (defaults filled in);
    else they are read from ``values["decoder_config"]`` where it states them. encoder_patches: patch tokens
    per side of the encoder's grid (image_size // patch_size) when known; a grid mapper needs at least g.
    """
    problems = []
    if "encoder_type" in values and values["encoder_type"] not in ENCODER_TYPES:
        problems.append(f"encoder_type: Unknown encoder type {values['encoder_type']!r}; allowed encoder types = "
                        f"{list(ENCODER_TYPES)}")
    k = values.get("prefix_length")
    if "prefix_length" in values and not (_is_int(k) and k >= 1):
        problems.append(f"prefix_length: must be >= 1, got {k!r}" if _is_int(k) else
                        f"prefix_length: must be an int >= 1, got {k!r}")
        k = None
    mapper = values.get("mapper")
    if isinstance(mapper, MapperConfig):
        mapper = dataclasses.asdict(mapper)
    mapper = mapper if isinstance(mapper, Mapping) else {}
    problems += [f"mapper.{p}" for p in mapper_problems(mapper)]
    if mapper.get("type") in PATCH_MAPPERS and _is_int(k) and grid_side(k) is None:
        near = sorted({max(1, math.floor(k ** 0.5)) ** 2, math.ceil(k ** 0.5) ** 2})
        problems.append(f"prefix_length: the grid mapper pools patches into a g x g grid, so prefix_length must be "
                        f"a square; got {k} (try {' or '.join(map(str, near))})")
    elif mapper.get("type") in PATCH_MAPPERS and _is_int(k) and encoder_patches and grid_side(k) > encoder_patches:
        problems.append(f"prefix_length: the grid mapper's {grid_side(k)} x {grid_side(k)} cells need at least that many "
                        f"patches per side, but the encoder gives {encoder_patches} x {encoder_patches} (image_size / "
                        f"patch_size); use prefix_length <= {encoder_patches ** 2} or a larger model.image_size")
    if "dtype" in values and values["dtype"] not in WEIGHT_DTYPES:
        problems.append(f"dtype: unknown weight dtype {values['dtype']!r}; allowed = {list(WEIGHT_DTYPES)}")
    fd = values.get("freeze_decoder")
    if "freeze_decoder" in values and not (fd in FREEZE_DECODER_MODES or (_is_int(fd) and fd >= 0)):
        problems.append(f"freeze_decoder: must be 'none', 'all' or a number of blocks >= 0, got {fd!r}")
        fd = None
    decoder_config = values.get("decoder_config")
    width = decoder_width if decoder_width is not None else _first(decoder_config, _WIDTH_KEYS)
    heads = decoder_heads if decoder_heads is not None else _first(decoder_config, _HEADS_KEYS)
    blocks = decoder_blocks if decoder_blocks is not None else _first(decoder_config, _BLOCKS_KEYS)
    heads_key = next((k for k in _HEADS_KEYS if isinstance(decoder_config, Mapping) and k in decoder_config), "n_head")
    problem = heads_problem(width, heads, heads_key)
    if problem:
        problems.append(f"decoder_config: {problem}")
    if mapper.get("type") == "transformer" and "num_heads" in mapper:
        problem = heads_problem(width, mapper["num_heads"], "mapper.num_heads")
        if problem:
            problems.append(f"mapper.num_heads: {problem}")
    problem = frozen_blocks_problem(fd, blocks)
    if problem:
        problems.append(f"freeze_decoder: {problem}")
    return problems


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
    dtype: what the stored weights are ("float32", or "float16" / "bfloat16" for a converted entry; see
        `captioning.precision` for what each runs in on CPU and GPU).
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
    dtype: str = "float32"

    def validate(self, *, decoder_width: int | None = None, decoder_heads: int | None = None,
                 decoder_blocks: int | None = None, encoder_patches: int | None = None) -> None:
        """Raise ConfigValueError listing every problem (see `config_problems`); the decoder's resolved sizes,
        when given, are checked against the mapper's heads and the frozen blocks, and the encoder's patch grid
        against the grid mapper's cells."""
        problems = config_problems(dataclasses.asdict(self), decoder_width=decoder_width,
                                   decoder_heads=decoder_heads, decoder_blocks=decoder_blocks,
                                   encoder_patches=encoder_patches)
        if problems:
            raise ConfigValueError(problems)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        if values["dtype"] == "float32":  # the default is left out: float32 entries read as before, by older code too
            del values["dtype"]
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **values}

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
