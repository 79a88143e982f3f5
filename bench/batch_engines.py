"""Benchmark: images/s of the two batch engines of `python -m captioning caption` on the same input.

Run (from the repository root; the machine's other work changes the figures, so quote the command and machine):

    nice -n 10 .venv/bin/python bench/batch_engines.py                 # the demo zoo (model_zoo/), 64 images
    nice -n 10 .venv/bin/python bench/batch_engines.py --real-size     # 3 random-init ViT-B/32 + GPT-2 124M
    .venv/bin/python bench/batch_engines.py --quick                    # tiny models, 8 images: the script runs

What it does, once each (no repeats: a Ray run is minutes on a small machine):
1. writes `--images` (64) synthetic 480x640 JPEGs into a temporary folder;
2. local: `python -m captioning caption --images DIR --out X.csv` in this process (`captioning.commands.cli.main`);
3. ray: starts a local Ray with `--num-cpus` CPUs (timed apart: a cluster is started once, not per job), then
   `python -m captioning caption --engine ray --images DIR --out FOLDER` in this process, on that Ray;
4. checks the two outputs hold the same captions, and prints images/s of each and ray / local.
Both engines use the same models, preset (`consistent`, beam 5), `--max-new-tokens` and `--batch-size`.
The models: the first 3 usable entries of `--zoo` (tiny random captioners when it has fewer), or with
`--real-size` the random-init models of bench/generation.py (saved into the temporary folder; nothing is
downloaded). With one machine's CPUs Ray's gain is parallel decoding and one actor per model running side by
side, against its cost of moving batches between processes; on a cluster the actors spread over the nodes.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
sys.path.insert(1, str(ROOT / "tests"))  # tests/helpers.py: the tiny zoo used when --zoo has too few models

NUM_MODELS = 3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zoo", type=Path, default=ROOT / "model_zoo", help="zoo whose first 3 entries are used")
    p.add_argument("--real-size", action="store_true", help="3 random-init ViT-B/32 + GPT-2 124M models instead")
    p.add_argument("--quick", action="store_true", help="tiny models and 8 images: checks the script runs")
    p.add_argument("--images", type=int, help="images to caption (default 64; 8 with --quick)")
    p.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray (default: all)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of the local engine")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch, both engines (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=20, help="caption length limit (default 20)")
    args = p.parse_args(argv)
    if args.images is None:
        args.images = 8 if args.quick else 64
    if args.images < 1:
        p.error(f"--images must be >= 1, got {args.images}")
    return args


def write_photos(folder: Path, count: int, hw: tuple[int, int]) -> None:
    """JPEGs of bench/generation.py's synthetic photos (gradient plus noise), so decoding does real work."""
    generation = _load_generation_bench()
    folder.mkdir(parents=True)
    for i, image in enumerate(generation.synthetic_images(count, hw, seed=0)):
        image.save(folder / f"photo-{i:04d}.jpg", quality=90)


def _load_generation_bench():
    spec = importlib.util.spec_from_file_location("bench_generation", ROOT / "bench" / "generation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def models_for(args: argparse.Namespace, work: Path) -> tuple[Path, list[str], str]:
    """(zoo, model names, description) of the models both engines run."""
    if args.real_size:
        from captioning.tokenization import train_bpe_tokenizer

        generation = _load_generation_bench()
        tokenizer = train_bpe_tokenizer(generation.TOKENIZER_TEXTS, vocab_size=300)
        models = generation.build_zoo(generation.full_sizes(), NUM_MODELS, work / "zoo", tokenizer)
        return work / "zoo", [m.name for m in models], "3 random-init ViT-B/32 + GPT-2 124M (one shared encoder)"
    from helpers import zoo_or_tiny_models

    zoo = work / "no-zoo" if args.quick else args.zoo
    return zoo_or_tiny_models(zoo, work, NUM_MODELS)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from captioning.commands import cli
    from captioning.commands.ray_engine import connect

    with tempfile.TemporaryDirectory(prefix="caption-zoo-batch-bench-") as tmp:
        work = Path(tmp)
        zoo, names, described = models_for(args, work)
        photos = work / "photos"
        write_photos(photos, args.images, (48, 64) if args.quick else (480, 640))
        common = ["caption", "--zoo", str(zoo), "--images", str(photos), "--models", ",".join(names), "--quiet",
                  "--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens)]
        print(f"# bench/batch_engines.py | {args.images} images x {len(names)} models ({described}) | preset "
              f"consistent, <= {args.max_new_tokens} tokens, batch {args.batch_size} | {platform.machine()}, "
              f"{os.cpu_count()} cores | local: {args.threads} torch threads | ray: {args.num_cpus} CPUs", flush=True)

        t0 = time.perf_counter()
        if cli.main([*common, "--out", str(work / "local.csv"), "--threads", str(args.threads)]) != 0:
            print("error: the local engine failed", file=sys.stderr)
            return 1
        local_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        connect(num_cpus=args.num_cpus)
        start_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        if cli.main([*common, "--engine", "ray", "--out", str(work / "ray")]) != 0:
            print("error: the Ray engine failed", file=sys.stderr)
            return 1
        ray_s = time.perf_counter() - t0

        import pyarrow.parquet as pq

        local = sorted((r["image_id"], r["model_name"], r["caption"]) for r in csv.DictReader(open(work / "local.csv")))
        ray_rows = sorted((r["image_id"], r["model_name"], r["caption"]) for r in pq.read_table(work / "ray").to_pylist())
        same = "same captions" if local == ray_rows else "CAPTIONS DIFFER"

    local_rate, ray_rate = args.images / local_s, args.images / ray_s
    print(f"local: {local_s:.1f} s = {local_rate:.2f} images/s")
    print(f"ray:   {ray_s:.1f} s = {ray_rate:.2f} images/s (Ray started in {start_s:.1f} s beforehand, not counted)")
    print(f"ray / local: {ray_rate / local_rate:.2f}x ({same})")
    return 0 if same == "same captions" else 1


if __name__ == "__main__":
    sys.exit(main())
