"""Protects `bench/image_memory.py`, the 50-megapixel memory benchmark: in `--quick` mode (2 images of
2000x1500) it writes its photos, runs each variant in its own process and prints the markdown table."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from helpers import load_bench

ROOT = Path(__file__).resolve().parents[2]


def test_quick_bench_writes_photos_and_prints_the_memory_table(tmp_path, capsys):
    bench = load_bench("image_memory")
    photos = tmp_path / "photos"
    args = ["--quick", "--variants", "ab", "--dir", str(photos), "--zoo", str(tmp_path / "no-zoo")]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "2 JPEGs of 2000x1500" in out and "tiny random captioners" in out
    assert "| variant | what | base RSS MB | peak RSS MB | peak - base MB | retained RSS MB | seconds | note |" in out
    for variant in "ab":
        row = re.search(rf"^\| {variant} \| [^|]+ \| (\d+) \| (\d+) \| (-?\d+) \| (\d+) \| ([\d.]+) \| 6 captions;",
                        out, flags=re.M)
        assert row, out
        base, peak, delta, retained = map(int, row.groups()[:4])
        assert base > 0 and peak > 0 and retained > 0 and abs(peak - base - delta) <= 1
    assert "min_side 32" in out  # the tiny models' CLIP processor reads 32 px

    written = sorted(photos.glob("*.jpg"))
    assert len(written) == 2
    with Image.open(written[0]) as photo:
        assert photo.size == (2000, 1500)
