"""Learning rates per part of the captioner (`training.lr`) and the optimiser's parameter groups.

``training.learning_rate`` is the base rate of every trainable parameter, as it always was. ``training.lr``
sets the encoder's, the mapper's or the decoder's own rate (each null = the base), as when the encoder is
unfrozen for fine-tuning at a lower rate than the freshly initialised mapper (the EfficientNet captioner's
``--unfreeze_cnn --lr 3e-5``). A rate for a part that is frozen is a contradiction and refused.

Without per-part rates the optimiser has the two groups it always had (decayed weights; biases and norms
without decay), so states saved before ``training.lr`` existed still resume. With them it has one pair of
groups per trainable part, named ``encoder``, ``encoder (no decay)``, ...; the scheduler scales every group's
rate by the same factor, and the log shows each part's rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .typed_config import greater_than, setting

__all__ = ["LearningRates", "PARTS", "lr_problems", "parameter_groups", "part_lrs"]

PARTS = ("encoder", "mapper", "decoder")  # the captioner's submodules, in the order the log shows them


@dataclass(kw_only=True)
class LearningRates:
    """Learning rate of each part; null = training.learning_rate."""

    encoder: float | None = setting(None, doc="Image encoder's peak learning rate (needs model.freeze_encoder: "
                                              "false; e.g. 3e-5 to fine-tune it); null = training.learning_rate.",
                                    check=greater_than(0))
    mapper: float | None = setting(None, doc="Mapping network's peak learning rate; null = training.learning_rate.",
                                   check=greater_than(0))
    decoder: float | None = setting(None, doc="GPT-2 decoder's peak learning rate (not with model.freeze_decoder: "
                                              "all); null = training.learning_rate.", check=greater_than(0))


def lr_problems(rates: dict[str, Any], freeze_encoder: bool | None, freeze_decoder: Any) -> list[str]:
    """Per-part rates that contradict the freezing keys (a key that was itself wrong is passed as None)."""
    problems = []
    if rates.get("encoder") is not None and freeze_encoder:
        problems.append(f"training.lr.encoder: {rates['encoder']} is a rate for the image encoder, but "
                        f"model.freeze_encoder is true, so the encoder is not trained; set model.freeze_encoder=false "
                        f"to fine-tune it, or remove training.lr.encoder")
    if rates.get("decoder") is not None and freeze_decoder == "all":
        problems.append(f"training.lr.decoder: {rates['decoder']} is a rate for the decoder, but "
                        f"model.freeze_decoder is 'all', so no decoder weight is trained; set model.freeze_decoder "
                        f"to 'none' or a number of blocks, or remove training.lr.decoder")
    return problems


def parameter_groups(model: Any, base_lr: float, rates: LearningRates, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups of the model's trainable parameters: weights decayed, biases and norms not
    (ndim < 2); without per-part rates two groups at ``base_lr``, with them a named pair per trainable part."""
    def split(params: list) -> tuple[list, list]:
        return [p for p in params if p.ndim >= 2], [p for p in params if p.ndim < 2]

    if all(getattr(rates, part) is None for part in PARTS):
        decay, no_decay = split([p for p in model.parameters() if p.requires_grad])
        return [{"params": decay, "weight_decay": weight_decay, "lr": base_lr},
                {"params": no_decay, "weight_decay": 0.0, "lr": base_lr}]
    by_part: dict[str, list] = {part: [] for part in PARTS}
    for name, p in model.named_parameters():  # a tied tensor (GPT-2's wte / LM head) is listed once
        part = name.split(".", 1)[0]
        if part not in by_part:
            raise ValueError(f"parameter {name!r} is in none of the parts {', '.join(PARTS)}")
        if p.requires_grad:
            by_part[part].append(p)
    groups = []
    for part in PARTS:
        lr = getattr(rates, part) or base_lr
        decay, no_decay = split(by_part[part])
        groups += [{"params": decay, "weight_decay": weight_decay, "lr": lr, "name": part},
                   {"params": no_decay, "weight_decay": 0.0, "lr": lr, "name": f"{part} (no decay)"}]
    return [g for g in groups if g["params"]]


def part_lrs(optimizer: Any) -> dict[str, float]:
    """Each trained part's current rate, from the named groups; {} when the groups are not per part."""
    return {g["name"].split(" ")[0]: g["lr"] for g in optimizer.param_groups if "name" in g}
