"""Protects `bench/fast_path_quality.py`: it runs on the demo zoo and a fresh shapes set and prints its table."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quality_bench_prints_the_table():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "fast_path_quality.py"), "--images", "6",
                           "--threads", "1", "--max-new-tokens", "12"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = re.findall(r"^\| (shapes-[a-z0-9-]+) \| ([0-9.]+)% \| ([0-9.]+) \| ([0-9.]+) \| ([+-][0-9.]+) \| "
                      r"(PASS|MISS) \|", proc.stdout, flags=re.M)
    assert {r[0] for r in rows} == {p.name for p in (ROOT / "model_zoo").iterdir() if p.is_dir()}
    for _, same, exact, fast, points, _ in rows:
        assert 0 <= float(same) <= 100 and 0 <= float(exact) <= 1 and 0 <= float(fast) <= 1
        assert abs(float(points) - 100 * (float(fast) - float(exact))) < 0.06


def test_missing_zoo_is_one_line():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "fast_path_quality.py"), "--zoo", "no-such-zoo"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--zoo no-such-zoo: no such folder" in proc.stderr
    assert "Traceback" not in proc.stderr
