"""Benchmark: how fast Caption Zoo captions, against the field's reference loop and against a FLOP floor.

Run (from the repository root; full size takes a few minutes on 2 cores, `--quick` a few seconds):

    .venv/bin/python bench/generation.py                      # real-size models, the README figures
    .venv/bin/python bench/generation.py --baseline-images 16 # time the baseline on all 16 images
    .venv/bin/python bench/generation.py --quick              # tiny models: checks the script runs
    .venv/bin/python bench/generation.py --isa avx2           # as on an AVX2-only CPU (torch, oneDNN, MKL, fbgemm capped)

What it builds (at random init, from configs; nothing is downloaded):
- the vision encoder is CLIP ViT-B/32 with its projection (`CLIPVisionConfig()` defaults: image 224,
  patch 32, width 768, 12 layers, projection_dim 512), one set of weights shared by all models;
- the decoder is GPT-2 124M (`GPT2Config()` defaults, vocab 50257), the mapper ClipCap's MLP, K = 10;
- `--models` (3) such captioners differ only in their mapper and GPT-2 weights (different seeds).
Each is written with `captioning.zoo.save_entry` into a temporary zoo and loaded back with
`captioning.zoo.load_entry`, so what is timed is exactly what the CLI and the app run. A GPT-2 tokenizer
cannot be had offline, so each entry carries a small byte-level BPE trained here; its decode silently
drops ids beyond its vocabulary, so captions are gibberish, but decoding is a negligible part of the time
and the token ids (hence the work) are those of the real-size model.

It first prints the CPU and its ISA as /proc/cpuinfo's flags give it (AVX2, AVX-512, VNNI, AMX), and the cap
`--isa avx2` puts on torch's own kernels (ATEN_CPU_CAPABILITY), oneDNN (ONEDNN_MAX_CPU_ISA), MKL
(MKL_ENABLE_INSTRUCTIONS) and fbgemm, the int8 path's kernels (FBGEMM_ENABLE_INSTRUCTIONS: without it, int8 runs
VNNI on a CPU that has it, 2.8x faster than its AVX2 kernels on one 80 x 768 x 3072 product); ONNX Runtime and
OpenVINO have no such switch and still use what the CPU has, which the header says too.

What it times (after an untimed warm-up on a few images), alternating: every measurement of a group runs once
per round, `--repeats` (3) rounds, the best of each kept, so a burst of load on a shared machine spoils one round
of every measurement rather than every repeat of one:
1. ours: `captioning.pipeline.caption_images(models, 16 images, preset "consistent" = beam 5)` with exactly
   `--new-tokens` (20) new tokens per caption (EOS suppressed: min_new_tokens = max_new_tokens = 20): the
   16 PIL images (480x640) are preprocessed once, encoded once (the models share the encoder), and each
   model decodes the whole batch, running its prompt once per image and copying the cache to the beams.
2. the baseline, as the field's reference code does it: for each model and each image separately,
   preprocess and encode the image at batch 1, then call transformers' `generate(inputs_embeds=prefix,
   num_beams=5, min_new_tokens=20, max_new_tokens=20)` at batch 1. `--baseline-images N` times the first
   N images for every model (it is slow); seconds per caption are compared, which does not depend on N.
3. greedy throughput: one model, `--greedy-batch` (32) images in one batch, greedy, 20 new tokens, through
   `caption_images` (preprocessing and encoding included).
4. batched transformers, what a competent user gets from transformers alone, on the same 16 images and models
   with the same token count: preprocess + CLIP once for the batch, then each model's
   `decoder.generate(inputs_embeds=prefix, num_beams=5 | greedy, min_new_tokens=max_new_tokens=20)` at batch 16.
   Ours (beam 5 and greedy, 16 images x 3 models) is reported against it, and so is the opt-in fast path
   (`quantize="int8"`, which changes numerics: `bench/fast_path_quality.py` measures what it costs).
5. batch 1: one photo captioned by the 3 models (the app's case), ours / int8 / transformers, s per photo.
6. peak RSS per configuration (ours, int8, transformers x beam 5, greedy): each in a fresh process that
   loads the 3 models and captions the 16 images once (`--no-rss` skips these).
7. peers (`bench/peers.py`; `--no-peers` skips them): what a user would pick instead for fast CPU decoding
   of the same GPT-2 with prefix embeddings, exported to ONNX with past key/values: ONNX Runtime fp32, ONNX
   Runtime dynamic int8, OpenVINO fp32, each decoding the same images with the same models, settings and token
   count through the same engine (beam 5 and greedy), with their peak RSS (the torch decoder's weights are
   dropped in that process: it holds the runtime's copy only). One peer's runtime is open at a time (each
   holds its own copy of the decoders), timed in alternating rounds with its counterpart of ours (exact for
   fp32 peers, int8 for ONNX Runtime's int8), and each "ours vs peer" ratio comes from those rounds. A peer
   whose package is not installed is left out with one line saying so.
8. `--device cuda`: fp32 / bf16 / fp16 rows, ours against batched transformers on the GPU (exits with one
   line saying so when no CUDA GPU is available).

The FLOP floor. Only matrix products are counted (2 FLOPs per multiply-add); layer norms, GELU, softmax,
beam bookkeeping and preprocessing are left out, so the floor is a lower bound on the time:
    encoder, per image (T = 1 + (S/P)^2 = 50 tokens):
        patch conv 2 * (3 P^2 D) * (S/P)^2  +  blocks 2 * W_enc * T  +  attention L_enc * 4 * D * T^2
        +  projection 2 * D * projection_dim  (on the pooled token)
    mapper, per image: 2 * W_map
    decoder, per image, for N new tokens and b beams (b = 1 for greedy):
        prefill of the K prefix positions once:  2 * W_dec * K  +  L * 4 * d * K(K+1)/2  +  LM head 2 * d * V
            (the LM head runs on the last position only; its logits give the first token)
        N - 1 steps on b rows, per row:  2 * W_dec  +  2 * d * V  +  L * 4 * d * (K + t)   at step t = 1 .. N-1
            (attention of the new token over the K prefix positions and t tokens: QK^T and AV)
where W_* is the number of weights in the matrices of the blocks (parameters with 2 or more dimensions:
12 d^2 per GPT-2 / CLIP layer), d = n_embd, V = vocab, L = layers. The encoder runs once per image for
the beam workload (shared by the models) and the decoder terms once per model.
floor seconds = FLOPs / R, with R the best fp32 matmul rate torch reaches on this machine with the same
thread count (best of 20 repeats, over large products like the encoder's and the decode products of this
workload; the large ones reach the machine's peak). The decode products have only beams x images rows
(80 for beam 5, 32 for greedy), and reach a lower rate even alone; an "info" line therefore also prices
the decode blocks and LM head at the rates measured for their own shapes, which says how much of the gap
to the floor is the shape of the work rather than the engine.

Targets, printed with PASS/MISS: ours >= 3x faster than the baseline per caption; ours <= 1.6x the floor
for beam 5; greedy at batch 32 <= 2x its floor; ours >= 1.6x (beam 5) and >= 1.6x (greedy) faster than
batched transformers; int8 beam 5 >= 2.5x faster than batched transformers; ours at least level (>= 1.0x) with
the fastest exact peer (beam 5), and int8 with ONNX Runtime's int8; peak RSS of ours (beam 5, 3 models) <= 1.1x
transformers'. The last lines are a markdown table for the README.
On a shared machine the figures vary from run to run, easily by 10-50 %: quote the command and the machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is ever downloaded
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/peers.py

import numpy as np
import torch
from peers import PEERS, PeerCaptioner, export_decoder, quantize_int8
from PIL import Image
from transformers import CLIPVisionConfig, GPT2Config
from transformers.utils import logging as hf_logging

from captioning.config import CaptionerConfig, MapperConfig
from captioning.generation import GenerationSettings, generate, get_settings
from captioning.model import PrefixCaptioner, build_vision_encoder, vision_config_from_dict
from captioning.pipeline import caption_images
from captioning.preprocessing import make_image_processor
from captioning.tokenization import train_bpe_tokenizer
from captioning.zoo import ZooModel, load_entry, save_entry

# `--isa avx2`: torch's own kernels, oneDNN, MKL and fbgemm read these once, when torch loads (the script re-runs itself)
ISA_CAPS = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                     "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}}
TARGET_SPEEDUP = 3.0  # ours vs the batch-1 reference loop, seconds per caption
TARGET_BEAM_FLOOR = 1.6  # ours (beam 5) / FLOP floor
TARGET_GREEDY_FLOOR = 2.0  # greedy batch 32 / FLOP floor
TARGET_VS_BATCHED_BEAM = 1.6  # ours vs batched transformers, beam 5, s/caption
TARGET_VS_BATCHED_GREEDY = 1.6  # ours vs batched transformers, greedy
TARGET_INT8_BEAM = 2.5  # ours with quantize="int8" vs batched transformers, beam 5
TARGET_VS_PEER = 1.0  # ours vs the fastest peer at equal tokens (exact vs exact, int8 vs int8), beam 5
TARGET_RSS = 1.1  # peak RSS, ours / transformers, beam 5, the bench's models loaded
IMAGE_HEIGHT, IMAGE_WIDTH = 480, 640  # a typical photo; preprocessing resizes it to 224

TOKENIZER_TEXTS = [
    "a dog runs on the grass in a park", "two cats sleep on a red sofa", "a man rides a bicycle down the street",
    "a plate of food with rice and vegetables", "a group of people standing near a bus",
    "a small boat on a lake at sunset", "a child holding a kite on the beach", "a train at a station",
]


# ----------------------------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the full run and `--quick`."""

    vision: dict
    decoder: dict
    prefix_length: int
    image_size: int
    image_hw: tuple[int, int]
    matmul_repeats: int  # timed products per shape for the matmul rate (the best is kept)


