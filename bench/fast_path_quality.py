"""Benchmark: what the opt-in int8 fast path (`GenerationSettings.quantize="int8"`) costs in caption quality.

Run (from the repository root; the demo zoo's models are small, so 1000 images take a minute or two):

    .venv/bin/python bench/fast_path_quality.py                 # the README figures
    .venv/bin/python bench/fast_path_quality.py --images 50     # a quick look

For every entry of the zoo (default: the shapes demo zoo, `model_zoo/`) it captions a freshly generated shapes
test set (`trainer.data.write_shapes_dataset` with a seed never used in training, `--seed`) twice, with the
same decoding (`--preset`, default "consistent" = beam 5) on the exact path and with quantize="int8", through
`trainer.scoring.caption_split` (the trainer's own captioning path), and reports:
- the share of images whose caption is identical on both paths;
- the object accuracy of each (`trainer.data.object_accuracy`: the caption names the colour and shape of every
  object drawn and no other), and the difference in points; target: the fast path within 1 point;
- the seconds each path took (these models are far smaller than GPT-2 124M: `bench/generation.py` is the
  speed benchmark; this one is about quality).
The last lines are a markdown table for the README.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch

from captioning.generation import PRESETS, get_settings
from captioning.zoo import ZooError, list_zoo, load_entry
from trainer.data import load_dataset, object_accuracy, write_shapes_dataset
from trainer.scoring import caption_split

TARGET_POINTS = 1.0  # |object accuracy (int8) - object accuracy (exact)|, in points
DEFAULT_SEED = 20261202  # not the demo zoo's training seed nor its fresh-test seed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default="model_zoo", help="zoo folder (default: model_zoo, the shapes demo zoo)")
    p.add_argument("--images", type=int, default=1000, help="images in the fresh shapes test set (default 1000)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the test set (default {DEFAULT_SEED})")
    p.add_argument("--image-size", type=int, default=64, help="shapes image side in pixels (default 64, as the demo)")
    p.add_argument("--preset", default="consistent", choices=sorted(PRESETS), help="decoding preset (default consistent)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="caption length limit (default 32, as the demo)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args(argv)
    if args.images < 1 or args.threads < 1 or args.max_new_tokens < 1:
        p.error("--images, --threads and --max-new-tokens must be >= 1")
    if not Path(args.zoo).is_dir():
        p.error(f"--zoo {args.zoo}: no such folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    exact = get_settings(args.preset, max_new_tokens=args.max_new_tokens)
    fast = exact.replace(quantize="int8")
    entries = [row for row in list_zoo(args.zoo) if "error" not in row]
    if not entries:
        print(f"error: no loadable entries in {args.zoo}", file=sys.stderr)
        return 2
    print(f"# bench/fast_path_quality.py | zoo {args.zoo} | {args.images} fresh shapes images (seed {args.seed}) | "
          f"{args.preset}, max {args.max_new_tokens} tokens | torch {torch.__version__} | {args.threads} threads",
          flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="caption-zoo-quality-") as tmp:
        write_shapes_dataset(tmp, n=args.images, seed=args.seed, image_size=args.image_size, splits=(0.0, 0.0, 1.0))
        split = load_dataset(tmp, format="coco", split="test")
        for entry in entries:
            try:
                model = load_entry(entry["path"])
            except ZooError as e:
                print(f"skipped: {e}", file=sys.stderr)
                continue
            captions, seconds = {}, {}
            for label, settings in (("exact", exact), ("int8", fast)):
                caption_split(model, split, settings, max_images=4)  # warm-up: packs the weights once
                start = time.perf_counter()
                captions[label] = caption_split(model, split, settings)
                seconds[label] = time.perf_counter() - start
            ids = sorted(captions["exact"])
            same = sum(captions["exact"][i] == captions["int8"][i] for i in ids) / len(ids)
            acc = {label: object_accuracy(c, split.objects)["object_accuracy"] for label, c in captions.items()}
            points = 100 * (acc["int8"] - acc["exact"])
            print(f"{model.name}: identical {same:.1%}, object accuracy exact {acc['exact']:.3f} int8 {acc['int8']:.3f} "
                  f"({points:+.1f} points), {seconds['exact']:.1f} s exact, {seconds['int8']:.1f} s int8", flush=True)
            rows.append((model.name, f"{same:.1%}", f"{acc['exact']:.3f}", f"{acc['int8']:.3f}", f"{points:+.1f}",
                         "PASS" if abs(points) <= TARGET_POINTS else "MISS",
                         f"{seconds['exact']:.1f} / {seconds['int8']:.1f}"))
    command = "python bench/fast_path_quality.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:]
                                                     else "")
    print()
    print(f"Command: `{command}`; {args.images} images, {args.preset}, max {args.max_new_tokens} new tokens.")
    print()
    print(f"| entry | identical captions | object accuracy, exact | object accuracy, int8 | difference (points) | "
          f"within {TARGET_POINTS:g} point | seconds exact / int8 |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
