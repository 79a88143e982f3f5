"""Benchmark: memory for captioning eight 50-megapixel phone photos, full-size decode vs. decoding at the needed size.

Run (from the repository root; writes 8 JPEGs of 8160x6120 = 50 MP, ~10 MB each, to a temp folder once,
then runs each variant in a fresh Python process; about a minute on 2 cores, ~4 GB peak for variant a):

    .venv/bin/python bench/image_memory.py            # 8 images of 8160x6120
    .venv/bin/python bench/image_memory.py --quick    # 2 images of 2000x1500, seconds (what the test runs)
    .venv/bin/python bench/image_memory.py --dir /tmp/photos   # keep the images there, reuse them next time

Variants (each captions all images with 3 models, preset greedy, 8 images per batch):
  a  full size: `load_image(path)` for every image, then `caption_images` (the CLI and app before min_side)
  b  needed size: `load_image(path, min_side=needed_side(models))`, batch by batch (the CLI now)
  c  the app's Caption handler, `app.caption(...)`, end to end (it calls `rating.intake.caption_into_set`, which
     decodes at the models' and the display copy's needed side); skipped with a note if its signature changes
  d  the same at library level: `load_image(path, min_side=needed_side(models, display_side=DISPLAY_SIDE))`,
     a display copy per image, then `caption_images`, batch by batch
Per variant: the process's RSS after imports and model loading (base), its peak RSS while captioning (Linux
VmHWM reset after the base figure; elsewhere ru_maxrss, the whole process life), and its RSS once the work is
done and the images are dropped (retained): what a long-running app keeps holding after one click.
Models: the first 3 usable entries of --zoo (the demo zoo, 48 px CLIP input), else 3 tiny random captioners.
The machine is usually shared: RSS figures are stable to a few MB, timings vary by 10-30 %.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere; `import app` is the repository's app.py
sys.path.insert(1, str(ROOT / "tests"))  # tests/helpers.py: tiny models when the zoo has none
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

NUM_MODELS = 3
BATCH = 8  # images per captioning batch, as the app's CAPTION_BATCH
FULL = {"count": 8, "width": 8160, "height": 6120}  # a 50 MP phone sensor (Samsung/Xiaomi 50 MP mode)
QUICK = {"count": 2, "width": 2000, "height": 1500}
VARIANTS = {
    "a": "full-size load_image, all images, then caption",
    "b": "load_image(min_side=needed side), batch by batch",
    "c": "app.caption handler (the app, end to end)",
    "d": "min_side=needed side incl. display, + display copy",
}


# ----------------------------------------------------------------------------------------------------------
# Images and models


def write_photos(folder: Path, count: int, width: int, height: int) -> list[Path]:
    """`count` photo-like JPEGs (smooth colour fields + sensor noise, so they do not compress to nothing).

    Made from a 1/8-size random field enlarged bicubically, plus noise added 512 rows at a time, so that
    writing a 50 MP image needs ~300 MB, not gigabytes. Files already there at the right size are kept.
    """
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"photo_{i}_{width}x{height}.jpg"
        paths.append(path)
        if path.exists():
            continue
        rng = np.random.default_rng(i)
        coarse = rng.integers(0, 256, (max(2, height // 256), max(2, width // 256), 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        pixels = np.asarray(image).copy()  # (H, W, 3) uint8, writable
        del image
        for top in range(0, height, 512):
            strip = pixels[top:top + 512].astype(np.int16)
            strip += rng.integers(-10, 11, strip.shape, dtype=np.int16)
            pixels[top:top + 512] = np.clip(strip, 0, 255).astype(np.uint8)
        partial = path.with_suffix(".partial")
        Image.fromarray(pixels).save(partial, format="JPEG", quality=90)
        os.replace(partial, path)
        del pixels
    return paths


# ----------------------------------------------------------------------------------------------------------
# One variant, in its own process


def rss_mb() -> float:
    """This process's resident memory now, in MB (psutil when installed, else /proc)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak() -> bool:
    """Start the peak-RSS count afresh (Linux: writing 5 to clear_refs resets VmHWM); False where it cannot."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb(since_reset: bool) -> float:
    """The most resident memory used, in MB: since `reset_peak` (VmHWM) or else in the whole process life
    (ru_maxrss, KB on Linux, bytes on macOS; it then includes the transient peak of loading the models)."""
    if since_reset:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run_variant(variant: str, zoo: Path, names: list[str], paths: list[Path], work: Path) -> dict:
    """Caption `paths` with the `names` models of `zoo` the way `variant` does; returns the memory figures."""
    import torch

    torch.set_num_threads(1)
    from captioning.images import load_image, prepare_for_display
    from captioning.pipeline import caption_images
    from captioning.preprocessing import needed_side
    from captioning.zoo import ModelCache

    note = ""
    if variant == "c":
        import app

        expected = ["ctx", "session", "rater", "set_name", "blind", "files", "samples", "models", "preset"]
        params = list(inspect.signature(app.caption).parameters)
        if params[:len(expected)] != expected or not hasattr(app, "make_context"):
            return {"skipped": f"app.caption takes {params}, not {expected}: variant c skipped"}
        ctx = app.make_context(zoo, work / f"bench-{os.getpid()}.sqlite", image_dir=work / f"display-{os.getpid()}")
        for name in names:
            ctx.cache.get(zoo / name)  # models load before the base figure, as in a running app
    else:
        cache = ModelCache(max_models=NUM_MODELS)
        models = [cache.get(zoo / name) for name in names]
    display_side = None
    if variant == "d":  # imported before the base figure, so that gradio's own memory is not counted as work
        import app

        display_side = getattr(app, "DISPLAY_SIDE", 640)
    gc.collect()
    base = rss_mb()
    since_reset = reset_peak()
    start = time.perf_counter()
    captions = 0
    if variant == "a":
        images = [load_image(p) for p in paths]
        captions = len(caption_images(models, images, settings="greedy", batch_size=BATCH))
        del images
    elif variant in ("b", "d"):
        side = needed_side(models, display_side=display_side)
        note = f"min_side {side}" + (f" (display {display_side})" if display_side else "")
        for first in range(0, len(paths), BATCH):
            images = [load_image(p, min_side=side) for p in paths[first:first + BATCH]]
            if display_side:
                displays = [prepare_for_display(i, display_side) for i in images]
                del displays
            captions += len(caption_images(models, images, settings="greedy", batch_size=BATCH))
            del images
    else:
        session = app.new_session()
        _, message, _ = app.caption(ctx, session, "bench", "mem", False, [str(p) for p in paths], [], names, "greedy",
                                    progress=lambda *a, **k: None)
        captions = len(paths) * len(names)
        note = message.split(":")[0]
    seconds = time.perf_counter() - start
    gc.collect()
    return {"base": base, "peak": peak_rss_mb(since_reset), "retained": rss_mb(), "seconds": seconds, "captions": captions,
            "note": note}


# ----------------------------------------------------------------------------------------------------------
# Driver


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['count']} images of "
                        f"{QUICK['width']}x{QUICK['height']} instead of {FULL['count']} of {FULL['width']}x{FULL['height']}")
    parser.add_argument("--dir", type=Path, help="folder for the generated images (kept and reused); default: temp")
    parser.add_argument("--zoo", type=Path, default=ROOT / "model_zoo", help="zoo to take 3 models from")
    parser.add_argument("--variants", default="abcd", help="which variants to run (default: abcd)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant in this process
    parser.add_argument("--paths", nargs="*", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--names", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.variant:  # the child process: measure one variant, print one JSON line
        print(json.dumps(run_variant(args.variant, args.zoo, args.names, args.paths, args.work)))
        return 0

    size = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="image-memory-") as tmp:
        work = Path(tmp)
        folder = args.dir or work / "photos"
        start = time.perf_counter()
        paths = write_photos(folder, size["count"], size["width"], size["height"])
        made = time.perf_counter() - start
        from helpers import zoo_or_tiny_models  # tests/helpers.py (on sys.path above)

        zoo, names, described = zoo_or_tiny_models(args.zoo, work, NUM_MODELS)
        megabytes = sum(p.stat().st_size for p in paths) / 2**20
        print(f"{len(paths)} JPEGs of {size['width']}x{size['height']} ({size['width'] * size['height'] / 1e6:.0f} MP, "
              f"{megabytes:.0f} MB on disk, ready in {made:.1f} s) x {len(names)} models from {described}: {names}")
        print()
        print("| variant | what | base RSS MB | peak RSS MB | peak - base MB | retained RSS MB | seconds | note |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        for variant in args.variants:
            command = [sys.executable, str(Path(__file__).resolve()), "--variant", variant, "--zoo", str(zoo),
                       "--work", str(work), "--paths", *map(str, paths), "--names", *names]
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode != 0 or not lines:
                error = (done.stderr.strip().splitlines() or ["no output"])[-1]
                print(f"| {variant} | {VARIANTS[variant]} | - | - | - | - | - | failed: {error} |")
                continue
            r = json.loads(lines[-1])
            if "skipped" in r:
                print(f"| {variant} | {VARIANTS[variant]} | - | - | - | - | - | {r['skipped']} |")
                continue
            print(f"| {variant} | {VARIANTS[variant]} | {r['base']:.0f} | {r['peak']:.0f} | {r['peak'] - r['base']:.0f} "
                  f"| {r['retained']:.0f} | {r['seconds']:.1f} | {r['captions']} captions; {r['note']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
