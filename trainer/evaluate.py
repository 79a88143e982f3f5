"""Score a captioner on a dataset split: BLEU-1..4, METEOR, ROUGE-L and CIDEr-D as the COCO caption evaluation
computes them (pycocoevalcap with its PTB tokenizer on the machine's Java), optionally BERTScore, CLIPScore and
RefCLIPScore, and on a shapes dataset the object accuracy. This is the command line; the scoring is
`trainer.scoring.evaluate_split`, which the trainer's validation and test also use, so `python -m trainer.evaluate`
reproduces the trainer's numbers for the same split and decoding.

    python -m trainer.evaluate --model model_zoo/NAME --data PATH --split test [--json] [--preset consistent]
    python -m trainer.evaluate --captions RESULTS --data DIR_OR_ANNOTATION_FILE --split val
        captions made anywhere (a COCO results JSON [{"image_id", "caption"}] or a captions CSV;
        trainer/captions_file.py) against an annotation file alone: no image files are needed
    python -m trainer.evaluate --zoo model_zoo --data PATH --split test
        every entry -> leaderboard.json + .md in the zoo (trainer/leaderboard.py)
    ... --clipscore [MODEL]   also CLIPScore / RefCLIPScore with a CLIP model (default openai/clip-vit-base-patch32);
                              the only metric that needs the image files
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
from captioning.metrics import SPICE_NOTE, TOKENIZERS, coco_names, metrics_info

from .leaderboard import score_zoo
from .scoring import SCORE_METRICS, add_clipscore, check_metrics, evaluate_split, load_clip, score_captions

DEFAULT_METRICS = "bleu,meteor,rouge,cider,object_accuracy"
METRICS_HELP = f"""metrics (--metrics, comma-separated; default {DEFAULT_METRICS}):
  bleu             BLEU-1..4 (pycocoevalcap Bleu)                          COCO names Bleu_1 .. Bleu_4
  meteor           METEOR 1.5 (pycocoevalcap jar; needs Java, ~10 s to start) COCO name METEOR
  rouge            ROUGE-L (pycocoevalcap Rouge)                           COCO name ROUGE_L
  cider            CIDEr-D (pycocoevalcap Cider)                           COCO name CIDEr
  bertscore        BERTScore P/R/F1 with the bundled MiniLM: not a default, it costs about 80 s per
                   1,000 captions on two CPU cores (a GPU is much faster)
  object_accuracy  shapes datasets only: share of captions naming the image's objects
  CLIPScore / RefCLIPScore come with --clipscore and need the image files; every other metric needs only the
  annotation file. {SPICE_NOTE}.