def full_sizes() -> Sizes:
    vision = CLIPVisionConfig()  # ViT-B/32: image 224, patch 32, width 768, 12 layers, projection 512
    decoder = GPT2Config()  # GPT-2 124M: n_embd 768, 12 layers, vocab 50257, EOS 50256
    return Sizes(vision=vision.to_dict(), decoder=decoder.to_dict(), prefix_length=10, image_size=vision.image_size,
                 image_hw=(IMAGE_HEIGHT, IMAGE_WIDTH), matmul_repeats=20)


def quick_sizes(vocab_size: int) -> Sizes:
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=24)
    decoder = GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=32, n_layer=2, n_head=4,
                         bos_token_id=vocab_size - 1, eos_token_id=vocab_size - 1)
    return Sizes(vision=vision.to_dict(), decoder=decoder.to_dict(), prefix_length=3, image_size=32,
                 image_hw=(48, 64), matmul_repeats=3)


# ----------------------------------------------------------------------------------------------------------
# Models and images


def build_zoo(sizes: Sizes, num_models: int, zoo_dir: Path, tokenizer) -> list[ZooModel]:
    """Save `num_models` captioners (shared encoder weights, own mapper/GPT-2 seeds) and load them back."""
    config = CaptionerConfig(encoder_type="clip", encoder_config=sizes.vision, decoder_config=sizes.decoder,
                             prefix_length=sizes.prefix_length, mapper=MapperConfig(type="mlp"),
                             encoder_name="clip-vit-b32 (random init)", decoder_name="gpt2-124m (random init)")
    torch.manual_seed(0)
    encoder = build_vision_encoder("clip", vision_config_from_dict("clip", sizes.vision))
    processor = make_image_processor("clip", sizes.image_size)
    shared: dict = {}  # as captioning.zoo.ModelCache does: equal encoder weights -> one module
    models = []
    for i in range(num_models):
        torch.manual_seed(1000 + i)  # the mapper and GPT-2 differ per model
        model = PrefixCaptioner(config, encoder=encoder).eval()
        path = save_entry(model, tokenizer, processor, zoo_dir / f"bench-model-{i}")
        del model
        models.append(load_entry(path, shared_encoders=shared))
    if len({m.encoder_key for m in models}) != 1:
        raise RuntimeError("the benchmark models should share one encoder (same weights and preprocessing)")
    return models


