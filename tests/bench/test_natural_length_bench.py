"""Protects `bench/natural_length.py`: it runs (tiny GPT-2), gives the same captions as transformers when captions
end at their own EOS, at lengths that differ, and prints its table."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_prints_the_table_with_the_same_captions():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "natural_length.py"), "--quick", "--repeats", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "# CPU: " in out and "ISA: AVX2" in out
    for label in ("greedy", "beam 5"):
        row = re.search(re.escape(f"| {label} | ") + r"(\d+) / (\d+) / (\d+) \| (\d+)/(\d+) \| [0-9.]+ \| [0-9.]+ \| "
                        r"[0-9.]+x \|", out)
        assert row is not None, out
        shortest, _, longest, same, total = map(int, row.groups())
        assert shortest < longest <= 30  # the captions end at different steps
        assert same == total == 16  # ours and transformers agree on every caption
