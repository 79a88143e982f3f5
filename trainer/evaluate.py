"""Score a captioner on a dataset split: BLEU-1..4, CIDEr-D, BERTScore (optionally METEOR, CLIPScore and
RefCLIPScore), and on a shapes dataset the object accuracy. The trainer's validation and test use the same
`evaluate_split`, so `python -m trainer.evaluate` reproduces the trainer's numbers for the same split and decoding.

    python -m trainer.evaluate --model model_zoo/NAME --data PATH --split test [--json] [--preset consistent]
    python -m trainer.evaluate --captions FILE --data PATH --split test     captions made anywhere (CSV or COCO
                                                                         results JSON; trainer/captions_file.py)
    python -m trainer.evaluate --zoo model_zoo --data PATH --split test     every entry -> leaderboard.json + .md
                                                                         in the zoo (trainer/leaderboard.py)
    ... --clipscore [MODEL]     also CLIPScore / RefCLIPScore with a CLIP model (default openai/clip-vit-base-patch32)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def _print_scores(title: str, scores: dict[str, Any]) -> None:
    print(title)
    for key, value in scores.items():
        print(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")


def main(argv: list[str] | None = None) -> int:
    from captioning.clipscore import DEFAULT_CLIP_MODEL
    from captioning.zoo import ZooError, load_entry

    from .captions_file import (
        check_matched,
        describe_matching,
        match_to_split,
        read_captions,
        result_block,
        split_fingerprint,
    )
    from .data import DatasetError, load_dataset

    parser = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="zoo entry folder, e.g. model_zoo/NAME")
    what.add_argument("--captions", help="captions made anywhere: our CSV, an image_id,model_name,caption CSV, "
                                         "or a COCO results JSON")
    what.add_argument("--zoo", help="score every entry of this zoo folder and write its leaderboard")
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
    parser.add_argument("--clipscore", nargs="?", const=DEFAULT_CLIP_MODEL, metavar="MODEL",
                        help=f"also CLIPScore and RefCLIPScore with this CLIP model (hub name or folder; "
                             f"default {DEFAULT_CLIP_MODEL})")
    parser.add_argument("--leaderboard", help="with --zoo: where to write the leaderboard JSON (default: "
                                              "ZOO/leaderboard.json; the .md goes beside it)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", help="also write the JSON result to this file")
    args = parser.parse_args(argv)
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    info = metrics_info(bertscore_model=args.bertscore_model, bertscore_num_layers=6,
                        use_bertscore="bertscore" in metrics, use_meteor="meteor" in metrics)
    started = time.perf_counter()
    try:
        split = load_dataset(args.data, format=args.format, split=args.split)
        settings = get_settings(args.preset, max_new_tokens=args.max_new_tokens)
        scorer, clip = load_clip(args.clipscore)
        if clip and clip.get("reason"):
            print(clip["reason"], file=sys.stderr)
        if args.zoo:
            from .leaderboard import score_zoo

            result = score_zoo(args.zoo, split, data=args.data, settings=settings, metrics=metrics, info=info,
                               bertscore_model=args.bertscore_model, batch_size=args.batch_size,
                               max_images=args.max_images, clip_scorer=scorer, clip=clip,
                               out=args.leaderboard, argv=argv if argv is not None else sys.argv[1:])
        elif args.captions:
            models = {}
            for name, raw in read_captions(args.captions).items():
                matched = match_to_split(name, raw, split)
                check_matched(matched, split, args.captions)
                for line in describe_matching(matched, split):
                    print(f"note: {line}", file=sys.stderr)
                scores = score_captions(matched.captions, split, metrics=metrics, bertscore_model=args.bertscore_model)
                if scorer is not None:
                    add_clipscore(scores, scorer, split, matched.captions)
                models[name] = result_block(matched, scores)
            result = {"captions": str(args.captions), "data": str(args.data), "split": split.name,
                      "dataset_fingerprint": split_fingerprint(split), "models": models}
        else:
            model = load_entry(args.model)
            scores, captions = evaluate_split(model, split, settings=settings, metrics=metrics,
                                              bertscore_model=args.bertscore_model, batch_size=args.batch_size,
                                              max_images=args.max_images)
            if scorer is not None:
                add_clipscore(scores, scorer, split, captions)
            result = {"model": model.name, "data": str(args.data), "split": split.name,
                      "dataset_fingerprint": split_fingerprint(split), "metrics": scores,
                      "decoding": settings.to_dict()}
    except (ZooError, DatasetError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["seconds"] = round(time.perf_counter() - started, 2)
    result.setdefault("info", info)
    if clip:
        result["clipscore"] = clip
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    elif args.zoo:
        from captioning.leaderboard import leaderboard_markdown

        print(leaderboard_markdown(result), end="")
        print(f"wrote {result['written'][0]} and {result['written'][1]}", file=sys.stderr)
    elif args.captions:
        for name, block in result["models"].items():
            _print_scores(f"{name} (captions from {args.captions}) on {args.data} [{split.name}], "
                          f"{block['captioned_images']} images", block["metrics"])
    else:
        _print_scores(f"{result['model']} on {args.data} [{split.name}], {result['metrics']['images']} images, "
                      f"preset {args.preset}", result["metrics"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
