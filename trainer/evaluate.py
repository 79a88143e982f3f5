"""Score a captioner on a dataset split: BLEU-1..4, CIDEr-D, BERTScore (optionally METEOR, CLIPScore and
RefCLIPScore), and on a shapes dataset the object accuracy. This is the command line; the scoring is
`trainer.scoring.evaluate_split`, which the trainer's validation and test also use, so `python -m trainer.evaluate`
reproduces the trainer's numbers for the same split and decoding.

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
from pathlib import Path
from typing import Any

from captioning.generation import get_settings
from captioning.leaderboard import leaderboard_markdown
from captioning.metrics import metrics_info

from .leaderboard import score_zoo
from .scoring import add_clipscore, evaluate_split, load_clip, score_captions


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
