"""Command line: `python -m captioning caption ...`, `python -m captioning list ...`, `python -m captioning add
HUB_ID_OR_FOLDER --zoo DIR` (another maker's model as an entry, `captioning.adding`) and
`python -m captioning convert model_zoo/NAME --dtype fp16|bf16` (a half-precision copy, `captioning.precision`).

caption: every image in a folder x every chosen zoo model -> one CSV with `image_id, model_name, caption`
(the layout other CLIP-GPT2 projects' batch inference writes) plus the decoding settings, or with `--out
results.json` the COCO results format `[{"image_id", "caption", "model_name"}]` (see `coco_results`). A bad image is
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
import re
import sys
from pathlib import Path

from .common import CSV_COLUMNS, UserError, select_models


def cmd_caption(args: argparse.Namespace) -> int:
    if args.engine == "ray":  # Ray is imported only for this engine
        from .ray_engine import cmd_caption_ray

        return cmd_caption_ray(args)
    import torch
    from tqdm import tqdm

    from ..generation import check_supported, get_settings
    from ..images import IMAGE_EXTENSIONS, ImageLoadError, scan_folder
    from ..pipeline import caption_images, read_images
    from ..preprocessing import needed_side
    from ..zoo import ModelCache, ZooError

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: v for k, v in {"max_new_tokens": args.max_new_tokens, "num_captions": args.num_captions,
                                   "seed": args.seed, "quantize": args.quantize}.items() if v is not None}
    try:
        settings = get_settings(args.preset, **overrides)
        scan = scan_folder(args.images, recursive=args.recursive)
        model_paths = select_models(Path(args.zoo), args.models)
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
    as_results = out.suffix.lower() == ".json"  # the COCO results format instead of our CSV
    results_rows: list[dict] = []
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if not as_results:
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
                for row in r.rows(CSV_COLUMNS):
                    if not as_results:
                        writer.writerow(row)
                    elif row["caption_index"] == 0:  # COCO results hold one caption per image: the model's best
                        results_rows.append(row)
                    rows += 1
        if as_results:
            json.dump(coco_results(results_rows), f, indent=1)
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


_COCO_NAME = re.compile(r"(?:COCO_[A-Za-z]+\d*_)?0*(\d+)")


def coco_results(rows: list[dict]) -> list[dict]:
    """`[{"image_id", "caption", "model_name"}]`, the COCO results format. image_id is the COCO id when every
    file is named the COCO way (COCO_val2014_000000000042.jpg or 000000000042.jpg -> 42), as the COCO tools
    expect; otherwise the file's path relative to the image folder."""
    numbers = [_COCO_NAME.fullmatch(Path(row["image_id"]).stem) for row in rows]
    as_ids = all(numbers) and len({(m.group(1), row["model_name"]) for m, row in zip(numbers, rows)}) == len(rows)
    return [{"image_id": int(m.group(1)) if as_ids else row["image_id"], "caption": row["caption"],
             "model_name": row["model_name"]} for m, row in zip(numbers, rows)]


