"""Protects `bench/batch_engines.py`: in `--quick` mode (tiny models, 8 images, a local Ray of 2 CPUs) it runs
both engines on the same photos, finds the same captions and prints images/s of each and their ratio."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "batch_engines.py"


def run(*args):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_quick_run_prints_both_rates_and_the_ratio():
    proc = run("--quick", "--num-cpus", "2", "--threads", "1", "--max-new-tokens", "6")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert "8 images x 3 models (tiny random captioners" in out
    local = re.search(r"^local: ([0-9.]+) s = ([0-9.]+) images/s$", out, flags=re.M)
    ray = re.search(r"^ray: +([0-9.]+) s = ([0-9.]+) images/s \(Ray started in [0-9.]+ s", out, flags=re.M)
    ratio = re.search(r"^ray / local: ([0-9.]+)x \(same captions\)$", out, flags=re.M)
    assert local and ray and ratio, out
    assert float(local.group(2)) > 0 and float(ray.group(2)) > 0
    assert abs(float(ratio.group(1)) - float(ray.group(2)) / float(local.group(2))) < 0.02


def test_bad_arguments_exit_with_one_line():
    proc = run("--quick", "--images", "0")
    assert proc.returncode == 2 and "--images must be >= 1, got 0" in proc.stderr
