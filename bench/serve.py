"""Benchmark: the REST API under concurrent load, with micro-batching on and off.

Run (from the repository root; about a minute on the demo zoo with the defaults, on a quiet machine):

    nice -n 10 .venv/bin/python bench/serve.py                       # 8 clients, demo zoo, preset consistent
    .venv/bin/python bench/serve.py --clients 16 --requests 4 --preset greedy
    .venv/bin/python bench/serve.py --max-batch-wait-ms 20            # the "on" setting to compare with off

For each mode, `python app.py` is started on a free loopback port (the served product itself, with
`--max-batch-wait-ms W` for "on" and `--max-batch-wait-ms 0` for "off"), warmed with three requests (models load),
then timed:
- single: `--single` requests one after another, nobody else asking: one request's latency (median);
- load: `--clients` threads, each posting `--requests` requests back to back (bounded by `--time-limit` s per
  mode: a client stops when it passes), each request one image of sample_images/ (base64 JSON) for every
  model (`--models`, default the zoo's first 3 usable entries), preset `--preset`.
Printed: requests done, throughput (requests/s over the load phase), p50/p95 latency, the single-request
latency, the mean number of requests per `caption_images` call during the load (from the server's /metrics), and the ratios the issue sets as targets (8 clients: on >= 2x the throughput of off, p95 (on)
within 2x of a single request). The load average is printed too: on a shared machine figures move by 10-30 %.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # tests/helpers.py: AppProcess (python app.py on a free port), tiny zoo
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import httpx  # noqa: E402

from captioning.images import find_images  # noqa: E402
from helpers import AppProcess, write_images, zoo_or_tiny_models  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks, as numpy's default."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def batch_counts(url: str) -> tuple[float, float]:
    """(caption_images calls, requests captioned) so far, from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=60).text
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    return values.get("captionzoo_batch_requests_count", 0.0), values.get("captionzoo_batch_requests_sum", 0.0)


def run_mode(zoo: Path, models: list[str], images: list[str], work: Path, *, wait_ms: float, clients: int,
             requests: int, single: int, preset: str, time_limit: float) -> dict[str, float]:
    """Start the app with this batching wait, measure single-request latency and then the load; stop it."""
    served = AppProcess(zoo, work / f"ratings-{wait_ms:g}.sqlite", work / "display", None,
                        "--max-batch-wait-ms", f"{wait_ms:g}")
    try:
        def body(i: int) -> dict:
            return {"images": [{"id": f"img-{i}", "data": images[i % len(images)]}], "models": models,
                    "caption_mode": preset}

        with httpx.Client(base_url=served.url, timeout=300) as http:
            for i in range(3):  # warm-up: the models load, the first requests after a start are slower
                answer = http.post("/api/v1/caption", json=body(i))
                if answer.status_code != 200:
                    raise RuntimeError(f"warm-up request failed ({answer.status_code}): {answer.text}")
            alone = []
            for i in range(single):
                start = time.perf_counter()
                http.post("/api/v1/caption", json=body(i)).raise_for_status()
                alone.append(time.perf_counter() - start)

        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(clients + 1)
        stop_at: list[float] = []

        def client(index: int) -> None:
            with httpx.Client(base_url=served.url, timeout=300) as http:
                barrier.wait()
                for k in range(requests):
                    if time.perf_counter() > stop_at[0]:
                        break
                    start = time.perf_counter()
                    answer = http.post("/api/v1/caption", json=body(index * requests + k))
                    took = time.perf_counter() - start
                    with lock:
                        if answer.status_code == 200:
                            latencies.append(took)
                        else:
                            failures.append(f"{answer.status_code}: {answer.text[:200]}")

        before = batch_counts(served.url)
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        stop_at.append(time.perf_counter() + time_limit)
        start = time.perf_counter()
        barrier.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        after = batch_counts(served.url)
    finally:
        served.kill()
    if failures:
        raise RuntimeError(f"{len(failures)} request(s) failed, e.g. {failures[0]}")
    return {"requests": len(latencies), "seconds": elapsed, "throughput": len(latencies) / elapsed,
            "p50": 1000 * percentile(latencies, 50), "p95": 1000 * percentile(latencies, 95),
            "single": 1000 * statistics.median(alone),
            "per_batch": (after[1] - before[1]) / max(after[0] - before[0], 1)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="REST API throughput and latency with micro-batching on and off.")
    parser.add_argument("--zoo", default=str(ROOT / "model_zoo"), help="zoo folder (default: model_zoo)")
    parser.add_argument("--models", type=int, default=3, help="models per request (default: 3)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    parser.add_argument("--requests", type=int, default=6, help="requests per client (default: 6)")
    parser.add_argument("--single", type=int, default=5, help="sequential requests for the single latency (default: 5)")
    parser.add_argument("--preset", default="consistent", help="decoding preset (default: consistent)")
    parser.add_argument("--max-batch-wait-ms", type=float, default=10.0, help="the 'on' setting (default: 10)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="most seconds of load per mode (default: 120)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not 1 <= args.clients <= 64 or not 1 <= args.requests <= 1000 or not 1 <= args.single <= 100:
        print("error: --clients must be in 1..64, --requests in 1..1000 and --single in 1..100", file=sys.stderr)
        return 2
    if args.max_batch_wait_ms <= 0 or args.time_limit <= 0:
        print("error: --max-batch-wait-ms (the 'on' setting) and --time-limit must be > 0", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        zoo, models, described = zoo_or_tiny_models(Path(args.zoo), work, args.models)
        paths = find_images(ROOT / "sample_images")[:16] or write_images(work / "images", 8)
        images = [base64.b64encode(Path(p).read_bytes()).decode() for p in paths]
        load = os.getloadavg()
        print(f"bench/serve.py: {args.clients} clients x {args.requests} requests, 1 image x {len(models)} models per "
              f"request, preset {args.preset}, {described}; load average {load[0]:.1f} at start")
        results = {}
        for label, wait in ((f"on ({args.max_batch_wait_ms:g} ms)", args.max_batch_wait_ms), ("off", 0.0)):
            results[label] = run_mode(zoo, models, images, work, wait_ms=wait, clients=args.clients,
                                      requests=args.requests, single=args.single, preset=args.preset,
                                      time_limit=args.time_limit)
        print(f"{'micro-batching':<16} | requests | throughput req/s |   p50 ms |   p95 ms | single ms | "
              "requests per batch")
        for label, r in results.items():
            print(f"{label:<16} | {r['requests']:>8} | {r['throughput']:>16.2f} | {r['p50']:>8.1f} | {r['p95']:>8.1f} | "
                  f"{r['single']:>9.1f} | {r['per_batch']:>18.2f}")
        on, off = results[f"on ({args.max_batch_wait_ms:g} ms)"], results["off"]
        print(f"on/off throughput x{on['throughput'] / off['throughput']:.2f} (target >= 2) | p95 on / single on "
              f"x{on['p95'] / on['single']:.2f}, p95 on / single off x{on['p95'] / off['single']:.2f} (target <= 2)")
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