def cmd_list(args: argparse.Namespace) -> int:
    from ..zoo import ZooError, list_zoo

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
    header = f"{'name':<28} {'family':<22} {'encoder':<32} {'decoder':<16} {'K':>3} {'params':>12} {'MB':>8}  metrics"
    print(header)
    for r in rows:
        if "error" in r:
            print(f"{r['name']:<28} BROKEN: {r['error']}")
            continue
        metrics = r.get("metrics") or {}
        shown = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float))
                          and k in ("bleu4", "cider", "bertscore_f1", "object_accuracy", "val_loss"))
        k = r.get("prefix_length") if r.get("prefix_length") is not None else "-"
        print(f"{r['name']:<28} {r['family']:<22} {str(r.get('encoder')):<32} {str(r.get('decoder')):<16} {k:>3} "
              f"{r['parameters']:>12,} {r['size_mb']:>8.2f}  {shown}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ..precision import convert_entry
    from ..zoo import WEIGHTS_FILE, ZooError

    try:
        out = convert_entry(args.entry, args.dtype, args.out)
    except (ValueError, ZooError) as e:
        raise UserError(str(e)) from None
    sizes = [(Path(p) / WEIGHTS_FILE).stat().st_size for p in (args.entry, out)]
    print(f"wrote {out} ({args.dtype}): weights {sizes[1] / 1e6:.2f} MB, {sizes[1] / sizes[0]:.2f} x the "
          f"{sizes[0] / 1e6:.2f} MB of {Path(args.entry).name}", file=sys.stderr)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from ..adding import add_model
    from ..zoo import ZooError

    try:
        added = add_model(args.source, args.zoo, name=args.name, prompt=args.prompt, display_name=args.display_name)
    except ZooError as e:
        raise UserError(str(e)) from None
    print(f"added {added.path} ({added.family}, {added.parameters:,} parameters, {added.size_mb:,.1f} MB); "
          f"its caption of a test image: {added.caption!r}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from ..generation import PRESETS

    parser = argparse.ArgumentParser(prog="python -m captioning", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("caption", help="caption a folder of images with zoo models into a CSV")
    cap.add_argument("--zoo", default="model_zoo", help="zoo folder (default: model_zoo)")
    cap.add_argument("--images", required=True, help="folder of images")
    cap.add_argument("--out", default="captions.csv",
                     help="CSV to write (default: captions.csv); a .json path gets the COCO results format")
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
    cap.add_argument("--engine", default="local", choices=["local", "ray"],
                     help="local: this process, one CSV; ray: Ray Data, Parquet shards in the --out folder "
                          "(--images may then be a CSV or Parquet manifest; see captioning/commands/ray_engine.py)")
    from .ray_engine import add_arguments

    add_arguments(cap)
    cap.set_defaults(func=cmd_caption)
    lst = sub.add_parser("list", help="list the entries of a zoo")
    lst.add_argument("--zoo", default="model_zoo", help="zoo folder (default: model_zoo)")
    lst.add_argument("--json", action="store_true", help="print JSON")
    lst.set_defaults(func=cmd_list)
    add = sub.add_parser("add", help="add a transformers image-to-text model (hub id or save_pretrained folder) to a zoo",
                         description="Copy a folder that save_pretrained wrote (or fetch a hub model: safetensors and "
                                     "processor files only) into the zoo, caption a test image with it, and write its "
                                     "model card. Families: BLIP, GIT, BLIP-2, InstructBLIP, VisionEncoderDecoder, "
                                     "Florence-2, PaliGemma and chat VLMs (LLaVA, Idefics3, SmolVLM, Qwen2-VL, ...). "
                                     "Models that need trust_remote_code are refused.")
    add.add_argument("source", help="a hub id (e.g. Salesforce/blip-image-captioning-base) or a folder")
    add.add_argument("--zoo", default="model_zoo", help="the zoo folder (default: model_zoo)")
    add.add_argument("--name", help="the entry's folder name (default: the last part of the id or folder)")
    add.add_argument("--prompt", help="what the model is asked (chat VLMs: the instruction, default "
                                      "'Describe this image in one sentence.'; Florence-2: the task token)")
    add.add_argument("--display-name", help="the name shown on the page (default: the entry's name)")
    add.set_defaults(func=cmd_add)
    conv = sub.add_parser("convert", help="write a half-precision copy of a zoo entry (a new entry)")
    conv.add_argument("entry", help="zoo entry folder, e.g. model_zoo/NAME")
    conv.add_argument("--dtype", required=True, help="fp16 or bf16")
    conv.add_argument("--out", help="new entry: a folder, or a name beside the entry (default: NAME-fp16 / NAME-bf16)")
    conv.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # "Loading weights" bars per model would bury our own lines
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
