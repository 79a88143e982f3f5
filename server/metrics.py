"""The server's Prometheus metrics (prometheus-client), in one registry per app, and the text `GET /metrics` serves.

Series (all prefixed `captionzoo_`):
    request_duration_seconds{endpoint, model}   histogram; a caption request for two models counts under both
    captions_generated_total{model}             captions returned by the API
    tokens_generated_total{model}               tokens in those captions (the model's tokenizer, no special tokens)
    batch_images / batch_requests               histograms: images and requests per `caption_images` call
    queue_depth                                 images waiting for the micro-batcher (not yet being captioned)
    models_loaded                               zoo entries held in memory by the model cache
    ratings_saved_total{source}                 ratings and votes saved: page (grid), api (gr.api rate), pairwise
    errors_total{kind}                          API errors by kind (the `kind` of the JSON error)
plus the process_* and python_* series of prometheus-client's default collectors.

A registry per app (not prometheus-client's global one) so that tests and benchmarks can start several apps in
one process without "Duplicated timeseries" errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

PREFIX = "captionzoo"
# Latency buckets from a tiny model on one image (milliseconds) to a big batch on CPU (tens of seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
RATING_SOURCES = ("page", "api", "pairwise")


class ServerMetrics:
    """Every series the server exports, registered in its own `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process_metrics: bool = True):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        if process_metrics:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.request_duration = Histogram(f"{PREFIX}_request_duration_seconds", "API request duration, by endpoint "
                                          "and model (a request for several models counts under each)",
                                          ["endpoint", "model"], buckets=DURATION_BUCKETS, registry=r)
        self.captions = Counter(f"{PREFIX}_captions_generated", "Captions returned by the API", ["model"], registry=r)
        self.tokens = Counter(f"{PREFIX}_tokens_generated", "Tokens in the captions returned by the API", ["model"],
                              registry=r)
        self.batch_images = Histogram(f"{PREFIX}_batch_images", "Images per caption_images call of the micro-batcher",
                                      buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram(f"{PREFIX}_batch_requests", "Requests merged into one caption_images call",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Images waiting for the micro-batcher", registry=r)
        self.models_loaded = Gauge(f"{PREFIX}_models_loaded", "Zoo entries held in memory", registry=r)
        self.ratings_saved = Counter(f"{PREFIX}_ratings_saved", "Ratings and pairwise votes saved", ["source"],
                                     registry=r)
        self.errors = Counter(f"{PREFIX}_errors", "API errors, by kind", ["kind"], registry=r)
        for source in RATING_SOURCES:  # present at 0 from the start, so rate() and increase() see the first one
            self.ratings_saved.labels(source=source)

    def watch_models(self, count: Callable[[], int]) -> None:
        """models_loaded reads `count()` at each scrape (e.g. `len(model_cache)`)."""
        self.models_loaded.set_function(lambda: float(count()))

    @contextmanager
    def timed(self, endpoint: str) -> Iterator[list[str]]:
        """Time a request; the caller appends the model names it concerns to the yielded list (none: model="")."""
        models: list[str] = []
        start = time.perf_counter()
        try:
            yield models
        finally:
            elapsed = time.perf_counter() - start
            for model in models or [""]:
                self.request_duration.labels(endpoint=endpoint, model=model).observe(elapsed)

    def rating_saved(self, source: str) -> None:
        self.ratings_saved.labels(source=source).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, as `GET /metrics` returns them."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
