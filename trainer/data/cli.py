"""Command line: `python -m trainer.data inspect PATH` and `python -m trainer.data shapes --out DIR --n N`.

Imports the package's parts, never the package itself (`trainer/data/__init__.py` re-exports `main`), so the
two do not import each other."""

from __future__ import annotations

import argparse
import json
import sys

from captioning.datasets import FORMATS, DatasetError, inspect_dataset

from .shapes import write_shapes_dataset


def _print_inspection(summary: dict) -> None:
    print(f"format: {summary['format']}    path: {summary['path']}")
    columns = ("images", "captions", "missing_images", "skipped_lines", "dropped_captions")
    print(f"{'split':<6} " + " ".join(f"{c:>16}" for c in columns))
    for split, counts in summary["splits"].items():
        print(f"{split:<6} " + " ".join(f"{counts[c]:>16}" for c in columns))
    for split, notes in summary["notes"].items():
        for note in notes:
            print(f"  [{split}] {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.data",
                                     description="Inspect a captioning dataset or write the synthetic shapes one.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="count images/captions/problems per split of a dataset")
    inspect.add_argument("path", help="dataset folder or caption file")
    inspect.add_argument("--format", default="auto", help=f"auto (default) or one of {', '.join(FORMATS)}")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")
    shapes = commands.add_parser("shapes", help="write the synthetic shapes dataset (COCO format)")
    shapes.add_argument("--out", required=True, help="output folder")
    shapes.add_argument("--n", type=int, required=True, help="number of images (split 80/10/10)")
    shapes.add_argument("--seed", type=int, default=0, help="random seed (same seed -> same dataset)")
    shapes.add_argument("--image-size", type=int, default=64, help="image side in pixels")
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            summary = inspect_dataset(args.path, format=args.format)
            if args.json:
                print(json.dumps(summary, indent=2))
            else:
                _print_inspection(summary)
        else:
            summary = write_shapes_dataset(args.out, args.n, args.seed, args.image_size, progress=True)
            counts = summary["splits"]
            print(f"wrote {summary['n']} images (train {counts['train']} / val {counts['val']} / test "
                  f"{counts['test']}) and {summary['captions']} captions to {summary['out_dir']} in "
                  f"{summary['seconds']} s")
    except (DatasetError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
