"""Benchmark: how long one click on the app's "Caption" button takes, server side, once models are loaded.

Run (from the repository root; the real-size part builds ~3 GB of random weights in a temp folder and takes
a few minutes on 2 cores; `--skip-real-size` only times the demo models, in seconds):

    .venv/bin/python bench/app.py                     # demo zoo + real-size models
    .venv/bin/python bench/app.py --skip-real-size    # demo zoo only
    .venv/bin/python bench/app.py --preset greedy     # another decoding preset

What is timed is `page_compare.caption`, the Caption button's handler, called directly with 8 images and 3 models:
reading and hashing the images, writing their display copies (first click only), captioning images x models
with the preset (default "consistent" = beam 5, up to 30 new tokens) and saving every caption in the SQLite
rating store. Each click goes to a new evaluation set, so nothing is skipped as "already captioned".
- cold: the first click after start, which also loads the models from disk into the app's model cache;
- warm: the best of `--repeats` further clicks (models cached, display copies already written): what a
  rater waits for in a running app. The per-caption figure is warm / (images x models).

Two zoos:
1. demo: the first 3 usable entries of `--zoo` (default model_zoo, the bundled demo zoo trained on synthetic
   shapes); when it has none, 3 tiny random captioners are built in a temp folder (tests/helpers.py sizes).
2. real size (random init, nothing downloaded): CLIP ViT-B/32 vision tower (`CLIPVisionConfig()` defaults)
   shared by the 3 models, GPT-2 124M (`GPT2Config()` defaults, vocab 50257), ClipCap MLP mapper, K = 10;
   each saved with `captioning.zoo.save_entry` and loaded through the app's own `ModelCache`. A GPT-2
   tokenizer cannot be had offline, so each entry carries a small byte-level BPE trained here; ids beyond its
   vocabulary decode to nothing, so captions are gibberish, but every step is the real-size model's work.
   Random GPT-2 almost never emits EOS, so every caption runs to the preset's token limit: the slow case.
Images: the first 8 files of sample_images/ when there are 8, else synthetic 480x640 photos.
The machine is usually shared: figures vary by 10-30 % from run to run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere; `import app` is the repository's app.py
sys.path.insert(1, str(ROOT / "tests"))  # tests/helpers.py: the tiny model sizes the test suite uses
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import CLIPVisionConfig, GPT2Config  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from captioning.config import CaptionerConfig, MapperConfig  # noqa: E402
from captioning.generation import PRESETS  # noqa: E402
from captioning.images import find_images  # noqa: E402
from captioning.model import PrefixCaptioner, build_vision_encoder, vision_config_from_dict  # noqa: E402
from captioning.preprocessing import make_image_processor  # noqa: E402
from captioning.tokenization import train_bpe_tokenizer  # noqa: E402
from captioning.zoo import save_entry  # noqa: E402
from page import compare as page_compare  # noqa: E402
from page import context as page_context  # noqa: E402
from page import session as page_session  # noqa: E402

NUM_IMAGES = 8
NUM_MODELS = 3
TOKENIZER_TEXTS = ["a large red circle and a small blue square", "two green triangles on a light background",
                   "a dog runs on the grass in a park", "a man rides a bicycle down the street"]


# ----------------------------------------------------------------------------------------------------------
# Zoos and images


def real_size_models(work: Path) -> tuple[Path, list[str], str]:
    """3 real-size random captioners sharing one CLIP ViT-B/32 tower, saved as zoo entries."""
    vision, decoder = CLIPVisionConfig(), GPT2Config()
    config = CaptionerConfig(encoder_type="clip", encoder_config=vision.to_dict(), decoder_config=decoder.to_dict(),
                             prefix_length=10, mapper=MapperConfig(type="mlp"),
                             encoder_name="clip-vit-b32 (random init)", decoder_name="gpt2-124m (random init)")
    tokenizer = train_bpe_tokenizer(TOKENIZER_TEXTS * 5, vocab_size=400)
    processor = make_image_processor("clip", vision.image_size)
    torch.manual_seed(0)
    encoder = build_vision_encoder("clip", vision_config_from_dict("clip", vision.to_dict()))
    zoo = work / "real-zoo"
    names = [f"real-{i}" for i in range(NUM_MODELS)]
    for i, name in enumerate(names):
        torch.manual_seed(1000 + i)  # mapper and GPT-2 differ per model; the encoder is shared
        model = PrefixCaptioner(config, encoder=encoder).eval()
        save_entry(model, tokenizer, processor, zoo / name)
        del model
    params = sum(p.numel() for p in PrefixCaptioner(config, encoder=encoder).parameters()) / 1e6
    return zoo, names, (f"real size, random init: CLIP ViT-B/32 + GPT-2 124M, MLP mapper, K=10 "
                        f"({params:.0f}M params each)")


def bench_images(folder: Path) -> list[Path]:
    """The first 8 sample images, or 8 synthetic 480x640 photos (gradient + noise) written to `folder`."""
    try:
        samples = find_images(ROOT / "sample_images")
    except ValueError:
        samples = []
    if len(samples) >= NUM_IMAGES:
        return samples[:NUM_IMAGES]
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:480, 0:640]
    paths = []
    for i in range(NUM_IMAGES):
        base = np.stack([(xs * rng.uniform(0.1, 0.5) + ys * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256
                         for _ in range(3)], axis=-1)  # (H, W, 3)
        pixels = np.clip(base + rng.normal(0, 20, size=base.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"synthetic_{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


# ----------------------------------------------------------------------------------------------------------
# Timing


def click_caption(ctx: page_context.AppContext, images: list[Path], models: list[str], preset: str, set_name: str) -> float:
    """Seconds for one Caption click (the handler, as the button calls it) into a new evaluation set."""
    start = time.perf_counter()
    _, message, _ = page_compare.caption(ctx, page_session.new_session(), "bench", set_name, False, [str(p) for p in images], [],
                                models, preset, progress=lambda *args, **kwargs: None)
    seconds = time.perf_counter() - start
    expected = f"{len(images) * len(models)} new caption(s)"
    if expected not in message:
        raise RuntimeError(f"the click did not caption everything ({expected} expected): {message}")
    return seconds


def run(label: str, zoo: Path, models: list[str], images: list[Path], preset: str, repeats: int, work: Path) -> None:
    ctx = page_context.make_context(zoo, work / f"{label}.sqlite", image_dir=work / "display")
    cold = click_caption(ctx, images, models, preset, f"{label}-cold")
    warm = min(click_caption(ctx, images, models, preset, f"{label}-warm-{i}") for i in range(repeats))
    captions = len(images) * len(models)
    print(f"{label:<9} | {len(images)} images x {len(models)} models, preset {preset} | cold {cold:7.2f} s | "
          f"warm {warm:7.2f} s | {1000 * warm / captions:8.1f} ms per caption", flush=True)
    ctx.store.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default=str(ROOT / "model_zoo"), help="demo zoo folder (default: model_zoo)")
    p.add_argument("--preset", default="consistent", choices=sorted(PRESETS),
                   help="decoding preset (default consistent)")
    p.add_argument("--repeats", type=int, default=2, help="warm clicks timed; the best is kept (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice, as the app)")
    p.add_argument("--skip-real-size", action="store_true", help="time only the demo (or tiny) models")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    print(f"app caption-click benchmark | torch {torch.__version__} | {torch.get_num_threads()} threads | "
          f"{platform.processor() or platform.machine()} | {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        work = Path(tmp)
        images = bench_images(work / "images")
        print(f"images: {', '.join(p.name for p in images)}", flush=True)
        from helpers import zoo_or_tiny_models  # tests/helpers.py (on sys.path above)

        zoo, models, description = zoo_or_tiny_models(Path(args.zoo), work, NUM_MODELS)
        print(f"demo models: {', '.join(models)} ({description})", flush=True)
        run("demo", zoo, models, images, args.preset, args.repeats, work)
        if not args.skip_real_size:
            start = time.perf_counter()
            zoo, models, description = real_size_models(work)
            print(f"real-size models: {description}; built and saved in {time.perf_counter() - start:.0f} s",
                  flush=True)
            run("real-size", zoo, models, images, args.preset, args.repeats, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
