"""Benchmark: other makers' captioners through Caption Zoo against the ways a user would run them with transformers.

A BLIP-base-sized and a GIT-base-sized model (random weights, the real architectures' sizes from their default
configs: ViT-B/16 at 384 px + BERT-base decoder; ViT-B/16 at 224 px + 6-layer decoder) are saved as zoo entries,
then the same images are captioned greedily with exactly `--tokens` new tokens each (min = max, so every path
decodes the same number of tokens) by:

    ours             `captioning.pipeline.caption_images` (the CLI's, app's and server's path), batch `--batch-size`
    card, 1 by 1     the model card's loop: processor(image) -> model.generate, one image at a time
    card, batched    processor(batch) -> model.generate, `--batch-size` images per call
    pipeline         transformers.pipeline("image-text-to-text") with its batch_size (5.23 has no "image-to-text"
                     pipeline); reported as not runnable, with the reason, when it refuses the model

Times are best-of-`--repeats` after one untimed warm-up call per path, the paths alternating within each repeat,
so ratios come from one run. Peak RSS
of each path is measured in a fresh process (`--rss-only PATH`), on the same images. Run from the repository root:

    .venv/bin/python bench/foreign_models.py                      # 64 images, 20 tokens, best of 3
    .venv/bin/python bench/foreign_models.py --images 16 --repeats 1
    .venv/bin/python bench/foreign_models.py --quick              # tiny models: checks the script runs
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PATHS = ("ours", "card, 1 by 1", "card, batched", "pipeline")


def cpu_line() -> str:
    """The CPU's model name and the vector extensions that matter for these figures."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == "unknown CPU":
                name = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    isa = [label for label, flag in (("AVX2", "avx2"), ("AVX-512", "avx512f"), ("VNNI", "avx512_vnni"),
                                     ("AVX-VNNI", "avx_vnni"), ("AMX", "amx_tile")) if flag in flags]
    return f"{name} ({', '.join(isa) or 'no AVX2'})"


def build(family: str, folder: Path, quick: bool) -> Path:
    """A random-weight model of `family` at base size (tiny with quick) saved with its processor."""
    import torch
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = 30522
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"] + [f"w{i}" for i in range(vocab - 6)]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]")
    small = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4) if quick else {}
    torch.manual_seed(0)
    if family == "BLIP":
        from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor
        from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

        side = 64 if quick else 384
        config = BlipConfig(vision_config=dict(small, image_size=side, patch_size=16),
                            text_config=dict(small, vocab_size=vocab, bos_token_id=5, pad_token_id=0, sep_token_id=3,
                                             eos_token_id=3))
        model = BlipForConditionalGeneration(config)
        processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": side, "width": side}),
                                  tokenizer=tokenizer)
    else:
        from transformers import GitConfig, GitForCausalLM, GitProcessor
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

        side = 64 if quick else 224
        config = GitConfig(vision_config=dict(small, image_size=side, patch_size=16), vocab_size=vocab,
                           bos_token_id=2, eos_token_id=3, pad_token_id=0, **({**small} if quick else {}))
        model = GitForCausalLM(config)
        processor = GitProcessor(image_processor=CLIPImageProcessorPil(size={"shortest_edge": side},
                                                                       crop_size={"height": side, "width": side}),
                                 tokenizer=tokenizer)
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    (folder / "vocab.txt").unlink()
    return folder


def photos(count: int):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)) for _ in range(count)]


def runner(path: str, folder: Path, tokens: int, batch_size: int):
    """A function captioning a list of images by `path`, after loading what it needs (not timed)."""
    import torch

    kwargs = dict(max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, num_beams=1)
    if path == "ours":
        from captioning.generation import get_settings
        from captioning.pipeline import caption_images
        from captioning.zoo import load_entry

        entry = load_entry(folder)
        settings = get_settings("greedy", max_new_tokens=tokens, min_new_tokens=tokens)
        return lambda images: [r.caption for r in caption_images([entry], images, settings=settings,
                                                                   batch_size=batch_size)]
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if path == "pipeline":
        from transformers import pipeline

        pipe = pipeline("image-text-to-text", model=str(folder))
        return lambda images: pipe(images=images, text=[""] * len(images), batch_size=batch_size,
                                   generate_kwargs=kwargs)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    step = 1 if path == "card, 1 by 1" else batch_size

    @torch.inference_mode()
    def run(images):
        out = []
        for start in range(0, len(images), step):
            inputs = processor(images=images[start:start + step], return_tensors="pt")
            out += processor.batch_decode(model.generate(**inputs, **kwargs), skip_special_tokens=True)
        return out

    return run


def peak_rss_mib() -> float:
    """This process's peak resident memory, MiB: VmHWM, which starts afresh at exec (getrusage's ru_maxrss does
    not: a child started from a big parent would report the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_of(path: str, folder: Path, args) -> float | None:
    """Peak RSS (MiB) of a fresh process that loads and runs `path` once on the same images."""
    command = [sys.executable, __file__, "--rss-only", path, "--model-folder", str(folder), "--images",
               str(args.images), "--tokens", str(args.tokens), "--batch-size", str(args.batch_size)]
    done = subprocess.run(command, capture_output=True, text=True)
    try:
        return float(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--families", default="BLIP,GIT")
    parser.add_argument("--quick", action="store_true", help="tiny models, 4 images, one repeat")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--rss-only", choices=PATHS, help=argparse.SUPPRESS)
    parser.add_argument("--model-folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    import torch
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rss_only:
        runner(args.rss_only, args.model_folder, args.tokens, args.batch_size)(photos(args.images))
        print(peak_rss_mib())
        return 0
    if args.quick:
        args.images, args.repeats, args.tokens = 4, 1, 5
    images = photos(args.images)
    print(f"CPU: {cpu_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads; {args.images} images "
          f"of 640x480, greedy, {args.tokens} new tokens each, batch {args.batch_size}, best of {args.repeats}")
    print("| model | path | seconds | images/s | vs ours | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families.split(","):
            folder = build(family, Path(tmp) / family.lower(), args.quick)
            runs, best, problems = {}, {}, {}
            for path in PATHS:
                try:
                    runs[path] = runner(path, folder, args.tokens, args.batch_size)
                except Exception as e:  # a peer that cannot run this model is a figure too
                    problems[path] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
            for path, run in list(runs.items()):  # warm-up (first-call allocations, lazy inits), not timed
                try:
                    run(images[:2])
                except Exception as e:
                    problems[path] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                    del runs[path]
            for _ in range(args.repeats):
                for path, run in list(runs.items()):
                    started = time.perf_counter()
                    try:
                        run(images)
                    except Exception as e:
                        problems[path] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
                        del runs[path]
                        continue
                    best[path] = min(best.get(path, float("inf")), time.perf_counter() - started)
            for path in PATHS:
                if path not in best:
                    print(f"| {family}-base | {path} | not runnable: {problems.get(path, '?')} | | | |")
                    continue
                rss = rss_of(path, folder, args)
                ratio = best[path] / best["ours"] if "ours" in best else float("nan")
                print(f"| {family}-base | {path} | {best[path]:.2f} | {args.images / best[path]:.2f} | "
                      f"{ratio:.2f}x | {rss:.0f} |" if rss else f"| {family}-base | {path} | {best[path]:.2f} | "
                      f"{args.images / best[path]:.2f} | {ratio:.2f}x | ? |", flush=True)
            del runs
    print(json.dumps({"note": "'vs ours' > 1 means that path is slower than ours"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
