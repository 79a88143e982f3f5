"""The experiment config: one typed schema, one YAML file per experiment, ``key.sub=value`` overrides.

Follows torchtune's recipe configs: an experiment is a single YAML file whose sections mirror the dataclasses
below (``experiment``, ``model``, ``data``, ``training``, ``evaluation``, ``scst``; ``model.mapper`` is a nested
section typed by the library's own ``captioning.config.MapperConfig``, so it has the keys of a zoo entry's
config.json); any key can be overridden on the command line as ``training.learning_rate=1e-4`` or
``model.mapper.type=grid``; and *all* problems are reported at once, each saying what was received and what
is allowed, with a "did you mean" suggestion for misspelt keys and choices:

    Unknown config key 'model.prefx_length' (did you mean 'model.prefix_length'?)
    model.mapper.type: must be one of 'mlp', 'transformer', 'grid', got 'mpl' (did you mean 'mlp'?)
    training.learning_rate: must be > 0, got -1
    experiment.name is required

The model's rules live in the library (``captioning.config.config_problems``); the cross-checks here report
its messages under ``model.``. The generic machinery (types, coercion, suggestions, YAML, overrides,
describe) is trainer/typed_config.py. Validation never touches the disk, the network or a model, so a config
can be checked before any data is there; the trainer then builds the model before it reads any data.

Public API: :func:`load_config`, :func:`config_from_dict`, :func:`config_to_dict`, :func:`save_config`,
:func:`validate_config`, :func:`describe_config` and :class:`ConfigError`.

    python -m trainer.config describe       # every key with its type, default and documentation
"""
from __future__ import annotations

import re
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from captioning.config import ENCODER_TYPES, FREEZE_DECODER_MODES, MapperConfig, config_problems

from .augment import AugmentConfig, active_augmentations, cache_problem
from .optim import LearningRates, lr_problems
from .typed_config import ConfigError, Schema, Values, at_least, greater_than, members, not_empty, setting

