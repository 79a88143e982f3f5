"""Start a run from an existing zoo entry (`model.init_from: model_zoo/NAME`): its weights, architecture,
tokenizer and preprocessing, as users do when they fine-tune a released model on their own photos.

The YAML may change the data, the freezing (`model.freeze_encoder`, `model.freeze_decoder`), the learning
rates and the SCST stage. A model key that describes the architecture may only repeat the entry's value: one
that contradicts it is refused with a line naming the key, both values and what to do. A key left at its
schema default is not compared (the schema cannot tell "left out" from "written as the default").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from captioning.config import ConfigValueError, MapperConfig
from captioning.zoo import KIND_PREFIX, WEIGHTS_FILE, ZooError, ZooModel, file_sha256, load_entry

from .config import ExperimentConfig, ModelConfig
from .errors import TrainingError

FROM_SCRATCH = " (from scratch)"  # the suffix build_components gives the names of parts built at random init


def _defaults(cls: type) -> dict[str, Any]:
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


def contradictions(model: ModelConfig, entry: ZooModel) -> list[str]:
    """One line per YAML model key (set away from its default) whose value differs from the entry's."""
    config = entry.model.config
    where = f"model.init_from {model.init_from}"
    defaults = _defaults(ModelConfig)
    problems: list[str] = []

    def differs(key: str, given: Any, theirs: Any, what: str | None = None) -> None:
        if given != theirs:
            problems.append(f"model.{key}: {given!r} contradicts {where}, whose {what or key} is {theirs!r}; remove "
                            f"model.{key} (the architecture comes from the entry) or start without model.init_from")

    def given(key: str) -> bool:
        return getattr(model, key) != defaults[key]

    for key, name in (("encoder", config.encoder_name), ("decoder", config.decoder_name)):
        if given(key):
            differs(key, getattr(model, key), name.removesuffix(FROM_SCRATCH), f"{key} name")
    if given("from_scratch"):
        differs("from_scratch", model.from_scratch, config.encoder_name.endswith(FROM_SCRATCH),
                "from_scratch (read from its encoder name)")
    if given("encoder_type"):
        differs("encoder_type", model.encoder_type, config.encoder_type)
    if given("encoder_revision"):
        differs("encoder_revision", model.encoder_revision, config.encoder_revision)
    if given("prefix_length"):
        differs("prefix_length", model.prefix_length, config.prefix_length)
    mapper_defaults = _defaults(MapperConfig)
    for f in dataclasses.fields(MapperConfig):
        value = getattr(model.mapper, f.name)
        if value != mapper_defaults[f.name]:
            differs(f"mapper.{f.name}", value, getattr(config.mapper, f.name))
    if given("image_size"):
        differs("image_size", model.image_size, config.encoder_config.get("image_size"), "encoder image_size")
    for key, theirs in (("encoder_config", config.encoder_config), ("decoder_config", config.decoder_config)):
        for sub, value in (getattr(model, key) or {}).items():
            differs(f"{key}.{sub}", value, theirs.get(sub))
    if given("tokenizer"):
        problems += _tokenizer_problems(model.tokenizer, entry, where)
    return problems


def _tokenizer_problems(name: str, entry: ZooModel, where: str) -> list[str]:
    from captioning.tokenization import load_tokenizer

    try:
        tokenizer = load_tokenizer(name)
    except ConfigValueError as e:
        return [f"model.tokenizer: {e}; with model.init_from the tokenizer is the entry's own: remove model.tokenizer"]
    if tokenizer.get_vocab() != entry.tokenizer.get_vocab():
        return [f"model.tokenizer: {name!r} is not the tokenizer of {where} (their vocabularies differ: "
                f"{len(tokenizer)} vs {len(entry.tokenizer)} tokens); remove model.tokenizer, the entry brings its own"]
    return []


def load_parent(cfg: ExperimentConfig) -> ZooModel:
    """The entry named by model.init_from, checked against the YAML's model keys (TrainingError if it cannot be
    used), with the YAML's freezing applied and in training mode."""
    m = cfg.model
    try:
        entry = load_entry(Path(m.init_from))
    except ZooError as e:
        raise TrainingError(f"model.init_from: {e}") from None
    if entry.kind != KIND_PREFIX:
        raise TrainingError(f"model.init_from: {m.init_from} is a {entry.kind} entry; only caption-zoo prefix "
                            f"captioners can be trained further")
    problems = contradictions(m, entry)
    if problems:
        raise TrainingError("\n".join(problems))
    model = entry.model
    model.config.freeze_encoder, model.config.freeze_decoder = m.freeze_encoder, m.freeze_decoder
    try:
        model.apply_freezing()
    except ConfigValueError as e:
        raise TrainingError(f"model.{e}") from None
    model.train()
    return entry


def parent_record(init_from: str) -> dict[str, Any]:
    """What the child's config.json and card say about where it started: the entry's name, path and the sha256
    of its weights file (taken when the run starts, so a resumed run keeps the hash it started from)."""
    path = Path(init_from)
    return {"entry": path.name, "path": str(init_from), "weights_sha256": file_sha256(path / WEIGHTS_FILE)}
