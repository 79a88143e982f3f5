"""Benchmark: what the frozen-encoder embedding cache saves per training epoch, at real model size.

Builds CLIP ViT-B/32 (vision + projection) and GPT-2 124M at random init from their configs (nothing is
downloaded), an MLP mapper with K=10, and trains the first 11 GPT-2 blocks frozen (the COCO recipe) on
N synthetic 640x480 photos with 5 captions each. It times one epoch three ways:

    no cache      every batch loads, preprocesses and encodes its images (what training without a cache does)
    first epoch   the cache is filled (each unique image encoded once) and then the epoch trains on it
    cached epoch  later epochs and later runs: embeddings are read back from the safetensors shards

    python bench/embedding_cache.py [--images 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image
from transformers import CLIPVisionConfig, GPT2Config

from captioning.config import CaptionerConfig, MapperConfig
from captioning.images import load_image
from captioning.model import PrefixCaptioner
from captioning.preprocessing import make_image_processor
from trainer.cache import EmbeddingCache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--captions-per-image", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--caption-tokens", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = CaptionerConfig(encoder_type="clip", encoder_config=CLIPVisionConfig().to_dict(),
                             decoder_config=GPT2Config().to_dict(), prefix_length=10, mapper=MapperConfig(type="mlp"),
                             freeze_encoder=True, freeze_decoder=11)
    model = PrefixCaptioner(config)
    processor = make_image_processor("clip", 224)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    work = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    paths = {}
    for i in range(args.images):
        path = work / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
        paths[f"img{i}"] = path
    pairs = [(image_id, c) for image_id in paths for c in range(args.captions_per_image)]
    vocab = model.vocab_size

    def run_epoch(features=None) -> float:
        model.train()
        started = time.perf_counter()
        for start in range(0, len(pairs), args.batch_size):
            batch = pairs[start:start + args.batch_size]
            ids = torch.randint(0, vocab, (len(batch), args.caption_tokens))
            mask = torch.ones_like(ids)
            if features is None:
                pixels = processor(images=[load_image(paths[i]) for i, _ in batch], return_tensors="pt")["pixel_values"]
                out = model(ids, mask, pixel_values=pixels)
            else:
                out = model(ids, mask, image_embeds=torch.stack([features[i] for i, _ in batch]))
            out["loss"].backward()
            optimizer.step()
            optimizer.zero_grad()
        return time.perf_counter() - started

    cache = EmbeddingCache(work / "cache", "bench")
    no_cache = run_epoch()
    t0 = time.perf_counter()
    features = cache.get_or_compute(paths, model, processor, batch_size=args.batch_size)
    fill = time.perf_counter() - t0
    first = fill + run_epoch(features)
    t0 = time.perf_counter()
    features = EmbeddingCache(work / "cache", "bench").get_or_compute(paths, model, processor)  # a later run
    read = time.perf_counter() - t0
    cached = read + run_epoch(features)
    print(f"{args.images} images x {args.captions_per_image} captions, batch {args.batch_size}, "
          f"{args.threads} threads; CLIP ViT-B/32 frozen + GPT-2 124M (11 blocks frozen), K=10")
    print("| epoch | seconds | speed-up vs no cache |")
    print("| --- | ---: | ---: |")
    print(f"| no cache (encode every batch) | {no_cache:.1f} | 1.00x |")
    print(f"| first epoch (fill cache {fill:.1f}s + train) | {first:.1f} | {no_cache / first:.2f}x |")
    print(f"| later epochs / runs (read {read:.2f}s + train) | {cached:.1f} | {no_cache / cached:.2f}x |")


if __name__ == "__main__":
    main()