tokenizer: captions are tokenized as the COCO caption evaluation does (pycocoevalcap's PTB tokenizer, run on
the machine's Java), so BLEU, METEOR, ROUGE-L and CIDEr equal pycocoevalcap's. Without Java the regex tokenizer
stands in, and the output says so ("tokenizer": "regex"). The JSON output gives the COCO code's names beside
ours under "coco", the tokenizer used and the seconds each metric took."""


def _print_scores(title: str, scores: dict[str, Any]) -> None:
    print(title)
    for key, value in scores.items():
        print(f"  {key:<22} {value:.4f}" if isinstance(value, float) else f"  {key:<22} {value}")


def _print_report(name: str, report: dict[str, Any]) -> None:
    """One line on stderr: which tokenizer, and how long each metric took."""
    seconds = " | ".join(f"{k} {v:.2f} s" for k, v in (report.get("seconds") or {}).items())
    print(f"{name}: tokenizer {report.get('tokenizer', '-')} | {seconds}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    from captioning.clipscore import DEFAULT_CLIP_MODEL

    parser = argparse.ArgumentParser(prog="python -m trainer.evaluate", description=__doc__,
                                     epilog=METRICS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="zoo entry folder, e.g. model_zoo/NAME")
    what.add_argument("--captions", help="captions made anywhere: a COCO results JSON [{\"image_id\", \"caption\"}], "
                                         "our CSV or an image_id,model_name,caption CSV")
    what.add_argument("--zoo", help="score every entry of this zoo folder and write its leaderboard")
    parser.add_argument("--data", required=True, help="dataset folder or annotation file (COCO captions JSON, "
                                                      "Karpathy dataset_*.json, Flickr8k token file)")
    parser.add_argument("--format", default="auto", help="dataset format: auto (default), coco, karpathy, flickr8k, "
                                                         "folder")
    parser.add_argument("--split", default="test", help="split to score: train, val or test (default: test)")
    parser.add_argument("--preset", default="consistent", help="decoding preset with --model/--zoo (default: "
                                                               "consistent)")
    parser.add_argument("--max-new-tokens", type=int, default=30, help="longest caption with --model/--zoo "
                                                                       "(default 30)")
    parser.add_argument("--max-images", type=int, help="with --model/--zoo: caption only the first N images "
                                                       "(sorted ids)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    parser.add_argument("--metrics", default=DEFAULT_METRICS,
                        help=f"comma-separated, from: {', '.join(SCORE_METRICS)} (default {DEFAULT_METRICS}; see "
                             "below)")
    parser.add_argument("--tokenizer", default="auto", choices=TOKENIZERS,
                        help="auto (default: PTB when Java works, else regex), ptb or regex")
    parser.add_argument("--bertscore-model", help="BERTScore model folder (default: the bundled offline MiniLM)")
    parser.add_argument("--clipscore", nargs="?", const=DEFAULT_CLIP_MODEL, metavar="MODEL",
                        help=f"also CLIPScore and RefCLIPScore with this CLIP model (hub name or folder; "
                             f"default {DEFAULT_CLIP_MODEL}); needs the image files")
    parser.add_argument("--leaderboard", help="with --zoo: where to write the leaderboard JSON (default: "
                                              "ZOO/leaderboard.json; the .md goes beside it)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--out", help="also write the JSON result to this file")
    return parser


def main(argv: list[str] | None = None) -> int:
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

    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        metrics = check_metrics([m.strip() for m in args.metrics.split(",") if m.strip()])
        info = metrics_info(bertscore_model=args.bertscore_model, bertscore_num_layers=6,
                            use_bertscore="bertscore" in metrics, use_meteor="meteor" in metrics,
                            tokenizer=args.tokenizer)
        # Captions made elsewhere need only the annotations: text metrics never open an image.
        split = load_dataset(args.data, format=args.format, split=args.split, check_images=not args.captions)
        settings = get_settings(args.preset, max_new_tokens=args.max_new_tokens)
        scorer, clip = load_clip(args.clipscore)
        if clip and clip.get("reason"):
            print(clip["reason"], file=sys.stderr)
        if args.zoo:
            result = score_zoo(args.zoo, split, data=args.data, settings=settings, metrics=metrics, info=info,
                               bertscore_model=args.bertscore_model, batch_size=args.batch_size,
                               max_images=args.max_images, clip_scorer=scorer, clip=clip,
                               out=args.leaderboard, argv=argv if argv is not None else sys.argv[1:],
                               tokenizer=args.tokenizer)
        elif args.captions:
            models = {}
            for name, raw in read_captions(args.captions).items():
                matched = match_to_split(name, raw, split)
                check_matched(matched, split, args.captions)
                for line in describe_matching(matched, split):
                    print(f"note: {line}", file=sys.stderr)
                report: dict[str, Any] = {}
                scores = score_captions(matched.captions, split, metrics=metrics, bertscore_model=args.bertscore_model,
                                        report=report, tokenizer=args.tokenizer)
                if scorer is not None:
                    clip_started = time.perf_counter()
                    missing = [i for i in matched.captions if not split.image_paths[i].is_file()]
                    if missing:
                        reason = (f"CLIPScore not computed for {name}: {len(missing)} of its "
                                  f"{len(matched.captions)} images are not on disk (e.g. "
                                  f"{split.image_paths[missing[0]]}); CLIPScore needs the image files, the text "
                                  "metrics do not")
                        print(reason, file=sys.stderr)
                        clip = {**(clip or {}), "reason": reason}
                    else:
                        add_clipscore(scores, scorer, split, matched.captions)
                        report.setdefault("seconds", {})["clipscore"] = round(time.perf_counter() - clip_started, 3)
                _print_report(name, report)
                models[name] = result_block(matched, scores) | {"coco": coco_names(scores), **report}
            result = {"captions": str(args.captions), "data": str(args.data), "split": split.name,
                      "dataset_fingerprint": split_fingerprint(split), "models": models}
        else:
            model = load_entry(args.model)
            report = {}
            scores, captions = evaluate_split(model, split, settings=settings, metrics=metrics,
                                              bertscore_model=args.bertscore_model, batch_size=args.batch_size,
                                              max_images=args.max_images, report=report, tokenizer=args.tokenizer)
            if scorer is not None:
                add_clipscore(scores, scorer, split, captions)
            _print_report(model.name, report)
            result = {"model": model.name, "data": str(args.data), "split": split.name,
                      "dataset_fingerprint": split_fingerprint(split), "metrics": scores, "coco": coco_names(scores),
                      **report, "decoding": settings.to_dict()}
    except (ZooError, DatasetError, ValueError, OSError, RuntimeError) as e:
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
                          f"{block['captioned_images']} images, tokenizer {block.get('tokenizer', '-')}",
                          block["metrics"])
    else:
        _print_scores(f"{result['model']} on {args.data} [{split.name}], {result['metrics']['images']} images, "
                      f"preset {args.preset}, tokenizer {result.get('tokenizer', '-')}", result["metrics"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