def synthetic_images(count: int, hw: tuple[int, int], seed: int) -> list[Image.Image]:
    """RGB photos-to-be: a smooth colour gradient plus noise, so resizing does real work."""
    rng = np.random.default_rng(seed)
    h, w = hw
    ys, xs = np.mgrid[0:h, 0:w]
    images = []
    for _ in range(count):
        base = np.stack([(xs * rng.uniform(0.1, 0.5) + ys * rng.uniform(0.1, 0.5) + rng.uniform(0, 255)) % 256
                         for _ in range(3)], axis=-1)  # (H, W, 3)
        noisy = np.clip(base + rng.normal(0, 20, size=base.shape), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(noisy))  # (H, W, 3) uint8 -> RGB
    return images


# ----------------------------------------------------------------------------------------------------------
# The timed runs


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Best wall-clock seconds of `repeats` calls: on a shared machine the minimum is the least disturbed."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def alternate(measurements: dict, repeats: int) -> dict:
    """Best wall-clock seconds of each measurement (key -> fn), over `repeats` rounds in which every measurement
    runs once, in turn: load from another process spoils a round of every measurement, so ratios stay fair."""
    best = {key: float("inf") for key in measurements}
    for _ in range(repeats):
        for key, fn in measurements.items():
            best[key] = min(best[key], best_time(fn, 1))
    return best


def cpu_isa() -> str:
    """The CPU's model and vector ISA from /proc/cpuinfo's flags, and any cap in force: one line."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or platform.machine()} (no /proc/cpuinfo: ISA unknown)"
    lines = info.splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    has = {"AVX2": "avx2" in flags, "AVX-512": "avx512f" in flags,
           "VNNI": bool(flags & {"avx512_vnni", "avx_vnni"}), "AMX": any(f.startswith("amx") for f in flags)}
    text = f"{model} | ISA: " + ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in has.items())
    text += f" | torch kernels {torch.backends.cpu.get_cpu_capability()}"
    caps = {k: os.environ[k] for k in ISA_CAPS["avx2"] if k in os.environ}
    if caps:
        text += " | capped: " + ", ".join(f"{k}={v}" for k, v in caps.items()) + \
            " (ONNX Runtime and OpenVINO are not capped)"
    return text


def run_ours(models: list[ZooModel], images: list[Image.Image], settings: GenerationSettings) -> None:
    caption_images(models, images, settings=settings, batch_size=len(images))


@torch.no_grad()  # as the reference scripts do
def run_baseline(models: list[ZooModel], images: list[Image.Image], num_beams: int, new_tokens: int) -> None:
    """The field's reference loop: per model, per image, batch 1: preprocess, encode, transformers' generate."""
    for zoo_model in models:
        captioner = zoo_model.model
        eos = captioner.eos_token_id
        for image in images:
            pixels = zoo_model.image_processor(images=[image], return_tensors="pt")["pixel_values"]  # (1, 3, S, S)
            prefix = captioner.prefix_embeddings(captioner.encode_images(pixels))  # (1, K, n_embd)
            mask = torch.ones(prefix.shape[:2], dtype=torch.long)  # (1, K)
            out = captioner.decoder.generate(inputs_embeds=prefix, attention_mask=mask, num_beams=num_beams,
                                             max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                             pad_token_id=eos)  # (1, new_tokens): only the new tokens
            if out.shape[1] != new_tokens:
                raise RuntimeError(f"baseline generated {out.shape[1]} tokens, expected {new_tokens}")
            zoo_model.decode(out[0].tolist())


@torch.inference_mode()
def run_batched_transformers(models: list[ZooModel], images: list[Image.Image], num_beams: int,
                             new_tokens: int) -> None:
    """What a competent user gets from transformers alone: preprocess and encode the batch once (the models
    share the encoder), then each model's `decoder.generate(inputs_embeds=prefix)` on the whole batch."""
    first = models[0]
    features = first.encode(first.preprocess(list(images)))  # (B, embed_dim), once for every model
    for zoo_model in models:
        captioner = zoo_model.model
        eos = captioner.eos_token_id
        prefix = captioner.prefix_embeddings(features)  # (B, K, n_embd)
        mask = torch.ones(prefix.shape[:2], dtype=torch.long, device=prefix.device)  # (B, K)
        out = captioner.decoder.generate(inputs_embeds=prefix, attention_mask=mask, num_beams=num_beams,
                                         max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                         pad_token_id=eos)  # (B, new_tokens)
        if out.shape[1] != new_tokens:
            raise RuntimeError(f"batched transformers generated {out.shape[1]} tokens, expected {new_tokens}")
        for row in out.tolist():
            zoo_model.decode(row)


