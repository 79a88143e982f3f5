"""Protects `bench/app.py`, the Caption-click benchmark: it runs, builds tiny models when the zoo has none,
and prints the cold and warm timings of the app's caption handler (the real-size part is skipped here)."""

from __future__ import annotations

import re
from pathlib import Path

from helpers import load_bench

ROOT = Path(__file__).resolve().parents[2]


def test_bench_prints_cold_and_warm_times_for_tiny_models(tmp_path, capsys):
    bench = load_bench("app")
    args = ["--zoo", str(tmp_path / "no-zoo"), "--skip-real-size", "--repeats", "1", "--preset", "greedy"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "tiny random captioners" in out
    match = re.search(r"^demo +\| 8 images x 3 models, preset greedy \| cold +([\d.]+) s \| warm +([\d.]+) s \| "
                      r"+([\d.]+) ms per caption$", out, flags=re.M)
    assert match, out
    cold, warm, per_caption = map(float, match.groups())
    # warm is printed to 0.01 s and the per-caption figure to 0.1 ms: allow exactly those two roundings
    assert 0 < warm and 0 < cold and abs(per_caption - 1000 * warm / 24) <= 1000 * 0.005 / 24 + 0.05 + 1e-9
