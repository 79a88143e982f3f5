"""Protects `bench/generation.py`: the benchmark script runs end to end (in `--quick` mode, tiny models)
and prints its markdown table with the targets, the CPU's ISA and the peer rows; its FLOP count follows the
formula in its docstring; `--isa avx2` reaches torch; the timing alternates between measurements."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import load_bench, tiny_captioner

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "generation.py"


def test_quick_run_prints_the_table():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--images", "4",
                           "--baseline-images", "2", "--greedy-batch", "4", "--no-rss", "--repeats", "2", "--isa", "avx2"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| measurement | value | target | result |" in out
    assert "4 images x 3 models" in out and "baseline timed on 2 images x 3 models" in out
    speedup = re.search(r"\| speed-up vs baseline \| ([0-9.]+)x \| >= 3x \| (PASS|MISS) \|", out)
    assert speedup is not None, out
    assert float(speedup.group(1)) > 0
    assert re.search(r"\| beam 5: time / FLOP floor \| [0-9.]+x \| <= 1.6x \| (PASS|MISS) \|", out), out
    assert re.search(r"\| greedy, batch 4: time / FLOP floor \| [0-9.]+x \| <= 2x \| (PASS|MISS) \|", out), out
    assert re.search(r"\| greedy, batch 4: captions/s \| [0-9.]+ \|", out), out
    for row, target in (("ours vs batched transformers, beam 5", "| >= 1.6x"),
                        ("ours vs batched transformers, greedy", "| >= 1.6x"),
                        ("ours int8 vs batched transformers, beam 5", "| >= 2.5x")):
        assert re.search(re.escape(f"| {row} | ") + r"[0-9.]+x " + re.escape(target) + r" \| (PASS|MISS) \|", out), out
    assert re.search(r"\| batched transformers, beam 5: s/caption \| [0-9.]+ \|", out), out
    assert re.search(r"\| batch 1 \(3 models, one photo\), beam 5: s/photo ours / int8 / transformers \| "
                     r"[0-9.]+ / [0-9.]+ / [0-9.]+ \|", out), out
    assert "peak RSS" not in out  # --no-rss
    assert re.search(r"# CPU: .+ \| ISA: AVX2 (yes|no), AVX-512 (yes|no), VNNI (yes|no), AMX (yes|no)", out), out
    assert "best of 2 alternating rounds. CPU: " in out
    assert "torch kernels AVX2 | capped: ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2" in out  # re-run, capped
    for peer in ("onnxruntime", "onnxruntime-int8", "openvino"):  # installed by make setup
        assert re.search(re.escape(f"| peer {peer}, beam 5: s/caption | ") + r"[0-9.]+ \|", out), out
    assert re.search(r"\| ours vs fastest exact peer \((onnxruntime|openvino)\), beam 5 \| [0-9.]+x \| >= 1x \| "
                     r"(PASS|MISS) \|", out), out
    assert re.search(r"\| ours int8 vs onnxruntime-int8, beam 5 \| [0-9.]+x \| >= 1x \| (PASS|MISS) \|", out), out


@pytest.mark.parametrize("config", ["int8-beam", "onnxruntime-int8-beam"])
def test_rss_child_measures_one_configuration(tmp_path, config):
    """The peak-memory rows: a fresh process loads the zoo and runs one configuration (a peer's exports it)."""
    bench = load_bench("generation")
    tokenizer = bench.train_bpe_tokenizer(bench.TOKENIZER_TEXTS, vocab_size=300)
    bench.build_zoo(bench.quick_sizes(len(tokenizer)), 2, tmp_path / "zoo", tokenizer)
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--rss-child", config, "--zoo", str(tmp_path / "zoo"),
                           "--onnx-dir", str(tmp_path / "onnx"), "--quick", "--threads", "1", "--images", "2",
                           "--baseline-images", "1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    mib = float(re.search(r"peak RSS MiB: ([0-9.]+)", proc.stdout).group(1))
    assert 50 < mib < 100_000


def test_alternate_runs_every_measurement_once_per_round():
    bench = load_bench("generation")
    calls = []
    best = bench.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b"] * 3 and set(best) == {"a", "b"}
    line = bench.cpu_isa()
    assert "ISA: AVX2" in line and "AMX" in line


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU machine --device cuda is valid")
def test_device_cuda_without_a_gpu_says_so():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--device", "cuda"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--device cuda: no CUDA GPU is available here" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_arguments_exit_with_one_line():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--images", "2", "--baseline-images", "3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--baseline-images (3) cannot exceed --images (2)" in proc.stderr


def test_flop_count_follows_the_documented_formula():
    bench = load_bench("generation")
    captioner = tiny_captioner(prefix_length=3)  # CLIP d=32, 2 layers, image 32, patch 8; GPT-2 d=32, 2 layers, V=96
    d, layers, vocab, k = 32, 2, 96, 3
    assert bench.matrix_weights(captioner.decoder_blocks()) == layers * 12 * d * d

    parts = bench.decoder_flops_per_image(captioner, beams=5, new_tokens=4)
    w_dec, head = layers * 12 * d * d, 2 * d * vocab
    mapper = 2 * (24 * 60 + 60 * k * d)  # MLP 24 -> (24 + 96) // 2 = 60 -> K * d = 96
    assert parts["mapper + prefill"] == mapper + 2 * w_dec * k + layers * 4 * d * (k * (k + 1) / 2) + head
    assert parts["decode blocks"] == 5 * 3 * 2 * w_dec  # 3 steps (the prefill gives token 1) x 5 beams
    assert parts["decode LM head"] == 5 * 3 * head
    assert parts["decode attention"] == sum(5 * layers * 4 * d * (k + t) for t in (1, 2, 3))

    tokens, patches = 1 + (32 // 8) ** 2, (32 // 8) ** 2
    w_enc = layers * (4 * d * d + 2 * d * 64)  # q, k, v, out + an MLP of width 64 (the tiny CLIP's)
    encoder = (2 * 3 * 8 * 8 * 32 * patches + 2 * w_enc * tokens + layers * 4 * d * tokens ** 2
               + 2 * 32 * 24)  # patch conv + blocks + attention + projection to 24
    assert bench.encoder_flops_per_image(captioner) == encoder

    whole = bench.workload_flops(captioner, images=4, models=3, beams=5, new_tokens=4)
    assert whole["encoder"] == 4 * encoder  # encoded once, shared by the 3 models
    assert whole["decode LM head"] == 4 * 3 * parts["decode LM head"]
    floor, shaped = bench.floors(whole, peak=100.0, blocks_rate=50.0, head_rate=25.0)
    assert floor == sum(whole.values()) / 100e9
    assert shaped > floor