def run_peer(models: list[ZooModel], peer_models: list[PeerCaptioner], images: list[Image.Image],
             settings: GenerationSettings) -> None:
    """A peer runtime: preprocess and encode once (shared encoder, in torch), then each model's exported decoder
    through the same engine and settings as ours, and the captions decoded to text."""
    first = models[0]
    with torch.inference_mode():
        features = first.encode(first.preprocess(list(images)))  # (B, embed_dim)
        for zoo_model, peer in zip(models, peer_models):
            out = generate(peer, features, settings)
            for per_image in out.tokens:
                for row in per_image:
                    zoo_model.decode(row)


def available_peers() -> tuple[list[str], list[str]]:
    """(peers whose runtime is installed, one line per peer left out and why)."""
    import importlib.util

    ok, missing = [], []
    for peer in PEERS:
        package = "openvino" if peer == "openvino" else "onnxruntime"
        if importlib.util.find_spec(package) is None:
            missing.append(f"peer {peer} left out: the {package} package is not installed (make setup installs it)")
        else:
            ok.append(peer)
    return ok, missing


def export_peers(models: list[ZooModel], peers: list[str], onnx_dir: Path) -> dict[str, list[Path]]:
    """Each model's decoder exported once (fp32), and quantised for ONNX Runtime int8: peer -> a path per model."""
    onnx_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, list[Path]] = {peer: [] for peer in peers}
    for i, zoo_model in enumerate(models):
        fp32 = onnx_dir / f"decoder-{i}.onnx"
        if not fp32.exists():
            export_decoder(zoo_model.model.decoder, fp32)
        for peer in peers:
            if peer == "onnxruntime-int8":
                int8 = onnx_dir / f"decoder-{i}-int8.onnx"
                paths[peer].append(int8 if int8.exists() else quantize_int8(fp32, int8))
            else:
                paths[peer].append(fp32)
    return paths


def peer_models(models: list[ZooModel], peer: str, paths: list[Path], threads: int) -> list[PeerCaptioner]:
    runtime = "openvino" if peer == "openvino" else "onnxruntime"
    return [PeerCaptioner(m.model, path, runtime, threads) for m, path in zip(models, paths)]


def check_lengths(model: ZooModel, images: list[Image.Image], settings: GenerationSettings, new_tokens: int) -> None:
    """The work we time is the work we count: every caption has exactly `new_tokens` tokens."""
    out = generate(model.model, model.encode(model.preprocess(images)), settings)
    lengths = {len(t) for per_image in out.tokens for t in per_image}
    if lengths != {new_tokens}:
        raise RuntimeError(f"expected captions of exactly {new_tokens} tokens, got lengths {sorted(lengths)}")


def matmul_rate(shapes: tuple[tuple[int, int, int], ...], repeats: int) -> dict[tuple[int, int, int], float]:
    """fp32 GFLOP/s of A (M, K) @ B (K, N) per shape, best of `repeats` (after one untimed product).

    The shapes take turns, round after round, so a burst of load from another process on a shared machine
    spoils one round of every shape rather than every repeat of one shape.
    """
    operands = {shape: (torch.randn(shape[0], shape[1]), torch.randn(shape[1], shape[2])) for shape in shapes}
    best = {shape: float("inf") for shape in shapes}
    for a, b in operands.values():
        a @ b  # warm-up: MKL picks its kernels and allocates once
    for _ in range(repeats):
        for shape, (a, b) in operands.items():
            best[shape] = min(best[shape], best_time(lambda a=a, b=b: a @ b, 1))
    return {(m, k, n): 2 * m * k * n / best[(m, k, n)] / 1e9 for m, k, n in shapes}


# ----------------------------------------------------------------------------------------------------------
# FLOP counting (the formula is in the module docstring)


def matrix_weights(module: torch.nn.Module) -> int:
    """Weights in the matrices of a module (parameters with >= 2 dimensions); biases and norms left out."""
    return sum(p.numel() for p in module.parameters() if p.dim() >= 2)


