"""Protects `bench/serve.py`, the REST API load benchmark: on a tiny zoo with 2 clients it starts the app with
micro-batching on and off, and prints figures that parse (no timing is asserted: the machine is shared)."""

from __future__ import annotations

import re

from helpers import load_bench

ROW = r"^{label} +\| +(\d+) \| +([\d.]+) \| +([\d.]+) \| +([\d.]+) \| +([\d.]+) \| +([\d.]+)$"


def test_bench_prints_throughput_and_latency_with_batching_on_and_off(tmp_path, capsys):
    bench = load_bench("serve")
    args = ["--zoo", str(tmp_path / "no-zoo"), "--models", "2", "--clients", "2", "--requests", "2",
            "--single", "2", "--preset", "greedy", "--max-batch-wait-ms", "20"]
    assert bench.main(args) == 0
    out = capsys.readouterr().out
    assert "2 clients x 2 requests, 1 image x 2 models per request, preset greedy, tiny random captioners" in out
    rows = {}
    for label in (r"on \(20 ms\)", "off"):
        match = re.search(ROW.format(label=label), out, flags=re.M)
        assert match, out
        requests, throughput, p50, p95, single, per_batch = match.groups()
        assert int(requests) == 4 and float(throughput) > 0 and 0 < float(p50) <= float(p95) and float(single) > 0
        rows[label] = float(per_batch)
    assert rows["off"] == 1.0 and 1.0 <= rows[r"on \(20 ms\)"] <= 2.0  # off: one request per caption_images call
    assert re.search(r"^on/off throughput x[\d.]+ \(target >= 2\) \| p95 on / single on x[\d.]+, p95 on / single off "
                     r"x[\d.]+ \(target <= 2\)$", out, flags=re.M), out


def test_bench_refuses_unbounded_runs(capsys):
    bench = load_bench("serve")
    assert bench.main(["--clients", "0"]) == 2
    assert bench.main(["--max-batch-wait-ms", "0"]) == 2
    assert "--clients must be in 1..64" in capsys.readouterr().err
