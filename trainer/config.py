"""The experiment config: one typed schema, one YAML file per experiment, ``key.sub=value`` overrides.

Follows torchtune's recipe configs: an experiment is a single YAML file whose sections mirror the dataclasses
below (``experiment``, ``model``, ``data``, ``training``, ``evaluation``); any key can be overridden on the
command line as ``training.learning_rate=1e-4``; and *all* problems are collected and reported at once, each
saying what was received and what is allowed, with a "did you mean" suggestion for misspelt keys and choices:

    Unknown config key 'model.prefx_length' (did you mean 'model.prefix_length'?)
    model.mapper: must be one of 'mlp', 'transformer', got 'mpl' (did you mean 'mlp'?)
    training.learning_rate: must be > 0, got -1
    experiment.name is required

Public API: :func:`load_config`, :func:`config_from_dict`, :func:`config_to_dict`, :func:`save_config`,
:func:`validate_config`, :func:`describe_config` and :class:`ConfigError`.

Every field carries its documentation in ``metadata["doc"]`` (shown by :func:`describe_config`) and, where a
value has limits, a check in ``metadata["check"]``. Validation is schema-only: it never touches the disk,
the network or a model, so a config can be checked before any data is there.

YAML note: plain YAML 1.1 reads ``1e-4`` as a *string* (it wants ``1.0e-4``); our loader reads it as the float
everyone means, and our writer quotes strings that would otherwise be read back as floats.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from captioning.config import grid_side

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "ExperimentSection",
    "ModelConfig",
    "DataConfig",
    "TrainingConfig",
    "EvaluationConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "save_config",
    "validate_config",
    "describe_config",
    "DECODING_PRESETS",
    "EVALUATION_METRICS",
    "BEST_METRICS",
]


class ConfigError(ValueError):
    """One or more problems in an experiment config; ``errors`` lists them all, ``str()`` one per line."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


# ----------------------------------------------------------------------------------------------------
# Value checks: each returns None when the value is fine, else the requirement it breaks ("must be > 0").
# ----------------------------------------------------------------------------------------------------

Check = Callable[[Any], "str | None"]


def _at_least(minimum: int) -> Check:
    return lambda value: None if value is None or value >= minimum else f"must be >= {minimum}"


def _greater_than(minimum: float) -> Check:
    return lambda value: None if value is None or value > minimum else f"must be > {minimum:g}"


def _ratio(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1] (a fraction of the split)"


def _warmup_ratio(value: float | None) -> str | None:
    return None if value is None or 0 <= value < 1 else "must be in [0, 1) (a fraction of all steps) or null"


def _captions_per_image(value: str | int) -> str | None:
    return None if isinstance(value, str) or value >= 1 else "must be 'all' or a number of captions >= 1"


def _not_empty(value: str | None) -> str | None:
    return None if value is None or value.strip() else "must not be empty"


_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _entry_name(value: str) -> str | None:
    # The name becomes a folder in the model zoo: no slashes or spaces, and not "." or "..".
    if _NAME.fullmatch(value) and value.strip(".") != "":
        return None
    return "must use only letters, digits, '.', '_' and '-' (it names the model zoo folder)"


def _freeze_decoder(value: str | int) -> str | None:
    return None if isinstance(value, str) or value >= 0 else "must be 'none', 'all' or a number of blocks >= 0"


def _members(allowed: tuple[str, ...]) -> Check:
    def check(values: list[str]) -> str | None:
        unknown = [v for v in values if v not in allowed]
        if unknown:
            hints = [_suggestion(v, allowed) for v in unknown]
            listed = ", ".join(f"{v!r}{hint}" for v, hint in zip(unknown, hints))
            return f"must list only {', '.join(allowed)}, got {values}; unknown: {listed}"
        duplicates = sorted({v for v in values if values.count(v) > 1})
        if duplicates:
            return f"must list each metric once, got {values}; repeated: {', '.join(map(repr, duplicates))}"
        return None

    return check


