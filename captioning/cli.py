"""Command line: `python -m captioning caption ...` and `python -m captioning list ...`.

caption: every image in a folder x every chosen zoo model -> one CSV with `image_id, model_name, caption`
(the layout other CLIP-GPT2 projects' batch inference writes) plus the decoding settings. A bad image is
reported by name on stderr and skipped, and so is every file in the folder that is not an image we read
(`skipped: drawing.svg: SVG is a vector format; ...`). Images are decoded at the size the models read
(`preprocessing.needed_side`), so a folder of 50-megapixel photos needs memory for a few small images only.
User mistakes end with one clear line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

CSV_COLUMNS = ["image_id", "model_name", "caption", "caption_index", "score", "preset", "strategy", "num_beams",
               "length_penalty", "temperature", "top_k", "top_p", "no_repeat_ngram_size", "max_new_tokens",
               "seed", "weights_hash", "quantize"]


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


def _select_models(zoo: Path, wanted: str | None) -> list[Path]:
    from .zoo import is_entry, list_zoo

    available = [Path(r["path"]) for r in list_zoo(zoo) if "error" not in r]
    if not available:
        broken = [r["name"] for r in list_zoo(zoo)]
        raise UserError(f"no loadable models in zoo {zoo}" + (f" (broken entries: {broken})" if broken else ""))
    if not wanted:
        return available
    by_name = {p.name: p for p in available}
    chosen = []
    for name in [w.strip() for w in wanted.split(",") if w.strip()]:
        if name not in by_name:
            hint = " (it exists but cannot be loaded; run `python -m captioning list`)" if is_entry(zoo / name) else ""
            raise UserError(f"Model {name!r} not found in {zoo}{hint}; available models = {sorted(by_name)}")
        chosen.append(by_name[name])
    return chosen


def cmd_caption(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from .generation import check_supported, get_settings
    from .images import IMAGE_EXTENSIONS, ImageLoadError, scan_folder
    from .pipeline import caption_images, read_images
    from .preprocessing import needed_side
    from .zoo import ModelCache, ZooError

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in {"max_new_tokens": args.max_new_tokens, "num_captions": args.num_captions,
                                   "seed": args.seed, "quantize": args.quantize}.items() if v is not None}
    try:
        settings = get_settings(args.preset, **overrides)
        scan = scan_folder(args.images, recursive=args.recursive)
        model_paths = _select_models(Path(args.zoo), args.models)
        cache = ModelCache(max_models=max(len(model_paths), 1))
        models = [cache.get(p) for p in model_paths]
        for model in models:  # a fast path a model cannot take is refused before any work
            try:
                check_supported(model.model, settings)
            except ValueError as e:
                raise ValueError(f"model {model.name}: {e}") from None
    except (ValueError, ZooError, ImageLoadError) as e:
        raise UserError(str(e)) from None
    for file in scan.skipped:  # every file we pass over is named, so none goes missing unexplained
        print(f"skipped: {file.path.relative_to(args.images)}: {file.reason}", file=sys.stderr)
    paths = scan.images
    if not paths:
        raise UserError(f"no images found in {args.images} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}"
                        f"{'' if args.recursive else '; add --recursive for sub-folders'})")
    min_side = needed_side(models)  # None when a model reads the full image
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    skipped = 0
    rows = 0
    progress = tqdm(total=len(paths) * len(models), unit="caption", disable=args.quiet or None)
    tmp = out.with_name(out.name + ".partial")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for start in range(0, len(paths), args.batch_size):
            batch = read_images([(str(path.relative_to(args.images)), path)
                                 for path in paths[start:start + args.batch_size]], min_side=min_side)
            batch.report()  # the one rule for unreadable images: named on stderr, the others go on
            skipped += len(batch.problems)
            progress.update(len(batch.problems) * len(models))
            if not batch.images:
                continue
            done_before = progress.n
            results = caption_images(models, batch.images, names=batch.names, settings=settings,
                                     batch_size=args.batch_size,
                                     progress=lambda done, total, before=done_before: progress.update(before + done - progress.n))
            for r in results:
                for i, (caption, score) in enumerate(zip(r.captions, r.scores)):
                    writer.writerow({"image_id": r.image_name, "model_name": r.model_name, "caption": caption,
                                     "caption_index": i, "score": round(score, 4), "weights_hash": r.weights_hash,
                                     **{k: v for k, v in r.settings.items() if k in CSV_COLUMNS}})
                    rows += 1
    progress.close()
    os.replace(tmp, out)
    notes = []
    if skipped:
        notes.append(f"{skipped} unreadable image(s)")
    if scan.skipped:
        notes.append(f"{len(scan.skipped)} file(s) that are not images")
    print(f"wrote {rows} captions ({len(paths) - skipped} images x {len(models)} models) to {out}"
          + (f"; skipped {' and '.join(notes)}" if notes else ""), file=sys.stderr)
    return 0 if rows else 1


def cmd_list(args: argparse.Namespace) -> int:
    from .zoo import ZooError, list_zoo

    try:
        rows = list_zoo(args.zoo)
    except ZooError as e:
        raise UserError(str(e)) from None
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if not rows:
        print(f"(zoo {args.zoo} is empty)")
        return 0
    header = f"{'name':<28} {'kind':<22} {'encoder':<32} {'decoder':<16} {'K':>3} {'params':>12} {'MB':>8}  metrics"
    print(header)
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<28} BROKEN: {r['error']}")
            continue
        metrics = r.get("metrics") or {}
        shown = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float))
                          and k in ("bleu4", "cider", "bertscore_f1", "object_accuracy", "val_loss"))
        k = r.get("prefix_length") if r.get("prefix_length") is not None else "-"
        print(f"{r['name']:<28} {r['kind']:<22} {str(r.get('encoder')):<32} {str(r.get('decoder')):<16} {k:>3} "
              f"{r['parameters']:>12,} {r['size_mb']:>8.2f}  {shown}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .generation import PRESETS

    parser = argparse.ArgumentParser(prog="python -m captioning", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("caption", help="caption a folder of images with zoo models into a CSV")
    cap.add_argument("--zoo", default="model_zoo", help="zoo folder (default: model_zoo)")
    cap.add_argument("--images", required=True, help="folder of images")
    cap.add_argument("--out", default="captions.csv", help="CSV to write (default: captions.csv)")
    cap.add_argument("--models", help="comma-separated entry names (default: every loadable entry)")
    cap.add_argument("--preset", default="consistent", choices=sorted(PRESETS), help="decoding preset")
    cap.add_argument("--max-new-tokens", type=int, help="caption length limit in tokens")
    cap.add_argument("--num-captions", type=int, help="captions per image (beam: best N; sampling: N samples)")
    cap.add_argument("--seed", type=int, help="sampling seed (default 0)")
    cap.add_argument("--quantize", choices=["int8"],
                     help="opt-in fast path: int8 decoder matmuls (CPU, GPT-2 decoders); captions may differ slightly")
    cap.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    cap.add_argument("--recursive", action="store_true", help="also caption images in sub-folders")
    cap.add_argument("--threads", type=int, help="torch CPU threads")
    cap.add_argument("--quiet", action="store_true", help="no progress bar")
    cap.set_defaults(func=cmd_caption)
    lst = sub.add_parser("list", help="list the entries of a zoo")
    lst.add_argument("--zoo", default="model_zoo", help="zoo folder (default: model_zoo)")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = build_parser().parse_args(argv)
    if getattr(args, "batch_size", 1) < 1:
        print("error: --batch-size must be >= 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
