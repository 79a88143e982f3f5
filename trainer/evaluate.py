"""Score a captioner on a dataset split: BLEU-1..4, CIDEr-D, BERTScore (optionally METEOR), and on a
shapes dataset the object accuracy. The trainer's validation and test use the same `evaluate_split`, so
`python -m trainer.evaluate` reproduces the trainer's numbers for the same split and decoding.

    python -m trainer.evaluate --model model_zoo/NAME --data PATH --split test [--json] [--preset consistent]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from captioning.generation import GenerationSettings, get_settings
from captioning.metrics import compute_metrics, metrics_info
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


def score_captions(captions: dict[str, str], split: Split, *, metrics: list[str], bertscore_model: str | None = None,
                   bertscore_num_layers: int | None = 6) -> dict[str, float]:
    """Metrics of generated captions against the split's references (and objects, when it has them)."""
    ids = sorted(captions)
    if not ids:
        raise ValueError(f"no captions to score for split {split.name!r}: all its images failed to load")
    preds = [captions[i] for i in ids]
    refs = [split.references[i] for i in ids]
    wanted = set(metrics)
    scores: dict[str, float] = {}
    if wanted & {"bleu", "cider", "bertscore", "meteor"}:
        scores.update(compute_metrics(preds, refs, bertscore_model=bertscore_model,
                                      bertscore_num_layers=bertscore_num_layers,
                                      use_bertscore="bertscore" in wanted, use_meteor="meteor" in wanted))
        if "bleu" not in wanted:
            scores = {k: v for k, v in scores.items() if not k.startswith("bleu")}
        if "cider" not in wanted:
            scores.pop("cider", None)
    if split.objects and ("object_accuracy" in wanted or not metrics):
        accuracy = object_accuracy({i: captions[i] for i in ids}, split.objects)
        scores["object_accuracy"] = accuracy["object_accuracy"]
        scores.update({f"object_accuracy_{n}obj": value for n, value in accuracy["by_objects"].items()})
    scores["images"] = len(ids)
    return scores


def evaluate_split(model: ZooModel, split: Split, *, settings: GenerationSettings, metrics: list[str],
                   bertscore_model: str | None = None, bertscore_num_layers: int | None = 6, batch_size: int = 32,
                   max_images: int | None = None, features: Callable[[list[str]], torch.Tensor] | None = None
                   ) -> tuple[dict[str, float], dict[str, str]]:
    """Caption the split and score it; returns (metrics, captions)."""
    captions = caption_split(model, split, settings, batch_size=batch_size, max_images=max_images, features=features)
    return score_captions(captions, split, metrics=metrics, bertscore_model=bertscore_model,
                          bertscore_num_layers=bertscore_num_layers), captions


def main(argv: list[str] | None = None) -> int:
    from captioning.zoo import ZooError, load_entry

    from .data import DatasetError, load_dataset

    parser = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="zoo entry folder, e.g. model_zoo/NAME")
    parser.add_argument("--data", required=True, help="dataset folder or annotation file")
    parser.add_argument("--format", default="auto", help="dataset format (default: auto-detect)")
    parser.add_argument("--split", default="test", help="split to score (default: test)")
    parser.add_argument("--preset", default="consistent", help="decoding preset (default: consistent)")
    parser.add_argument("--max-new-tokens", type=int, default=30)
    parser.add_argument("--max-images", type=int, help="score only the first N images (sorted ids)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--metrics", default="bleu,cider,bertscore,object_accuracy",
                        help="comma-separated: bleu,cider,bertscore,meteor,object_accuracy")
    parser.add_argument("--bertscore-model", help="BERTScore model folder (default: the bundled offline MiniLM)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    try:
        model = load_entry(args.model)
        split = load_dataset(args.data, format=args.format, split=args.split)
        settings = get_settings(args.preset, max_new_tokens=args.max_new_tokens)
        metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
        started = time.perf_counter()
        scores, captions = evaluate_split(model, split, settings=settings, metrics=metrics,
                                          bertscore_model=args.bertscore_model, batch_size=args.batch_size,
                                          max_images=args.max_images)
    except (ZooError, DatasetError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = {"model": model.name, "data": str(args.data), "split": split.name, "metrics": scores,
              "decoding": settings.to_dict(), "seconds": round(time.perf_counter() - started, 2),
              "info": metrics_info(bertscore_model=args.bertscore_model, bertscore_num_layers=6,
                                   use_bertscore="bertscore" in metrics, use_meteor="meteor" in metrics)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(f"{model.name} on {args.data} [{split.name}], {scores['images']} images, preset {args.preset}")
        for key, value in scores.items():
            print(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
