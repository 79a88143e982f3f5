"""Score a captioner on a dataset split: caption it through `captioning.caption_images` and compute BLEU-1..4,
ROUGE-L, CIDEr-D (optionally METEOR, BERTScore, CLIPScore and RefCLIPScore), and on a shapes dataset the object accuracy.

The trainer's validation and test, `python -m trainer.evaluate` (trainer/evaluate.py) and the leaderboard
(trainer/leaderboard.py) all call `evaluate_split`, so they report the same numbers for the same split and decoding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from captioning.generation import GenerationSettings
from captioning.metrics import compute_metrics
from captioning.pipeline import caption_images, read_images
from captioning.zoo import ZooModel

from .data import Split, object_accuracy


def caption_split(model: ZooModel, split: Split, settings: GenerationSettings, *, batch_size: int = 32,
                  max_images: int | None = None, features: Callable[[list[str]], torch.Tensor] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """image_id -> first caption, for the split's images (sorted ids, first `max_images`), made by
    `captioning.caption_images`.

    features(image_ids) may supply precomputed encoder features (the trainer's embedding cache); otherwise
    each batch's images are read by the library's rule (`read_images`: unreadable ones are reported as
    `skipped:` lines on stderr and left out) and encoded once.
    """
    ids = sorted(split.image_paths)[: max_images or None]
    captions: dict[str, str] = {}
    for start in range(0, len(ids), batch_size):
        batch_ids = ids[start:start + batch_size]
        if features is not None:
            results = caption_images([model], None, names=batch_ids, settings=settings, batch_size=batch_size,
                                     features={model.encoder_key: features})
        else:
            read = read_images((image_id, split.image_paths[image_id]) for image_id in batch_ids)
            read.report()
            if not read.images:
                continue
            results = caption_images([model], read.images, names=read.names, settings=settings,
                                     batch_size=batch_size)
        captions.update((r.image_name, r.caption) for r in results)
        if progress:
            progress(min(start + batch_size, len(ids)), len(ids))
    return captions


# What `--metrics` / `evaluation.metrics` may name: the library's text metrics and the shapes object accuracy.
SCORE_METRICS = ("bleu", "meteor", "rouge", "cider", "bertscore", "object_accuracy")


def check_metrics(metrics: list[str]) -> list[str]:
    """The metric names, or ValueError naming the unknown ones and the valid ones."""
    unknown = [m for m in metrics if m not in SCORE_METRICS]
    if unknown:
        hint = " (CLIPScore is asked for with --clipscore)" if any("clip" in m for m in unknown) else ""
        raise ValueError(f"Unknown metric name(s) {', '.join(map(repr, unknown))}; valid metrics = "
                         f"{', '.join(SCORE_METRICS)}{hint}")
    return metrics


def score_captions(captions: dict[str, str], split: Split, *, metrics: list[str], bertscore_model: str | None = None,
                   bertscore_num_layers: int | None = 6, report: dict[str, Any] | None = None,
                   tokenizer: str = "auto") -> dict[str, float]:
    """Metrics of generated captions against the split's references (and objects, when it has them).

    ``report``, when given, receives the tokenizer used and the seconds each metric took (``compute_metrics``)."""
    ids = sorted(captions)
    if not ids:
        raise ValueError(f"no captions to score for split {split.name!r}: all its images failed to load")
    wanted = set(check_metrics([m for m in metrics if m != "loss"]))
    preds = [captions[i] for i in ids]
    refs = [split.references[i] for i in ids]
    scores: dict[str, float] = {}
    if wanted & {"bleu", "meteor", "rouge", "cider", "bertscore"}:
        scores.update(compute_metrics(preds, refs, bertscore_model=bertscore_model,
                                      bertscore_num_layers=bertscore_num_layers, use_bleu="bleu" in wanted,
                                      use_rouge="rouge" in wanted, use_cider="cider" in wanted,
                                      use_bertscore="bertscore" in wanted, use_meteor="meteor" in wanted,
                                      report=report, tokenizer=tokenizer))
    if split.objects and ("object_accuracy" in wanted or not metrics):
        started = time.perf_counter()
        accuracy = object_accuracy({i: captions[i] for i in ids}, split.objects)
        scores["object_accuracy"] = accuracy["object_accuracy"]
        scores.update({f"object_accuracy_{n}obj": value for n, value in accuracy["by_objects"].items()})
        if report is not None:
            report.setdefault("seconds", {})["object_accuracy"] = round(time.perf_counter() - started, 3)
    scores["images"] = len(ids)
    return scores


def evaluate_split(model: ZooModel, split: Split, *, settings: GenerationSettings, metrics: list[str],
                   bertscore_model: str | None = None, bertscore_num_layers: int | None = 6, batch_size: int = 32,
                   max_images: int | None = None, features: Callable[[list[str]], torch.Tensor] | None = None,
                   report: dict[str, Any] | None = None, tokenizer: str = "auto"
                   ) -> tuple[dict[str, float], dict[str, str]]:
    """Caption the split and score it; returns (metrics, captions)."""
    captions = caption_split(model, split, settings, batch_size=batch_size, max_images=max_images, features=features)
    return score_captions(captions, split, metrics=metrics, bertscore_model=bertscore_model,
                          bertscore_num_layers=bertscore_num_layers, report=report, tokenizer=tokenizer), captions


def add_clipscore(scores: dict[str, Any], scorer: Any, split: Split, captions: dict[str, str], *,
                  batch_size: int = 256) -> None:
    """Add CLIPScore and RefCLIPScore (`captioning.clipscore`) of `captions` (split image id -> caption) to
    `scores`, over the images that can be read (unreadable ones are reported on stderr and left out)."""
    from captioning.clipscore import clip_scores

    ids = sorted(captions)
    per: dict[str, list[float]] = {"clipscore": [], "refclipscore": []}
    for start in range(0, len(ids), batch_size):
        read = read_images((i, split.image_paths[i]) for i in ids[start:start + batch_size])
        read.report()
        if not read.images:
            continue
        batch = clip_scores(scorer, read.images, [captions[i] for i in read.names],
                            [split.references[i] for i in read.names])
        for key in per:
            per[key] += batch["per_image"][key]
    if per["clipscore"]:
        scores.update({key: sum(values) / len(values) for key, values in per.items()})


def load_clip(name: str | None) -> tuple[Any, dict[str, Any] | None]:
    """(scorer, description) for --clipscore: (None, None) when not asked; (None, {"model", "reason"}) when the
    CLIP model cannot be loaded here (e.g. offline without a cached copy): the metric is then absent, said why."""
    if not name:
        return None, None
    from captioning.clipscore import clipscore_info, load_clip_scorer
    from captioning.hub import PretrainedLoadError

    try:
        scorer = load_clip_scorer(name)
    except PretrainedLoadError as e:
        return None, {"model": name, "reason": f"CLIPScore not computed: {e}"}
    return scorer, {"model": name, **clipscore_info(name)}
