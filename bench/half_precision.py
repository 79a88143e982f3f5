"""Benchmark: half-precision copies of zoo entries against their float32 parents on a freshly drawn shapes
test set (the README's conversion figures).

Run (from the repository root; the full run takes about 3 minutes on 2 cores, `--quick` a few seconds):

    .venv/bin/python bench/half_precision.py                  # model_zoo's entries, 500 fresh test images
    .venv/bin/python bench/half_precision.py --quick          # one entry, 20 images: checks the script runs

For each entry it writes an fp16 and a bf16 copy with `captioning.precision.convert_entry` (into a temporary
folder, never into the zoo), captions the test split with parent and copies through the path
`python -m trainer.evaluate` uses (`trainer.scoring.caption_split`, preset consistent = beam 5) and prints
one markdown row per model: size of the weights file and of the whole entry against the parent, what it ran
in on this machine (`captioning.dtypes.runtime_dtype`), the share of images whose caption is identical to
the parent's, object accuracy and CIDEr-D. The same figures come from the CLI:

    python -m trainer.data shapes --out runs/fresh-shapes --n 5000 --seed 2027 --image-size 48
    python -m captioning convert model_zoo/NAME --dtype fp16 --out /tmp/zoo-half/NAME-fp16
    python -m captioning caption --zoo /tmp/zoo-half --images runs/fresh-shapes/test --out fresh.csv
    python -m trainer.evaluate --captions fresh.csv --data runs/fresh-shapes --split test
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(ROOT / "model_zoo"))
    parser.add_argument("--n", type=int, default=5000, help="shapes images drawn (the test split is 10%%)")
    parser.add_argument("--seed", type=int, default=2027, help="seed of the fresh shapes set (training used 0)")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--dtypes", default="fp16,bf16")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="one entry, 20 test images")
    args = parser.parse_args(argv)

    import torch

    from captioning.dtypes import dtype_name, runtime_dtype
    from captioning.generation import get_settings
    from captioning.precision import convert_entry
    from captioning.zoo import WEIGHTS_FILE, list_zoo, load_entry
    from trainer.data import load_dataset, write_shapes_dataset
    from trainer.scoring import caption_split, score_captions

    torch.set_num_threads(args.threads)
    names = [r["name"] for r in list_zoo(args.zoo) if "error" not in r and r.get("kind") == "prefix-captioner"]
    names = [n for n in names if load_entry(Path(args.zoo) / n).config.get("dtype", "float32") == "float32"]
    n = 200 if args.quick else args.n
    names = names[:1] if args.quick else names
    if not names:
        print(f"no float32 prefix-captioner entries in {args.zoo}", file=sys.stderr)
        return 2
    settings = get_settings("consistent", max_new_tokens=32)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="half-precision-"))
    try:
        write_shapes_dataset(work / "shapes", n=n, seed=args.seed, image_size=args.image_size)
        split = load_dataset(work / "shapes", format="coco", split="test")
        print(f"Fresh shapes test set: {len(split.image_paths)} images (seed {args.seed}, {args.image_size} px); "
              f"device cpu, torch {torch.__version__}\n")
        print("| entry | weights MB | x parent | entry MB | x parent | runs in (CPU) | identical captions "
              "| object accuracy | CIDEr-D |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for name in names:
            parent_dir = Path(args.zoo) / name
            paths = [parent_dir] + [convert_entry(parent_dir, d, work / "zoo" / f"{name}-{d}")
                                    for d in args.dtypes.split(",") if d.strip()]
            parent_captions = None
            for path in paths:
                model = load_entry(path)
                captions = caption_split(model, split, settings)
                parent_captions = parent_captions or captions
                scores = score_captions(captions, split, metrics=["cider", "object_accuracy"])
                same = sum(captions[i] == parent_captions[i] for i in parent_captions) / len(parent_captions)
                weights, whole = (path / WEIGHTS_FILE).stat().st_size, folder_bytes(path)
                base_weights, base_whole = (parent_dir / WEIGHTS_FILE).stat().st_size, folder_bytes(parent_dir)
                stored = model.config.get("dtype", "float32")
                ran = str(runtime_dtype(dtype_name(stored), "cpu")).removeprefix("torch.")
                print(f"| {path.name} | {weights / 1e6:.2f} | {weights / base_weights:.3f} | {whole / 1e6:.2f} | "
                      f"{whole / base_whole:.3f} | {ran} | {same:.1%} | {scores['object_accuracy']:.3f} | "
                      f"{scores['cider']:.3f} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
