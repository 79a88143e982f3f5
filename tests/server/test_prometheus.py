"""A real Prometheus scrapes `python app.py` on loopback: the app's series arrive with sensible values.

Debian's `prometheus` binary (`make prometheus` installs it) runs with its own data folder and a free port; it
scrapes the app every second, and the test asks Prometheus' HTTP API (/api/v1/query) for the series.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from helpers import ROOT, AppProcess, build_tiny_zoo, free_port, write_images

PROMETHEUS = Path("/usr/bin/prometheus")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not PROMETHEUS.exists(), reason=f"{PROMETHEUS} is not installed; run `make prometheus` (apt-get install "
                                    "prometheus) to run the real-Prometheus test")]


def query(prometheus: str, expr: str) -> list[dict]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def wait_for(prometheus: str, expr: str, ok, timeout: float = 90.0) -> list[dict]:
    """Query until `ok(result)` holds (the next scrapes bring the values); fails with the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = query(prometheus, expr)
        if result and ok(result):
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus query {expr!r} still gives {result} after {timeout:.0f} s")
        time.sleep(0.5)


def value(result: list[dict]) -> float:
    return float(result[0]["value"][1])


def test_prometheus_scrapes_the_app(tmp_path):
    zoo = build_tiny_zoo(tmp_path / "zoo", ["alpha", "beta"])
    served = AppProcess(zoo, tmp_path / "ratings.sqlite", tmp_path / "display", None, "--max-batch-wait-ms", "50")
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: caption-zoo\n    metrics_path: /metrics\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{served.port}']\n")
    log = open(tmp_path / "prometheus.log", "w")
    prometheus = subprocess.Popen(
        [str(PROMETHEUS), f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{prom_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus did not become ready in 60 s"
            time.sleep(0.3)

        images = write_images(tmp_path / "images", 3, seed=5)
        body = {"images": [{"id": p.name, "data": base64.b64encode(p.read_bytes()).decode()} for p in images],
                "models": ["alpha", "beta"], "caption_mode": "greedy"}
        with httpx.Client(base_url=served.url, timeout=120) as http:
            for _ in range(2):
                assert http.post("/api/v1/caption", json=body).status_code == 200
            assert http.post("/api/v1/caption", json={**body, "models": ["nope"]}).status_code == 404

        assert value(wait_for(url, 'up{job="caption-zoo"}', lambda r: value(r) == 1)) == 1
        captions = wait_for(url, "captionzoo_captions_generated_total", lambda r: len(r) == 2)
        assert {r["metric"]["model"]: float(r["value"][1]) for r in captions} == {"alpha": 6.0, "beta": 6.0}
        tokens = query(url, "captionzoo_tokens_generated_total")
        assert {r["metric"]["model"] for r in tokens} == {"alpha", "beta"} and all(
            float(r["value"][1]) > 0 for r in tokens)
        durations = query(url, 'captionzoo_request_duration_seconds_count{endpoint="/api/v1/caption"}')
        # the refused request named no loaded model: model="" (which Prometheus stores as no label)
        assert {r["metric"].get("model", ""): float(r["value"][1]) for r in durations} == {
            "alpha": 2.0, "beta": 2.0, "": 1.0}
        assert value(query(url, "captionzoo_batch_images_sum")) == 6  # two requests of three images
        assert value(query(url, "captionzoo_batch_requests_count")) == 2
        assert value(query(url, 'captionzoo_errors_total{kind="unknown_model"}')) == 1
        assert value(query(url, "captionzoo_models_loaded")) == 2
        assert value(query(url, "captionzoo_queue_depth")) == 0
        ratings = query(url, "captionzoo_ratings_saved_total")
        assert {r["metric"]["source"] for r in ratings} == {"page", "api", "pairwise"}
        assert all(float(r["value"][1]) == 0 for r in ratings)
        assert value(query(url, 'process_resident_memory_bytes{job="caption-zoo"}')) > 10e6

        # Every query of the Grafana dashboard is valid PromQL here and finds data (its variables filled in),
        # once two scrapes hold the series (rate() needs two samples).
        wait_for(url, "rate(captionzoo_captions_generated_total[1m])", lambda r: len(r) == 2)
        dashboard = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "caption-zoo.json").read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = (target["expr"].replace("$__rate_interval", "1m").replace("$job", "caption-zoo")
                        .replace("$model", ".*"))
                found = query(url, expr)
                assert found, (panel["title"], expr)
    finally:
        prometheus.terminate()
        try:
            prometheus.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prometheus.kill()
        log.close()
        served.kill()