__all__ = [
    "ConfigError",
    "ExperimentConfig",
    "ExperimentSection",
    "ModelConfig",
    "DataConfig",
    "TrainingConfig",
    "EvaluationConfig",
    "ScstConfig",
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


# ----------------------------------------------------------------------------------------------------
# Value checks of this schema: each returns None when the value is fine, else the requirement it breaks.
# ----------------------------------------------------------------------------------------------------

def _ratio(value: float) -> str | None:
    return None if 0 < value <= 1 else "must be in (0, 1] (a fraction of the split)"


def _warmup_ratio(value: float | None) -> str | None:
    return None if value is None or 0 <= value < 1 else "must be in [0, 1) (a fraction of all steps) or null"


def _captions_per_image(value: str | int) -> str | None:
    return None if isinstance(value, str) or value >= 1 else "must be 'all' or a number of captions >= 1"


_NAME = re.compile(r"[A-Za-z0-9._-]+")


def _entry_name(value: str) -> str | None:
    # The name becomes a folder in the model zoo: no slashes or spaces, and not "." or "..".
    if _NAME.fullmatch(value) and value.strip(".") != "":
        return None
    return "must use only letters, digits, '.', '_' and '-' (it names the model zoo folder)"


# ----------------------------------------------------------------------------------------------------
# The schema
# ----------------------------------------------------------------------------------------------------

# Decoding presets the evaluation may use: the names of captioning.generation.PRESETS, repeated here so that
# loading a config does not import torch (tests/trainer/test_config.py checks the two lists agree).
DECODING_PRESETS = ("consistent", "safe_diverse", "balanced_diverse", "creative_diverse", "greedy")
# Metrics computed on the validation split each epoch.
EVALUATION_METRICS = ("loss", "bleu", "cider", "rouge", "bertscore", "meteor", "object_accuracy")
# Metric that picks the best epoch, and the entry of evaluation.metrics that must be on to produce it.
BEST_METRICS = {
    "val_loss": "loss",
    "cider": "cider",
    "bleu4": "bleu",
    "rouge_l": "rouge",
    "meteor": "meteor",
    "bertscore_f1": "bertscore",
    "object_accuracy": "object_accuracy",
}


@dataclass(kw_only=True)
class ExperimentSection:
    """Who the experiment is and where its outputs go."""

    name: str = setting(doc="Experiment name, also the model zoo entry name ([A-Za-z0-9._-]+).", check=_entry_name)
    output_dir: str = setting("runs", doc="Folder for run outputs (checkpoints, logs): <output_dir>/<name>/.",
                             check=not_empty)
    zoo_dir: str = setting("model_zoo", doc="Model zoo folder the finished model is exported to.", check=not_empty)
    seed: int = setting(42, doc="Random seed for weights init, data order and sampling.")


@dataclass(kw_only=True)
class ModelConfig:
    """The captioner: an image encoder, a mapper to prefix embeddings, and a GPT-2 decoder (ClipCap).

    The values' rules (mapper types, a square K for the grid mapper, freeze_decoder, ...) are the library's
    (captioning.config.config_problems), reported here under model.*.
    """

    encoder: str = setting("openai/clip-vit-base-patch32",
                           doc="Image encoder: Hugging Face id or local folder (CLIP or ViT).", check=not_empty)
    encoder_type: Literal[(*ENCODER_TYPES, "auto")] = setting(
        "auto", doc="Encoder family; 'auto' reads it from the encoder's config.")
    encoder_revision: str | None = setting(None, doc="Hub revision (commit/tag) of the encoder; null = default.")
    decoder: str = setting("gpt2", doc="GPT-2 language model: Hugging Face id or local folder.", check=not_empty)
    prefix_length: int = setting(10, doc="K, the number of prefix embeddings the image is mapped to.")
    mapper: MapperConfig = setting(
        doc="The image-to-prefix mapping network (the same keys as a zoo entry's config.json 'mapper').",
        factory=MapperConfig)
    freeze_encoder: bool = setting(True, doc="Keep the image encoder's weights fixed (ClipCap trains only the rest).")
    freeze_decoder: Literal[FREEZE_DECODER_MODES] | int = setting(
        "none", doc="GPT-2 weights to keep fixed: 'none', 'all', or N = the embeddings and the first N blocks.")
    image_size: int | None = setting(None, doc="Input image side in pixels; null = the encoder's own (also sets the "
                                               "from-scratch encoder's image_size).", check=at_least(1))
    from_scratch: bool = setting(
        False, doc="Build encoder and decoder at random init instead of loading weights (offline demos/tests); "
                   "architectures come from encoder_config/decoder_config, else from the named models' configs.")
    encoder_config: dict[str, Any] | None = setting(
        None, doc="Encoder config overrides for from_scratch (e.g. {hidden_size: 32, num_hidden_layers: 2}); "
                  "the image size is model.image_size.")
    decoder_config: dict[str, Any] | None = setting(
        None, doc="GPT-2 config overrides for from_scratch (e.g. {n_embd: 32, n_layer: 2, n_head: 2}).")
    tokenizer: str | None = setting(None, doc="Tokenizer folder or id; null = the decoder's own tokenizer.")
    init_from: str | None = setting(
        None, doc="Start from this zoo entry (e.g. model_zoo/NAME): its weights, architecture, tokenizer and "
                  "preprocessing. Other model keys may only repeat the entry's values, except freeze_encoder and "
                  "freeze_decoder, which apply; null = build the model from the keys above.", check=not_empty)


@dataclass(kw_only=True)
class DataConfig:
    """The caption dataset and how it is read."""

    format: Literal["auto", "coco", "karpathy", "flickr8k", "folder"] = setting(
        "auto", doc="Annotation format; 'auto' detects it from the files under path.")
    path: str = setting(doc="Annotation file or dataset folder.", check=not_empty)
    image_root: str | None = setting(None, doc="Folder the image file names are relative to; null = next to path.")
    train_split: str = setting("train", doc="Split used for training.", check=not_empty)
    val_split: str = setting("val", doc="Split used for validation each epoch.", check=not_empty)
    test_split: str | None = setting("test", doc="Split used for the final test; null = none.", check=not_empty)
    max_caption_tokens: int = setting(40, doc="Captions are cut to this many GPT-2 tokens (EOS included).",
                                     check=at_least(1))
    subset_ratio: float = setting(1.0, doc="Fraction of each split to use, in (0, 1]; 1 = all.", check=_ratio)
    captions_per_image: Literal["all"] | int = setting(
        "all", doc="Training captions per image each epoch: 'all' (every (image, caption) pair is a sample) or N "
                   "drawn afresh each epoch, seeded (more images per step for the same compute).",
        check=_captions_per_image)
    missing_images: Literal["skip", "error"] = setting(
        "skip", doc="What to do when an annotated image file is absent: skip it (logged) or stop.")
    num_workers: int = setting(0, doc="DataLoader worker processes; 0 = load in the main process.",
                              check=at_least(0))
    cache_embeddings: bool = setting(True, doc="Cache image embeddings on disk (only with a frozen encoder).")
    cache_dir: str = setting(".cache/embeddings", doc="Folder of the embedding cache.", check=not_empty)
    augment: AugmentConfig = setting(
        doc="Training-image augmentation (trainer/augment.py), each off by default, never on validation/test images. "
            "It needs the encoder to read pixels: refused with model.freeze_encoder and data.cache_embeddings both "
            "true. Flipping is refused when training captions name left/right (the shapes captions do).",
        factory=AugmentConfig)


@dataclass(kw_only=True)
class TrainingConfig:
    """The optimisation loop."""

    epochs: int = setting(10, doc="Passes over the training split.", check=at_least(1))
    batch_size: int = setting(32, doc="Captions per optimiser micro-batch.", check=at_least(1))
    gradient_accumulation_steps: int = setting(
        1, doc="Micro-batches per optimiser step (effective batch = batch_size x this).", check=at_least(1))
    learning_rate: float = setting(2e-5, doc="Peak AdamW learning rate.", check=greater_than(0))
    lr: LearningRates = setting(doc="Per-part peak learning rates (trainer/optim.py); each null = learning_rate.",
                                factory=LearningRates)
    weight_decay: float = setting(0.01, doc="AdamW weight decay.", check=at_least(0))
    warmup_steps: int = setting(0, doc="Linear warmup steps (set this or warmup_ratio, not both).",
                               check=at_least(0))
    warmup_ratio: float | None = setting(None, doc="Warmup as a fraction of all steps, in [0, 1); null = use "
                                                  "warmup_steps.", check=_warmup_ratio)
    scheduler: Literal["linear", "cosine", "constant"] = setting(
        "linear", doc="Learning-rate schedule after warmup.")
    max_grad_norm: float | None = setting(1.0, doc="Gradient clipping norm; null = no clipping.",
                                         check=greater_than(0))
    mixed_precision: Literal["no", "fp16", "bf16"] = setting(
        "no", doc="Autocast dtype; 'fp16' needs CUDA.")
    log_every: int = setting(50, doc="Log one line every N optimiser steps.", check=at_least(1))
    save_every_epochs: int = setting(1, doc="Save a checkpoint every N epochs (the last epoch is always saved).",
                                    check=at_least(1))
    max_steps: int | None = setting(None, doc="Stop after this many optimiser steps; null = run all epochs.",
                                   check=at_least(1))
    device: Literal["auto", "cpu", "cuda"] = setting("auto", doc="Where to train; 'auto' = CUDA when available.")
    num_threads: int | None = setting(None, doc="torch CPU threads; null = torch's default.", check=at_least(1))


@dataclass(kw_only=True)
class EvaluationConfig:
    """Validation during training and the metrics stored in the zoo."""

    metrics: list[str] = setting(doc=f"Metrics computed each epoch; allowed: {', '.join(EVALUATION_METRICS)}.",
                                factory=lambda: ["loss", "bleu", "cider", "bertscore"],
                                check=members(EVALUATION_METRICS, "metric"))
    best_metric: Literal["val_loss", "cider", "bleu4", "rouge_l", "meteor", "bertscore_f1", "object_accuracy"] = setting(
        "val_loss", doc="Metric that picks the best epoch (lowest val_loss, highest otherwise).")
    bertscore_model: str | None = setting(None, doc="BERTScore model folder or id; null = the bundled offline "
                                                   "all-MiniLM-L6-v2.")
    bertscore_num_layers: int | None = setting(6, doc="BERTScore layer; null = bert_score's default for the model.",
                                              check=at_least(1))
    preset: Literal["consistent", "safe_diverse", "balanced_diverse", "creative_diverse", "greedy"] = setting(
        "consistent", doc="Decoding preset used to caption the validation images.")
    max_new_tokens: int = setting(30, doc="Longest generated caption, in tokens.", check=at_least(1))
    max_val_images: int | None = setting(None, doc="Caption at most this many validation images; null = all.",
                                        check=at_least(1))
    eval_batch_size: int = setting(32, doc="Images per generation batch.", check=at_least(1))


@dataclass(kw_only=True)
class ScstConfig:
    """Self-critical sequence training (Rennie et al., 2017): after cross-entropy, optimise CIDEr-D directly.

    training.epochs counts every epoch; the first scst.after_epoch are cross-entropy, the rest SCST (as
    self-critical.pytorch's --self_critical_after). Each SCST step samples captions for a batch of training
    images, scores them with CIDEr-D (document frequencies from the training captions) and follows the policy
    gradient -(reward - baseline) * sum log p(sampled tokens).
    """

    enabled: bool = setting(False, doc="Run an SCST stage.")
    after_epoch: int = setting(0, doc="Cross-entropy epochs before the SCST stage starts (0 = SCST from the first "
                                      "epoch, which needs model.init_from: a model that already captions).",
                               check=at_least(0))
    steps_per_epoch: int | None = setting(
        None, doc="Optimiser steps per SCST epoch (each epoch ends with validation); null = one pass over the "
                  "training images.", check=at_least(1))
    batch_size: int | None = setting(None, doc="Images per SCST micro-batch; null = training.batch_size.",
                                     check=at_least(1))
    samples_per_image: int = setting(5, doc="Captions sampled per image each step.", check=at_least(1))
    baseline: Literal["greedy", "mean"] = setting(
        "greedy", doc="Reward baseline: 'greedy' = the greedy caption's reward (Rennie et al.); 'mean' = the mean "
                      "reward of the other samples of the same image (new SCST; needs samples_per_image >= 2).")
    temperature: float = setting(1.0, doc="Sampling temperature.", check=greater_than(0))
    top_k: int = setting(0, doc="Sample from the k most likely tokens only; 0 = the whole vocabulary.",
                         check=at_least(0))
    learning_rate: float = setting(1.0e-5, doc="Constant AdamW learning rate of the SCST stage (its own optimiser; "
                                               "training.weight_decay and max_grad_norm apply).",
                                   check=greater_than(0))
    max_new_tokens: int | None = setting(None, doc="Longest sampled caption; null = evaluation.max_new_tokens.",
                                         check=at_least(1))


@dataclass(kw_only=True)
class ExperimentConfig:
    """A whole experiment: what is trained, on what, how, and how it is judged."""

    experiment: ExperimentSection = setting(doc="Name, output folders and seed.")
    model: ModelConfig = setting(doc="Encoder, mapper and decoder.", factory=ModelConfig)
    data: DataConfig = setting(doc="Dataset location and reading.")
    training: TrainingConfig = setting(doc="Optimisation loop.", factory=TrainingConfig)
    evaluation: EvaluationConfig = setting(doc="Validation and metrics.", factory=EvaluationConfig)
    scst: ScstConfig = setting(doc="Self-critical sequence training stage (off by default).", factory=ScstConfig)


# Section name -> its dataclass, in file order.
SECTIONS: dict[str, type] = typing.get_type_hints(ExperimentConfig)

# Keys of earlier versions of the schema, refused with the key to use now.
RENAMED = {
    "model.mapper": "model.mapper.type",  # the old `model.mapper: grid` string; the mapper is a section now
    "model.mapper_hidden_size": "model.mapper.hidden_size",
    "model.mapper_num_layers": "model.mapper.num_layers",
    "model.mapper_num_heads": "model.mapper.num_heads",
    "model.clip_length": "model.mapper.clip_length",
    "training.lr": "training.learning_rate",  # one rate for every part is learning_rate; training.lr is per part
}


def _cross_checks(values: Values) -> list[str]:
    """Problems that involve more than one field; a check is skipped when one of its fields is already wrong."""
    usable, get = values.usable, values.get
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
    if usable("model.encoder_config") and "image_size" in (get("model.encoder_config") or {}):
        errors.append("model.encoder_config.image_size: the image size has one key, model.image_size (null = the "
                      "encoder's own); remove it from model.encoder_config and set model.image_size instead")
    # The model's own rules, from the library; fields already reported wrong are left out of its check. Sizes
    # that need the decoder's full config (heads, blocks) are checked when the trainer builds the model.
    model = {name: get(f"model.{name}") for name in ("prefix_length", "freeze_decoder") if usable(f"model.{name}")}
    mapper = get("model.mapper") if usable("model.mapper") else {}
    model["mapper"] = {k: v for k, v in mapper.items() if usable(f"model.mapper.{k}")}
    errors += [f"model.{problem}" for problem in config_problems(model)]
    if usable("training.warmup_steps", "training.warmup_ratio"):
        steps, ratio = get("training.warmup_steps"), get("training.warmup_ratio")
        if steps > 0 and ratio is not None:
            errors.append(
                f"training.warmup_steps ({steps}) and training.warmup_ratio ({ratio}) are both set; set only one"
            )
    if usable("data.augment", "model.freeze_encoder", "data.cache_embeddings"):
        active = active_augmentations(get("data.augment"))
        if active and get("model.freeze_encoder") and get("data.cache_embeddings"):
            errors.append(cache_problem(active))
    if usable("training.lr"):
        errors += lr_problems(get("training.lr"), get("model.freeze_encoder") if usable("model.freeze_encoder") else None,
                              get("model.freeze_decoder") if usable("model.freeze_decoder") else None)
    errors += _scst_checks(values)
    if usable("training.mixed_precision", "training.device"):
        if get("training.mixed_precision") == "fp16" and get("training.device") == "cpu":
            errors.append(
                "training.mixed_precision: 'fp16' needs CUDA but training.device is 'cpu'; use 'bf16' or 'no'"
            )
    return errors


def _scst_checks(values: Values) -> list[str]:
    """The SCST stage against the rest of the run."""
    usable, get = values.usable, values.get
    if not (usable("scst.enabled") and get("scst.enabled")):
        return []
    errors = []
    if usable("scst.after_epoch", "training.epochs") and get("scst.after_epoch") >= get("training.epochs"):
        errors.append(f"scst.after_epoch ({get('scst.after_epoch')}) leaves no SCST epoch: training.epochs "
                      f"({get('training.epochs')}) counts every epoch, cross-entropy and SCST; set training.epochs "
                      f"> scst.after_epoch")
    if usable("scst.after_epoch", "model.init_from") and get("scst.after_epoch") == 0 and not get("model.init_from"):
        errors.append("scst.after_epoch is 0 but there is no model.init_from: SCST from random weights samples "
                      "captions that never earn a reward; train some cross-entropy epochs first (scst.after_epoch=N) "
                      "or start from a trained entry (model.init_from=model_zoo/NAME)")
    if usable("scst.baseline", "scst.samples_per_image"):
        if get("scst.baseline") == "mean" and get("scst.samples_per_image") < 2:
            errors.append(f"scst.baseline 'mean' compares each sample with the other samples of its image, so it "
                          f"needs scst.samples_per_image >= 2, got {get('scst.samples_per_image')}; raise it or "
                          f"use baseline: greedy")
    if usable("evaluation.best_metric") and get("evaluation.best_metric") == "val_loss":
        errors.append("evaluation.best_metric: 'val_loss' with scst.enabled would pick a cross-entropy epoch (SCST "
                      "optimises CIDEr-D and raises the cross-entropy loss); use best_metric: cider")
    return errors


SCHEMA = Schema(ExperimentConfig, renamed=RENAMED, cross_checks=_cross_checks)


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------

def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Validate a nested dict (as read from YAML) into an :class:`ExperimentConfig`; raise :class:`ConfigError`
    listing every problem."""
    return SCHEMA.from_dict(data)


def config_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as plain nested dicts/lists (YAML- and JSON-ready); ``config_from_dict`` inverts it."""
    return SCHEMA.to_dict(cfg)


def validate_config(cfg: ExperimentConfig) -> None:
    """Check a config built in code (dataclass constructors do not validate); raise :class:`ConfigError`."""
    config_from_dict(config_to_dict(cfg))


def load_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> ExperimentConfig:
    """Read an experiment YAML, apply ``key.sub=value`` overrides and validate; :class:`ConfigError` lists every
    problem (file and line for YAML syntax errors)."""
    return SCHEMA.load(path, overrides)


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write ``cfg`` as YAML (sections and keys in schema order); ``load_config(path)`` gives back an equal config."""
    SCHEMA.save(cfg, path)


def describe_config() -> str:
    """Every config key with its type, default and documentation, one per line (for ``--help``-style output)."""
    return SCHEMA.describe()


def main(argv: list[str] | None = None) -> int:
    """``python -m trainer.config describe`` prints every key; ``check FILE [key=value ...]`` validates a file."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m trainer.config", description="The experiment config schema.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("describe", help="print every config key with its type, default and documentation")
    check = commands.add_parser("check", help="validate an experiment YAML (with overrides) without training")
    check.add_argument("config")
    check.add_argument("overrides", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "describe":
        print(describe_config())
        return 0
    try:
        load_config(args.config, args.overrides)
    except ConfigError as error:
        print(f"error: invalid config {args.config}:\n{error}", file=sys.stderr)
        return 2
    print(f"{args.config}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