def _field(default: Any = dataclasses.MISSING, *, doc: str, check: Check | None = None, factory: Any = None):
    """A dataclass field with its documentation (and optional value check) attached as metadata."""
    metadata = {"doc": doc, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


# ----------------------------------------------------------------------------------------------------
# The schema
# ----------------------------------------------------------------------------------------------------

# Decoding presets the evaluation may use: the names of captioning.generation.PRESETS, repeated here so that
# loading a config does not import torch (tests/trainer/test_config.py checks the two lists agree).
DECODING_PRESETS = ("consistent", "safe_diverse", "balanced_diverse", "creative_diverse", "greedy")
# Metrics computed on the validation split each epoch.
EVALUATION_METRICS = ("loss", "bleu", "cider", "bertscore", "meteor", "object_accuracy")
# Metric that picks the best epoch, and the entry of evaluation.metrics that must be on to produce it.
BEST_METRICS = {
    "val_loss": "loss",
    "cider": "cider",
    "bleu4": "bleu",
    "bertscore_f1": "bertscore",
    "object_accuracy": "object_accuracy",
}


@dataclass(kw_only=True)
class ExperimentSection:
    """Who the experiment is and where its outputs go."""

    name: str = _field(doc="Experiment name, also the model zoo entry name ([A-Za-z0-9._-]+).", check=_entry_name)
    output_dir: str = _field("runs", doc="Folder for run outputs (checkpoints, logs): <output_dir>/<name>/.",
                             check=_not_empty)
    zoo_dir: str = _field("model_zoo", doc="Model zoo folder the finished model is exported to.", check=_not_empty)
    seed: int = _field(42, doc="Random seed for weights init, data order and sampling.")


@dataclass(kw_only=True)
class ModelConfig:
    """The captioner: an image encoder, a mapper to prefix embeddings, and a GPT-2 decoder (ClipCap)."""

    encoder: str = _field("openai/clip-vit-base-patch32",
                          doc="Image encoder: Hugging Face id or local folder (CLIP or ViT).", check=_not_empty)
    encoder_type: Literal["clip", "vit", "auto"] = _field(
        "auto", doc="Encoder family; 'auto' reads it from the encoder's config.")
    encoder_revision: str | None = _field(None, doc="Hub revision (commit/tag) of the encoder; null = default.")
    decoder: str = _field("gpt2", doc="GPT-2 language model: Hugging Face id or local folder.", check=_not_empty)
    prefix_length: int = _field(10, doc="Number of prefix embeddings the image is mapped to.", check=_at_least(1))
    mapper: Literal["mlp", "transformer", "grid"] = _field(
        "mlp", doc="Image-to-prefix mapper: ClipCap's 'mlp' or 'transformer' (from the pooled image embedding), "
                   "or 'grid' (patch tokens pooled to a g x g grid, K = g * g must be a square).")
    mapper_hidden_size: int | None = _field(
        None, doc="MLP mapper hidden width; null = (embed_dim + prefix_length * n_embd) // 2 as in ClipCap.",
        check=_at_least(1))
    mapper_num_layers: int = _field(8, doc="Transformer mapper: number of layers.", check=_at_least(1))
    mapper_num_heads: int = _field(8, doc="Transformer mapper: attention heads (must divide n_embd).",
                                   check=_at_least(1))
    clip_length: int = _field(10, doc="Transformer mapper: tokens the image embedding is projected into.",
                              check=_at_least(1))
    freeze_encoder: bool = _field(True, doc="Keep the image encoder's weights fixed (ClipCap trains only the rest).")
    freeze_decoder: Literal["none", "all"] | int = _field(
        "none", doc="GPT-2 weights to keep fixed: 'none', 'all', or N = the first N transformer blocks.",
        check=_freeze_decoder)
    image_size: int | None = _field(None, doc="Input image side in pixels; null = the encoder's own.",
                                    check=_at_least(1))
    from_scratch: bool = _field(
        False, doc="Build encoder and decoder at random init instead of loading weights (offline demos/tests); "
                   "architectures come from encoder_config/decoder_config, else from the named models' configs.")
    encoder_config: dict[str, Any] | None = _field(
        None, doc="Encoder config overrides for from_scratch (e.g. {hidden_size: 32, num_hidden_layers: 2}).")
    decoder_config: dict[str, Any] | None = _field(
        None, doc="GPT-2 config overrides for from_scratch (e.g. {n_embd: 32, n_layer: 2, n_head: 2}).")
    tokenizer: str | None = _field(None, doc="Tokenizer folder or id; null = the decoder's own tokenizer.")


@dataclass(kw_only=True)
class DataConfig:
    """The caption dataset and how it is read."""

    format: Literal["auto", "coco", "karpathy", "flickr8k", "folder"] = _field(
        "auto", doc="Annotation format; 'auto' detects it from the files under path.")
    path: str = _field(doc="Annotation file or dataset folder.", check=_not_empty)
    image_root: str | None = _field(None, doc="Folder the image file names are relative to; null = next to path.")
    train_split: str = _field("train", doc="Split used for training.", check=_not_empty)
    val_split: str = _field("val", doc="Split used for validation each epoch.", check=_not_empty)
    test_split: str | None = _field("test", doc="Split used for the final test; null = none.", check=_not_empty)
    max_caption_tokens: int = _field(40, doc="Captions are cut to this many GPT-2 tokens (EOS included).",
                                     check=_at_least(1))
    subset_ratio: float = _field(1.0, doc="Fraction of each split to use, in (0, 1]; 1 = all.", check=_ratio)
    captions_per_image: Literal["all"] | int = _field(
        "all", doc="Training captions per image each epoch: 'all' (every (image, caption) pair is a sample) or N "
                   "drawn afresh each epoch, seeded (more images per step for the same compute).",
        check=_captions_per_image)
    missing_images: Literal["skip", "error"] = _field(
        "skip", doc="What to do when an annotated image file is absent: skip it (logged) or stop.")
    num_workers: int = _field(0, doc="DataLoader worker processes; 0 = load in the main process.",
                              check=_at_least(0))
    cache_embeddings: bool = _field(True, doc="Cache image embeddings on disk (only with a frozen encoder).")
    cache_dir: str = _field(".cache/embeddings", doc="Folder of the embedding cache.", check=_not_empty)


@dataclass(kw_only=True)
class TrainingConfig:
    """The optimisation loop."""

    epochs: int = _field(10, doc="Passes over the training split.", check=_at_least(1))
    batch_size: int = _field(32, doc="Captions per optimiser micro-batch.", check=_at_least(1))
    gradient_accumulation_steps: int = _field(
        1, doc="Micro-batches per optimiser step (effective batch = batch_size x this).", check=_at_least(1))
    learning_rate: float = _field(2e-5, doc="Peak AdamW learning rate.", check=_greater_than(0))
    weight_decay: float = _field(0.01, doc="AdamW weight decay.", check=_at_least(0))
    warmup_steps: int = _field(0, doc="Linear warmup steps (set this or warmup_ratio, not both).",
                               check=_at_least(0))
    warmup_ratio: float | None = _field(None, doc="Warmup as a fraction of all steps, in [0, 1); null = use "
                                                  "warmup_steps.", check=_warmup_ratio)
    scheduler: Literal["linear", "cosine", "constant"] = _field(
        "linear", doc="Learning-rate schedule after warmup.")
    max_grad_norm: float | None = _field(1.0, doc="Gradient clipping norm; null = no clipping.",
                                         check=_greater_than(0))
    mixed_precision: Literal["no", "fp16", "bf16"] = _field(
        "no", doc="Autocast dtype; 'fp16' needs CUDA.")
    log_every: int = _field(50, doc="Log one line every N optimiser steps.", check=_at_least(1))
    save_every_epochs: int = _field(1, doc="Save a checkpoint every N epochs (the last epoch is always saved).",
                                    check=_at_least(1))
    max_steps: int | None = _field(None, doc="Stop after this many optimiser steps; null = run all epochs.",
                                   check=_at_least(1))
    device: Literal["auto", "cpu", "cuda"] = _field("auto", doc="Where to train; 'auto' = CUDA when available.")
    num_threads: int | None = _field(None, doc="torch CPU threads; null = torch's default.", check=_at_least(1))


@dataclass(kw_only=True)
class EvaluationConfig:
    """Validation during training and the metrics stored in the zoo."""

    metrics: list[str] = _field(doc=f"Metrics computed each epoch; allowed: {', '.join(EVALUATION_METRICS)}.",
                                factory=lambda: ["loss", "bleu", "cider", "bertscore"],
                                check=_members(EVALUATION_METRICS))
    best_metric: Literal["val_loss", "cider", "bleu4", "bertscore_f1", "object_accuracy"] = _field(
        "val_loss", doc="Metric that picks the best epoch (lowest val_loss, highest otherwise).")
    bertscore_model: str | None = _field(None, doc="BERTScore model folder or id; null = the bundled offline "
                                                   "all-MiniLM-L6-v2.")
    bertscore_num_layers: int | None = _field(6, doc="BERTScore layer; null = bert_score's default for the model.",
                                              check=_at_least(1))
    preset: Literal["consistent", "safe_diverse", "balanced_diverse", "creative_diverse", "greedy"] = _field(
        "consistent", doc="Decoding preset used to caption the validation images.")
    max_new_tokens: int = _field(30, doc="Longest generated caption, in tokens.", check=_at_least(1))
    max_val_images: int | None = _field(None, doc="Caption at most this many validation images; null = all.",
                                        check=_at_least(1))
    eval_batch_size: int = _field(32, doc="Images per generation batch.", check=_at_least(1))


@dataclass(kw_only=True)
class ExperimentConfig:
    """A whole experiment: what is trained, on what, how, and how it is judged."""

    experiment: ExperimentSection = _field(doc="Name, output folders and seed.")
    model: ModelConfig = _field(doc="Encoder, mapper and decoder.", factory=ModelConfig)
    data: DataConfig = _field(doc="Dataset location and reading.")
    training: TrainingConfig = _field(doc="Optimisation loop.", factory=TrainingConfig)
    evaluation: EvaluationConfig = _field(doc="Validation and metrics.", factory=EvaluationConfig)


# Section name -> its dataclass, in file order.
SECTIONS: dict[str, type] = typing.get_type_hints(ExperimentConfig)


def _section_fields(section_cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(section_cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(section_cls)]


def _all_keys() -> list[str]:
    return [f"{section}.{f.name}" for section, cls in SECTIONS.items() for f, _ in _section_fields(cls)]


# ----------------------------------------------------------------------------------------------------
# Type checking of one value against an annotation
# ----------------------------------------------------------------------------------------------------

def _show(value: Any) -> str:
    """'str 'ten'', 'float 1.5', 'null': how a received value is quoted in messages."""
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def _suggestion(word: str, candidates: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _describe_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [_describe_type(a) for a in typing.get_args(annotation) if a is not type(None)]
        nullable = type(None) in typing.get_args(annotation)
        return " or ".join(parts + (["null"] if nullable else []))
    if origin is list:
        return f"list of {_describe_type(typing.get_args(annotation)[0])}"
    if origin is dict or annotation is dict:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any) -> tuple[Any, bool]:
    """(value converted to the annotation, True) if it fits, else (value, False).

    An int fits a float (and becomes one); a bool fits only bool, never int or float.
    """
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value, True
    if origin in (Union, types.UnionType):
        if value is None:
            return None, type(None) in typing.get_args(annotation)
        for option in typing.get_args(annotation):
            if option is type(None):
                continue
            converted, ok = _coerce(value, option)
            if ok:
                return converted, True
        return value, False
    if origin is Literal:
        # bool is an int subclass and True == 1, so compare types as well as values.
        allowed = typing.get_args(annotation)
        if isinstance(value, bool) and not value and "no" in allowed:
            return "no", True  # YAML 1.1 reads a bare `no` (e.g. mixed_precision: no) as false
        return value, any(type(value) is type(a) and value == a for a in allowed)
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            return value, False
        converted = [_coerce(item, item_type) for item in value]
        return [c for c, _ in converted], all(ok for _, ok in converted)
    if origin is dict or annotation is dict:
        return value, isinstance(value, dict) and all(isinstance(k, str) for k in value)
    if annotation is bool:
        return value, isinstance(value, bool)
    if annotation is int:
        return value, isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (float(value) if ok else value), ok
    if annotation is str:
        return value, isinstance(value, str)
    raise TypeError(f"config schema uses an unsupported annotation {annotation!r}")  # a bug in this file


def _type_error(key: str, value: Any, annotation: Any) -> str:
    expected = _describe_type(annotation)
    message = f"{key}: expected {expected}, got {_show(value)}"
    literals = [a for a in _flatten_literals(annotation) if isinstance(a, str)]
    if literals and isinstance(value, str):
        message = f"{key}: must be {expected}, got {value!r}{_suggestion(value, literals)}"
    nullable = typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in typing.get_args(annotation)
    if nullable and isinstance(value, str) and value.lower() in ("none", "null"):
        message += " (write null, unquoted, for no value)"
    return message


def _flatten_literals(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return list(typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return [v for a in typing.get_args(annotation) for v in _flatten_literals(a)]
    return []


# ----------------------------------------------------------------------------------------------------
# From a plain dict to a validated config
# ----------------------------------------------------------------------------------------------------

def _unknown_key_error(key: str, known_in_section: list[str] | None = None) -> str:
    """'Unknown config key 'a.b' (did you mean 'a.c'?)', looking in the same section first, then anywhere."""
    all_keys = _all_keys()
    section, _, leaf = key.partition(".")
    if not leaf:  # an unknown top-level key
        return f"Unknown config key {key!r}{_suggestion(key, SECTIONS)}; sections are: {', '.join(SECTIONS)}"
    # A known key put in the wrong section is the most likely mistake ("model.max_caption_tokens").
    elsewhere = [k for k in all_keys if k.split(".", 1)[1] == leaf]
    if elsewhere:
        return f"Unknown config key {key!r} (did you mean {elsewhere[0]!r}?)"
    hint = _suggestion(key, [k for k in all_keys if k.startswith(section + ".")]) or _suggestion(key, all_keys)
    if hint:
        return f"Unknown config key {key!r}{hint}"
    if known_in_section:
        return f"Unknown config key {key!r}; keys in {section!r}: {', '.join(known_in_section)}"
    return f"Unknown config key {key!r}"


def _check_section(
    name: str, section_cls: type, raw: Any, errors: list[str], invalid: set[str]
) -> dict[str, Any] | None:
    """Validate one section's mapping: its effective values (given, else default) with every problem appended to
    ``errors`` and the keys concerned added to ``invalid``; None if the section is not a mapping at all."""
    if raw is None:
        raw = {}  # "model:" with nothing under it means "all defaults"
    if not isinstance(raw, dict):
        errors.append(f"{name}: expected a mapping of keys, got {_show(raw)}")
        invalid.add(name)
        return None
    fields = _section_fields(section_cls)
    names = [f.name for f, _ in fields]
    for key in raw:
        if key not in names:
            errors.append(_unknown_key_error(f"{name}.{key}", names))
    values: dict[str, Any] = {}
    for f, annotation in fields:
        key = f"{name}.{f.name}"
        if f.name not in raw:
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
            else:
                errors.append(f"{key} is required")
                invalid.add(key)
            continue
        value, ok = _coerce(raw[f.name], annotation)
        if not ok:
            errors.append(_type_error(key, raw[f.name], annotation))
            invalid.add(key)
            continue
        check = f.metadata.get("check")
        problem = check(value) if check else None
        if problem:
            # A check may quote the value itself (e.g. a list with the bad items pointed out).
            errors.append(f"{key}: {problem}" if "got " in problem else f"{key}: {problem}, got {raw[f.name]!r}")
            invalid.add(key)
            continue
        values[f.name] = value
    return values


def _cross_checks(values: dict[str, dict[str, Any] | None], invalid: set[str]) -> list[str]:
    """Problems that involve more than one field; a check is skipped when one of its fields is already wrong."""

    def usable(*keys: str) -> bool:
        return all(values.get(k.split(".")[0]) is not None and k not in invalid for k in keys)

    def get(key: str) -> Any:
        section, leaf = key.split(".")
        return values[section][leaf]

    errors = []
    if usable("evaluation.best_metric", "evaluation.metrics"):
        best, metrics = get("evaluation.best_metric"), get("evaluation.metrics")
        if BEST_METRICS[best] not in metrics:
            errors.append(
                f"evaluation.best_metric: {best!r} needs {BEST_METRICS[best]!r} in evaluation.metrics, "
                f"which is {metrics}; add it or pick another best_metric"
            )
    for key in ("model.encoder_config", "model.decoder_config"):
        if usable("model.from_scratch", key) and get(key) is not None and not get("model.from_scratch"):
            errors.append(
                f"{key} is only used when model.from_scratch is true; set model.from_scratch=true or remove {key}"
            )
    if usable("training.warmup_steps", "training.warmup_ratio"):
        steps, ratio = get("training.warmup_steps"), get("training.warmup_ratio")
        if steps > 0 and ratio is not None:
            errors.append(
                f"training.warmup_steps ({steps}) and training.warmup_ratio ({ratio}) are both set; set only one"
            )
    if usable("model.mapper", "model.prefix_length") and get("model.mapper") == "grid":
        k = get("model.prefix_length")
        if grid_side(k) is None:
            near = sorted({max(1, math.floor(k ** 0.5)) ** 2, math.ceil(k ** 0.5) ** 2})
            errors.append(f"model.prefix_length: the grid mapper pools patches into a g x g grid, so it must be a "
                          f"square; got {k} (try {' or '.join(map(str, near))})")
    if usable("training.mixed_precision", "training.device"):
        if get("training.mixed_precision") == "fp16" and get("training.device") == "cpu":
            errors.append(
                "training.mixed_precision: 'fp16' needs CUDA but training.device is 'cpu'; use 'bf16' or 'no'"
            )
    return errors


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Validate a nested dict (as read from YAML) into an :class:`ExperimentConfig`; raise :class:`ConfigError`
    listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError([f"config: expected a mapping with sections {', '.join(SECTIONS)}, got {_show(data)}"])
    data = copy.deepcopy(data)  # the config must not share lists/dicts with the caller's data
    errors: list[str] = []
    invalid: set[str] = set()
    for key in data:
        if key not in SECTIONS:
            errors.append(_unknown_key_error(str(key)))
    values = {name: _check_section(name, cls, data.get(name), errors, invalid) for name, cls in SECTIONS.items()}
    errors += _cross_checks(values, invalid)
    if errors:
        raise ConfigError(errors)
    return ExperimentConfig(**{name: cls(**values[name]) for name, cls in SECTIONS.items()})


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as plain nested dicts/lists (YAML- and JSON-ready); ``config_from_dict`` inverts it."""
    return dataclasses.asdict(cfg)


def validate_config(cfg: ExperimentConfig) -> None:
    """Check a config built in code (dataclass constructors do not validate); raise :class:`ConfigError`."""
    config_from_dict(config_to_dict(cfg))


# ----------------------------------------------------------------------------------------------------
# YAML files and command-line overrides
# ----------------------------------------------------------------------------------------------------

# YAML 1.1 floats need a dot ("1.0e-4"); this also accepts "1e-4" / "2E+5", as every ML config expects.
_FLOAT_WITHOUT_DOT = re.compile(r"^[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+$")


class _Loader(yaml.SafeLoader):
    """safe_load plus: ``1e-4`` is a float, and a key repeated in one mapping is an error (not silently last)."""

    def construct_mapping(self, node, deep=False):
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


class _Dumper(yaml.SafeDumper):
    """safe_dump that quotes strings our loader would read as floats (e.g. a name '1e-4'), so files round-trip."""


for _cls in (_Loader, _Dumper):
    _cls.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_WITHOUT_DOT, list("-+0123456789"))


def _parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}, line {mark.line + 1}, column {mark.column + 1}" if mark else source
        context = error.context
        if context and error.context_mark and mark and error.context_mark.line != mark.line:
            context += f" (started on line {error.context_mark.line + 1})"
        problem = " ".join(filter(None, [context, error.problem]))
        raise ConfigError([f"{where}: invalid YAML: {problem}"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: invalid YAML: {error}"]) from None


def _dict_fields() -> set[str]:
    """Keys whose value is a free-form mapping (e.g. model.decoder_config), which overrides may reach into."""
    return {
        f"{section}.{f.name}"
        for section, cls in SECTIONS.items()
        for f, annotation in _section_fields(cls)
        if "mapping" in _describe_type(annotation)
    }


def _apply_overrides(data: dict[str, Any], overrides: typing.Sequence[str], errors: list[str]) -> None:
    """Set each ``a.b=value`` in ``data`` (value read as YAML); unknown keys and bad syntax go to ``errors``.

    ``section=value`` replaces a whole section and ``model.decoder_config.n_layer=2`` reaches into a mapping field.
    """
    all_keys = set(_all_keys())
    mapping_keys = _dict_fields()
    for override in overrides:
        if not isinstance(override, str) or "=" not in override:
            errors.append(
                f"Override {override!r} has no '='; write overrides as key.sub=value, "
                f"e.g. training.learning_rate=1e-4"
            )
            continue
        key, _, text = override.partition("=")
        key = key.strip()
        parts = key.split(".")
        known = key in SECTIONS or key in all_keys or ".".join(parts[:2]) in mapping_keys
        if not known or "" in parts:
            errors.append(f"{_unknown_key_error(key)} in override {override!r}")
            continue
        try:
            value = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or str(error)
            errors.append(f"Override {override!r}: the value is not valid YAML ({problem})")
            continue
        # Walk down, creating the mappings the file left out; a non-mapping on the way is reported instead.
        node = data
        for depth, part in enumerate(parts[:-1]):
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                where = ".".join(parts[: depth + 1])
                errors.append(f"Override {override!r}: {where} is {_show(node[part])}, not a mapping")
                break
            node = node[part]
        else:
            node[parts[-1]] = value


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML, apply ``key.sub=value`` overrides and validate; :class:`ConfigError` lists every
    problem (file and line for YAML syntax errors)."""
    if isinstance(overrides, str):
        raise TypeError(f"overrides must be a list of 'key.sub=value' strings, got one string {overrides!r}")
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"Config file '{path}' not found (looked from '{Path.cwd()}')"])
    data = _parse_yaml(path.read_text(encoding="utf-8"), str(path))
    if data is None:
        data = {}  # an empty file: every required key will be reported missing
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: expected a mapping with sections {', '.join(SECTIONS)}, got {_show(data)}"])
    errors: list[str] = []
    _apply_overrides(data, list(overrides), errors)
    try:
        cfg = config_from_dict(data)
    except ConfigError as error:
        raise ConfigError(errors + error.errors) from None
    if errors:
        raise ConfigError(errors)
    return cfg


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML (sections and keys in schema order); ``load_config(path)`` gives back an equal config."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(config_to_dict(cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True)
    path.write_text(text, encoding="utf-8")


def _yaml_scalar(value: Any) -> str:
    """A default as it is written in YAML: null, true/false, or Python's repr."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def describe_config() -> str:
    """Every config key with its type, default and documentation, one per line (for ``--help``-style output)."""
    lines = []
    for section, cls in SECTIONS.items():
        lines.append(f"{section}: {cls.__doc__}")
        for f, annotation in _section_fields(cls):
            if f.default is not dataclasses.MISSING:
                default = f"default {_yaml_scalar(f.default)}"
            elif f.default_factory is not dataclasses.MISSING:
                default = f"default {f.default_factory()!r}"
            else:
                default = "required"
            lines.append(f"  {section}.{f.name} ({_describe_type(annotation)}; {default}): {f.metadata['doc']}")
    return "\n".join(lines)
