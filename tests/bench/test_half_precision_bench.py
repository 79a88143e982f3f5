"""Protects `bench/half_precision.py`: it runs end to end (`--quick`: one demo entry, 20 fresh images) and prints
one row per model with the half-size copies and what each ran in, without writing into the zoo."""

import os
import re
import subprocess
import sys

from helpers import ROOT


def test_quick_run_prints_the_rows(tmp_path):
    before = sorted(p.name for p in (ROOT / "model_zoo").iterdir())
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "half_precision.py"), "--quick"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^\| (\S+) \| [0-9.]+ \| ([0-9.]+) \| [0-9.]+ \| [0-9.]+ \| (\w+) \| ([0-9.]+)% \|", proc.stdout,
                      re.M)
    assert len(rows) == 3, proc.stdout
    (parent, one, _, same), (fp16, fp16_ratio, fp16_runs, _), (bf16, _, _, _) = rows
    assert one == "1.000" and same == "100.0"
    assert fp16 == parent + "-fp16" and bf16 == parent + "-bf16"
    assert 0.45 < float(fp16_ratio) < 0.56 and fp16_runs == "float32"
    assert sorted(p.name for p in (ROOT / "model_zoo").iterdir()) == before