def encoder_flops_per_image(captioner: PrefixCaptioner) -> float:
    cfg = captioner.encoder.config
    patches = (cfg.image_size // cfg.patch_size) ** 2
    tokens = patches + 1  # the class token
    d = cfg.hidden_size
    patch = 2 * (cfg.num_channels * cfg.patch_size ** 2 * d) * patches
    blocks = 2 * matrix_weights(captioner.encoder.vision_model.encoder) * tokens
    attention = cfg.num_hidden_layers * 4 * d * tokens ** 2
    projection = 2 * d * cfg.projection_dim
    return patch + blocks + attention + projection


def decoder_flops_per_image(captioner: PrefixCaptioner, beams: int, new_tokens: int) -> dict[str, float]:
    """Mapper + prefill once + (new_tokens - 1) steps on `beams` rows, for one image, split by kind of product.

    The split lets the decode products (few rows each: beams x images) be priced at their own matmul rate.
    """
    dec = captioner.decoder.config
    d, layers, vocab, k = dec.n_embd, dec.n_layer, captioner.vocab_size, captioner.config.prefix_length
    w_dec = matrix_weights(captioner.decoder_blocks())
    lm_head = 2 * d * vocab
    mapper = 2 * matrix_weights(captioner.mapper)
    prefill = 2 * w_dec * k + layers * 4 * d * k * (k + 1) / 2 + lm_head
    steps = range(1, new_tokens)  # the prefill's last position already gave the first token
    return {"mapper + prefill": mapper + prefill,
            "decode blocks": beams * len(steps) * 2 * w_dec,
            "decode LM head": beams * len(steps) * lm_head,
            "decode attention": sum(beams * layers * 4 * d * (k + t) for t in steps)}


def workload_flops(captioner: PrefixCaptioner, images: int, models: int, beams: int,
                   new_tokens: int) -> dict[str, float]:
    """FLOPs by kind for `images` encoded once and decoded by `models` models of this architecture."""
    parts = {"encoder": images * encoder_flops_per_image(captioner)}
    for name, flops in decoder_flops_per_image(captioner, beams, new_tokens).items():
        parts[name] = images * models * flops
    return parts


def floors(parts: dict[str, float], peak: float, blocks_rate: float, head_rate: float) -> tuple[float, float]:
    """(floor at the peak rate, floor with the decode products at the rate measured for their shapes), seconds."""
    total = sum(parts.values()) / (peak * 1e9)
    rest = sum(v for k, v in parts.items() if k not in ("decode blocks", "decode LM head"))
    shaped = (rest / peak + parts["decode blocks"] / blocks_rate + parts["decode LM head"] / head_rate) / 1e9
    return total, shaped


# ----------------------------------------------------------------------------------------------------------
# Main


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# ----------------------------------------------------------------------------------------------------------
# Peak memory: each configuration in a fresh process (a process's peak RSS only ever grows)

RSS_CONFIGS = ("ours-beam", "ours-greedy", "int8-beam", "int8-greedy", "transformers-beam", "transformers-greedy")
PEER_RSS_CONFIGS = tuple(f"{peer}-beam" for peer in PEERS)


def run_config(config: str, models: list[ZooModel], images: list[Image.Image], beam: GenerationSettings,
               greedy: GenerationSettings, peers: list[PeerCaptioner] | None = None) -> None:
    """One RSS configuration: '<engine>-<strategy>' on these models and images."""
    engine, strategy = config.rsplit("-", 1)
    settings = beam if strategy == "beam" else greedy
    if peers is not None:
        run_peer(models, peers, images, settings)
    elif engine == "transformers":
        run_batched_transformers(models, images, settings.num_beams if strategy == "beam" else 1,
                                 settings.max_new_tokens)
    else:
        run_ours(models, images, settings.replace(quantize="int8") if engine == "int8" else settings)


def rss_child(args: argparse.Namespace, beam: GenerationSettings, greedy: GenerationSettings, hw: tuple[int, int]) -> int:
    """`--rss-child CONFIG --zoo DIR`: load the zoo, run CONFIG once, print the peak RSS of the run in MiB.

    Loading the entries has its own, higher peak (safetensors reads), the same for every configuration; so
    the peak is reset after loading (Linux: writing 5 to /proc/self/clear_refs resets VmHWM) and VmHWM read
    after the run: the models' resident weights plus what the configuration itself needs."""
    import resource

    shared: dict = {}
    models = [load_entry(path, shared_encoders=shared) for path in sorted(Path(args.zoo).iterdir())]
    images = synthetic_images(args.images, hw, seed=0)
    peers = None
    engine = args.rss_child.rsplit("-", 1)[0]
    if engine in PEERS:  # the runtime holds the decoder: the torch decoder's weights are not kept beside it
        paths = export_peers(models, [engine], Path(args.onnx_dir))[engine]
        peers = peer_models(models, engine, paths, args.threads)
        for zoo_model in models:
            zoo_model.model.decoder.to("meta")
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not allowed: the process peak (loading included) is all there is
        pass
    run_config(args.rss_child, models, images, beam, greedy, peers)
    try:
        status = Path("/proc/self/status").read_text()
        peak_kib = float(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    except (OSError, StopIteration):
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    print(f"peak RSS MiB: {peak_kib / 1024:.0f}")
    return 0


def measure_rss(config: str, zoo_dir: Path, args: argparse.Namespace, onnx_dir: Path) -> float:
    """Peak RSS (MiB) of a fresh process that loads the zoo and runs one configuration."""
    import subprocess

    command = [sys.executable, str(Path(__file__).resolve()), "--rss-child", config, "--zoo", str(zoo_dir),
               "--threads", str(args.threads), "--images", str(args.images), "--baseline-images", "1",
               "--new-tokens", str(args.new_tokens), "--onnx-dir", str(onnx_dir)]
    if args.quick:
        command.append("--quick")
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("peak RSS MiB: "):
            return float(line.split(": ")[1])
    raise RuntimeError(f"RSS child for {config} failed: {proc.stderr.strip()[-500:]}")


# ----------------------------------------------------------------------------------------------------------
# GPU rows (--device cuda)


def cuda_rows(models: list[ZooModel], images: list[Image.Image], beam: GenerationSettings,
              greedy: GenerationSettings, repeats: int) -> list[tuple[str, str, str, str]]:
    """fp32 / bf16 / fp16: ours against batched transformers on the GPU, beam 5 and greedy, s/caption."""
    def timed(fn: Callable[[], object]) -> float:
        def synced() -> None:
            fn()
            torch.cuda.synchronize()
        synced()  # warm-up: kernels, cuBLAS handles, the allocator
        return best_time(synced, repeats)

    captions = len(images) * len(models)
    rows = []
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        for zoo_model in models:
            zoo_model.model.to("cuda", dtype)  # the shared encoder moves once; later calls are no-ops for it
        for label, settings, beams in (("beam 5", beam, beam.num_beams), ("greedy", greedy, 1)):
            ours = timed(lambda s=settings: run_ours(models, images, s)) / captions
            theirs = timed(lambda b=beams: run_batched_transformers(models, images, b, greedy.max_new_tokens))
            theirs /= captions
            rows += [(f"cuda {name}, {label}: ours s/caption", f"{ours:.4f}", "", ""),
                     (f"cuda {name}, {label}: batched transformers s/caption", f"{theirs:.4f}", "", ""),
                     (f"cuda {name}, {label}: ours vs batched transformers", f"{theirs / ours:.2f}x", "", "")]
            print(f"cuda {name} {label}: ours {ours:.4f}, batched transformers {theirs:.4f} s/caption", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2, help="torch threads for every timed part (default 2)")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed rounds; each measurement runs once per round, the best is kept (default 3)")
    p.add_argument("--images", type=int, default=16, help="images captioned by each model (default 16)")
    p.add_argument("--models", type=int, default=3, help="models sharing one encoder (default 3)")
    p.add_argument("--baseline-images", type=int, default=4,
                   help="images the batch-1 baseline captions with each model (default 4; at most --images)")
    p.add_argument("--greedy-batch", type=int, default=32, help="images in the greedy throughput batch (default 32)")
    p.add_argument("--new-tokens", type=int, default=20, help="exact caption length in tokens (default 20)")
    p.add_argument("--quick", action="store_true", help="tiny models and images: checks the script runs, in seconds")
    p.add_argument("--no-rss", action="store_true", help="skip the peak-memory rows (one fresh process per row)")
    p.add_argument("--no-peers", action="store_true", help="skip the ONNX Runtime / OpenVINO rows")
    p.add_argument("--isa", choices=("native", *ISA_CAPS), default="native",
                   help="avx2: cap torch, oneDNN, MKL and fbgemm at AVX2, as on an AVX2-only CPU (default native)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: also time fp32 / bf16 / fp16 on the GPU against batched transformers there")
    p.add_argument("--rss-child", choices=RSS_CONFIGS + PEER_RSS_CONFIGS, help=argparse.SUPPRESS)  # internal: one RSS measurement
    p.add_argument("--zoo", help=argparse.SUPPRESS)
    p.add_argument("--onnx-dir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in ("threads", "repeats", "images", "models", "baseline_images", "greedy_batch", "new_tokens"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.baseline_images > args.images:
        p.error(f"--baseline-images ({args.baseline_images}) cannot exceed --images ({args.images})")
    if args.device == "cuda" and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        p.error(f"--device cuda: no CUDA GPU is available here (torch {torch.__version__}, {build}); "
                "run without --device, or on a machine with a GPU and a CUDA build of torch")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    caps = ISA_CAPS.get(args.isa, {})
    if any(os.environ.get(key) != value for key, value in caps.items()):  # too late for this process: re-run
        command = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)]
        os.execve(sys.executable, command, {**os.environ, **caps})
    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()  # generate() warns about generation-config details; they are not results
    beam = get_settings("consistent", min_new_tokens=args.new_tokens, max_new_tokens=args.new_tokens)
    greedy = get_settings("greedy", min_new_tokens=args.new_tokens, max_new_tokens=args.new_tokens)
    int8_beam, int8_greedy = beam.replace(quantize="int8"), greedy.replace(quantize="int8")
    tokenizer = train_bpe_tokenizer(TOKENIZER_TEXTS, vocab_size=300)
    sizes = quick_sizes(len(tokenizer)) if args.quick else full_sizes()
    if args.rss_child:
        return rss_child(args, beam, greedy, sizes.image_hw)
    mode = "quick (tiny models: the figures mean nothing)" if args.quick else "full size (ViT-B/32 + GPT-2 124M)"
    print(f"# bench/generation.py | {mode} | torch {torch.__version__} | {args.threads} threads | "
          f"{os.cpu_count()} cores", flush=True)
    print(f"# CPU: {cpu_isa()}", flush=True)
    peers, missing = ([], []) if args.no_peers else available_peers()
    for line in missing:
        print(line, flush=True)

    with tempfile.TemporaryDirectory(prefix="caption-zoo-bench-") as tmp:
        t0 = time.perf_counter()
        zoo_dir, onnx_dir = Path(tmp) / "zoo", Path(tmp) / "onnx"
        models = build_zoo(sizes, args.models, zoo_dir, tokenizer)
        print(f"built and loaded {len(models)} models in {time.perf_counter() - t0:.1f} s "
              f"({models[0].model.parameter_counts()['total'] / 1e6:.1f} M parameters each)", flush=True)
        if peers:
            t0 = time.perf_counter()
            paths = export_peers(models, peers, onnx_dir)
            print(f"exported the decoders to ONNX (+ int8) for {', '.join(peers)} in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        images = synthetic_images(args.images, sizes.image_hw, seed=0)
        greedy_images = synthetic_images(args.greedy_batch, sizes.image_hw, seed=1)
        baseline_images = images[:args.baseline_images]
        captions = len(images) * len(models)

        # Warm-up (untimed): a few images through every path, and the length check.
        warm = images[:2]
        for settings in (beam, greedy, int8_beam, int8_greedy):
            check_lengths(models[0], warm, settings, args.new_tokens)
            run_ours(models, warm, settings)
        run_baseline(models[:1], warm[:1], beam.num_beams, args.new_tokens)
        run_batched_transformers(models, warm, beam.num_beams, args.new_tokens)
        run_batched_transformers(models, warm, 1, args.new_tokens)
        run_ours(models[:1], greedy_images[:4], greedy)

        # Every engine on the same 16 images x 3 models, alternating (see the module docstring).
        batch = f"{len(images)} images x {len(models)} models"
        base_captions = len(baseline_images) * len(models)
        group = {}
        for strategy, settings in (("beam", beam), ("greedy", greedy)):
            beams = settings.num_beams if strategy == "beam" else 1
            group["ours", strategy] = lambda s=settings: run_ours(models, images, s)
            group["transformers", strategy] = lambda b=beams: run_batched_transformers(models, images, b,
                                                                                        args.new_tokens)
            group["int8", strategy] = lambda s=settings: run_ours(models, images, s.replace(quantize="int8"))
        group["baseline", "beam"] = lambda: run_baseline(models, baseline_images, beam.num_beams, args.new_tokens)
        group["greedy batch", "greedy"] = lambda: run_ours(models[:1], greedy_images, greedy)
        seconds = alternate(group, args.repeats)
        t = {}  # s/caption, by (engine, strategy)
        for (engine, strategy), value in seconds.items():
            count = {"baseline": base_captions, "greedy batch": len(greedy_images)}.get(engine, captions)
            t[engine, strategy] = value / count
            print(f"{engine}, {strategy}: {value:.2f} s = {t[engine, strategy]:.3f} s/caption", flush=True)
        # Peers, one runtime open at a time (each holds its own copy of the 3 decoders), each timed in rounds
        # with its counterpart of ours (exact for fp32 peers, int8 for ONNX Runtime's int8), so each ratio
        # comes from the same rounds.
        peer_vs = {}  # (peer, strategy) -> counterpart's seconds / peer's seconds
        for peer in peers:
            t0 = time.perf_counter()
            runtimes = peer_models(models, peer, paths[peer], args.threads)
            print(f"opened {peer} in {time.perf_counter() - t0:.1f} s", flush=True)
            mine = "int8" if peer == "onnxruntime-int8" else "ours"
            peer_group = {}
            for strategy, settings in (("beam", beam), ("greedy", greedy)):
                run_peer(models, runtimes, warm, settings)  # warm-up, untimed
                peer_group[peer, strategy] = lambda s=settings, r=runtimes: run_peer(models, r, images, s)
                counterpart = settings.replace(quantize="int8") if mine == "int8" else settings
                peer_group[mine, strategy] = lambda s=counterpart: run_ours(models, images, s)
            peer_seconds = alternate(peer_group, args.repeats)
            del runtimes, peer_group
            gc.collect()
            for strategy in ("beam", "greedy"):
                t[peer, strategy] = peer_seconds[peer, strategy] / captions
                peer_vs[peer, strategy] = peer_seconds[peer, strategy] / peer_seconds[mine, strategy]
                print(f"{peer}, {strategy}: {peer_seconds[peer, strategy]:.2f} s = {t[peer, strategy]:.3f} "
                      f"s/caption; {mine} in the same rounds {peer_seconds[mine, strategy]:.2f} s", flush=True)
        ours_s = seconds["ours", "beam"]
        base_per_caption = t["baseline", "beam"]
        greedy_s = seconds["greedy batch", "greedy"]

        # Batch 1: one photo captioned by every model, as the app does.
        one = images[:1]
        photo_group = {}
        for strategy, settings in (("beam", beam), ("greedy", greedy)):
            beams = settings.num_beams if strategy == "beam" else 1
            photo_group["ours", strategy] = lambda s=settings: run_ours(models, one, s)
            photo_group["int8", strategy] = lambda s=settings: run_ours(models, one, s.replace(quantize="int8"))
            photo_group["transformers", strategy] = lambda b=beams: run_batched_transformers(models, one, b,
                                                                                              args.new_tokens)
        photo = alternate(photo_group, args.repeats)  # s/photo
        for (engine, strategy), value in photo.items():
            print(f"batch 1, {engine} {strategy}: 1 photo x {len(models)} models: {value:.2f} s", flush=True)

        # The machine's rate: large products (as the encoder and the prefill run); the decode products have
        # beams x images rows and are measured too, to say how much of the gap is the shape, not the engine.
        captioner = models[0].model
        d, vocab = captioner.n_embd, captioner.vocab_size
        beam_rows, greedy_rows = beam.num_beams * len(images), len(greedy_images)
        peak_shapes = [(2048, d, 4 * d), (2048, 2048, d)]
        decode_shapes = [(beam_rows, d, 4 * d), (beam_rows, d, vocab), (greedy_rows, d, 4 * d), (greedy_rows, d, vocab)]
        rates = matmul_rate(tuple(peak_shapes + decode_shapes), sizes.matmul_repeats)
        rate = max(rates.values())
        print("fp32 matmul GFLOP/s: " + ", ".join(f"({m}x{k})@({k}x{n}) {r:.1f}" for (m, k, n), r in rates.items()),
              flush=True)

        beam_parts = workload_flops(captioner, len(images), len(models), beam.num_beams, args.new_tokens)
        greedy_parts = workload_flops(captioner, len(greedy_images), 1, 1, args.new_tokens)
        beam_floor, beam_shaped = floors(beam_parts, rate, rates[decode_shapes[0]], rates[decode_shapes[1]])
        greedy_floor, greedy_shaped = floors(greedy_parts, rate, rates[decode_shapes[2]], rates[decode_shapes[3]])
        for label, parts, floor, shaped in (("beam", beam_parts, beam_floor, beam_shaped),
                                            ("greedy", greedy_parts, greedy_floor, greedy_shaped)):
            split = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in parts.items())
            print(f"FLOPs, {label} workload: {sum(parts.values()) / 1e9:.1f} G ({split}); floor {floor:.2f} s at "
                  f"{rate:.1f} GFLOP/s; {shaped:.2f} s with decode products at their shapes' rates", flush=True)

        rss = {}
        if not args.no_rss:
            for config in RSS_CONFIGS + tuple(f"{peer}-beam" for peer in peers):
                rss[config] = measure_rss(config, zoo_dir, args, onnx_dir)
                print(f"peak RSS, {config}: {rss[config]:.0f} MiB", flush=True)

        gpu_rows = cuda_rows(models, images, beam, greedy, args.repeats) if args.device == "cuda" else []

    speedup = base_per_caption / t["ours", "beam"]
    beam_ratio = ours_s / beam_floor
    greedy_ratio = greedy_s / greedy_floor
    vs = {key: t["transformers", key[1]] / t[key] for key in (("ours", "beam"), ("ours", "greedy"),
                                                                ("int8", "beam"), ("int8", "greedy"))}
    rows = [
        ("ours, beam 5: s/caption", f"{t['ours', 'beam']:.3f}", "", ""),
        ("batched transformers, beam 5: s/caption", f"{t['transformers', 'beam']:.3f}", "", ""),
        ("ours vs batched transformers, beam 5", f"{vs['ours', 'beam']:.2f}x", f">= {TARGET_VS_BATCHED_BEAM:g}x",
         verdict(vs["ours", "beam"] >= TARGET_VS_BATCHED_BEAM)),
        ("ours, greedy: s/caption", f"{t['ours', 'greedy']:.3f}", "", ""),
        ("batched transformers, greedy: s/caption", f"{t['transformers', 'greedy']:.3f}", "", ""),
        ("ours vs batched transformers, greedy", f"{vs['ours', 'greedy']:.2f}x", f">= {TARGET_VS_BATCHED_GREEDY:g}x",
         verdict(vs["ours", "greedy"] >= TARGET_VS_BATCHED_GREEDY)),
        ("ours int8 (opt-in), beam 5: s/caption", f"{t['int8', 'beam']:.3f}", "", ""),
        ("ours int8 vs batched transformers, beam 5", f"{vs['int8', 'beam']:.2f}x", f">= {TARGET_INT8_BEAM:g}x",
         verdict(vs["int8", "beam"] >= TARGET_INT8_BEAM)),
        ("ours int8 (opt-in), greedy: s/caption", f"{t['int8', 'greedy']:.3f}", "", ""),
        ("ours int8 vs batched transformers, greedy", f"{vs['int8', 'greedy']:.2f}x", "", ""),
    ]
    for strategy in ("beam", "greedy"):
        label = "beam 5" if strategy == "beam" else "greedy"
        for peer in peers:
            rows.append((f"peer {peer}, {label}: s/caption", f"{t[peer, strategy]:.3f}", "", ""))
        exact = [peer for peer in peers if peer != "onnxruntime-int8"]
        if exact:
            fastest = min(exact, key=lambda peer: t[peer, strategy])
            ratio = peer_vs[fastest, strategy]
            target = (f">= {TARGET_VS_PEER:g}x", verdict(ratio >= TARGET_VS_PEER)) if strategy == "beam" else ("", "")
            rows.append((f"ours vs fastest exact peer ({fastest}), {label}", f"{ratio:.2f}x", *target))
        if "onnxruntime-int8" in peers:
            ratio = peer_vs["onnxruntime-int8", strategy]
            target = (f">= {TARGET_VS_PEER:g}x", verdict(ratio >= TARGET_VS_PEER)) if strategy == "beam" else ("", "")
            rows.append((f"ours int8 vs onnxruntime-int8, {label}", f"{ratio:.2f}x", *target))
    rows += [
        ("baseline (batch 1, transformers generate): s/caption", f"{base_per_caption:.3f}", "", ""),
        ("speed-up vs baseline", f"{speedup:.1f}x", f">= {TARGET_SPEEDUP:g}x", verdict(speedup >= TARGET_SPEEDUP)),
        ("beam 5: time / FLOP floor", f"{beam_ratio:.2f}x", f"<= {TARGET_BEAM_FLOOR:g}x",
         verdict(beam_ratio <= TARGET_BEAM_FLOOR)),
        (f"greedy, batch {len(greedy_images)}: captions/s", f"{len(greedy_images) / greedy_s:.1f}", "", ""),
        (f"greedy, batch {len(greedy_images)}: time / FLOP floor", f"{greedy_ratio:.2f}x",
         f"<= {TARGET_GREEDY_FLOOR:g}x", verdict(greedy_ratio <= TARGET_GREEDY_FLOOR)),
    ]
    for strategy in ("beam", "greedy"):
        label = "beam 5" if strategy == "beam" else "greedy"
        rows.append((f"batch 1 ({len(models)} models, one photo), {label}: s/photo ours / int8 / transformers",
                     " / ".join(f"{photo[e, strategy]:.2f}" for e in ("ours", "int8", "transformers")), "", ""))
    for config, mib in rss.items():
        rows.append((f"peak RSS, {config} ({len(models)} models loaded)", f"{mib:.0f} MiB", "", ""))
    if "ours-beam" in rss:
        ratio = rss["ours-beam"] / rss["transformers-beam"]
        rows.append(("peak RSS, beam 5: ours / transformers", f"{ratio:.2f}x", f"<= {TARGET_RSS:g}x",
                     verdict(ratio <= TARGET_RSS)))
        per_model = (rss["ours-beam"] - rss["transformers-beam"]) / len(models)
        rows.append(("peak RSS, beam 5: ours over transformers, per model", f"{per_model:+.0f} MiB", "", ""))
    rows += gpu_rows
    rows += [
        (f"fp32 matmul rate ({args.threads} threads)", f"{rate:.1f} GFLOP/s", "", ""),
        ("info: beam 5 / floor with decode products at their shapes' rates", f"{ours_s / beam_shaped:.2f}x", "", ""),
        ("info: greedy / floor with decode products at their shapes' rates", f"{greedy_s / greedy_shaped:.2f}x",
         "", ""),
    ]
    command = "python bench/generation.py" + (" " + " ".join(sys.argv[1:]) if argv is None and sys.argv[1:] else "")
    print()
    print(f"Command: `{command}`; {batch}, {args.new_tokens} new tokens, "
          f"baseline timed on {len(baseline_images)} images x {len(models)} models, best of {args.repeats} "
          f"alternating rounds. CPU: {cpu_isa()}.")
    print()
    print("| measurement | value | target | result |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
