"""Micro-batching: concurrent caption requests for the same models and decoding settings are merged into one
`captioning.pipeline.caption_images` call, so that under load the decoder runs on a batch of images instead of
one request after another.

One worker thread takes the oldest waiting request and then waits at most `max_wait_ms` (counted from that
request's arrival, or from the end of the previous batch when it arrived during it) for more requests with the
same key (the models' paths and weights hashes, and the
`GenerationSettings`), up to `max_batch` images in all; requests with another key wait for a later round, in
arrival order. The batch's results are split back to each request's future. `max_wait_ms=0` turns merging
off: every request is captioned alone, one after another (what the server did without batching).

Greedy and beam captions do not depend on the batch they were made in; sampled ones (the *_diverse presets)
do, since one seeded generator draws for the whole batch: the same request alone gives the CLI's captions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from PIL import Image

from captioning.generation import GenerationSettings
from captioning.pipeline import CaptionResult, caption_images
from captioning.zoo import ZooModel

from .metrics import ServerMetrics

CaptionFn = Callable[..., list[CaptionResult]]  # caption_images' signature


@dataclass
class _Request:
    key: tuple
    models: Sequence[ZooModel]
    images: list[Image.Image]
    names: list[str]
    settings: GenerationSettings
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


def batch_key(models: Sequence[ZooModel], settings: GenerationSettings) -> tuple:
    """Requests with equal keys may share one caption_images call."""
    return tuple((str(m.path), m.name, m.weights_hash) for m in models), settings


class MicroBatcher:
    """Merges concurrent requests (see the module doc); `submit` is thread-safe and returns a Future."""

    def __init__(self, *, max_wait_ms: float = 10.0, max_batch: int = 32, metrics: ServerMetrics | None = None,
                 caption: CaptionFn = caption_images):
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0 (0 = no merging), got {max_wait_ms}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 image, got {max_batch}")
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch = max_batch
        self.metrics = metrics
        self._caption = caption
        self._waiting: list[_Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self._free_since = time.monotonic()  # when the worker last finished a batch
        self._worker = threading.Thread(target=self._run, name="caption-micro-batcher", daemon=True)
        self._worker.start()

    def submit(self, models: Sequence[ZooModel], images: list[Image.Image], names: list[str],
               settings: GenerationSettings) -> Future:
        """Caption `images` with `models`; the future's result is this request's CaptionResults, in
        caption_images' order (image by image, then model by model)."""
        if not models or not images or len(images) != len(names):
            raise ValueError("submit needs at least one model, at least one image and one name per image")
        request = _Request(batch_key(models, settings), list(models), list(images), list(names), settings)
        with self._cond:
            if self._closed:
                raise RuntimeError("the micro-batcher is closed")
            self._waiting.append(request)
            self._set_depth()
            self._cond.notify_all()
        return request.future

    def close(self) -> None:
        """Stop the worker after the batch in progress; requests still waiting fail with RuntimeError."""
        with self._cond:
            self._closed = True
            left, self._waiting = self._waiting, []
            self._set_depth()
            self._cond.notify_all()
        for request in left:
            request.future.set_exception(RuntimeError("the server is shutting down"))
        self._worker.join(timeout=30)

    # -- worker ----------------------------------------------------------------------------------------------

    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.set(sum(len(r.images) for r in self._waiting))

    def _take_batch(self) -> list[_Request] | None:
        """The next batch: the oldest request and the same-key requests that arrive within max_wait of it."""
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            first = self._waiting[0]
            if self.max_wait == 0:  # merging off: one request per call, as without a batcher
                self._waiting.pop(0)
                self._set_depth()
                return [first]
            # The window opens when the request arrives, or when the worker got free if it came in meanwhile:
            # the clients of the batch just finished send their next requests at about that moment, and
            # waiting for them keeps batches whole instead of alternating between two halves.
            deadline = max(first.arrived, self._free_since) + self.max_wait
            while True:
                batch, images = [], 0
                for request in self._waiting:
                    if request.key == first.key and (not batch or images + len(request.images) <= self.max_batch):
                        batch.append(request)
                        images += len(request.images)
                    if images >= self.max_batch:
                        break
                remaining = deadline - time.monotonic()
                if images >= self.max_batch or remaining <= 0 or self._closed:
                    break
                self._cond.wait(timeout=remaining)
            taken = {id(r) for r in batch}
            self._waiting = [r for r in self._waiting if id(r) not in taken]
            self._set_depth()
            return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            for request in batch:  # a request whose client went away needs no captions
                request.future.set_running_or_notify_cancel()
            live = [r for r in batch if not r.future.cancelled()]
            if live:
                self._caption_batch(live)
            self._free_since = time.monotonic()

    def _caption_batch(self, batch: list[_Request]) -> None:
        first = batch[0]
        images = [image for r in batch for image in r.images]
        # Names only label results inside this call; prefixing the request's position keeps them unique.
        names = [f"{i}/{name}" for i, r in enumerate(batch) for name in r.names]
        if self.metrics is not None:
            self.metrics.batch_images.observe(len(images))
            self.metrics.batch_requests.observe(len(batch))
        try:
            results = self._caption(first.models, images, names=names, settings=first.settings,
                                    batch_size=max(len(images), 1))
        except BaseException as e:  # the error belongs to every request of the batch; the worker goes on
            for r in batch:
                r.future.set_exception(e)
            return
        per_image = len(first.models)
        start = 0
        for r in batch:
            count = len(r.images) * per_image
            mine = results[start:start + count]
            start += count
            for result, name in zip(mine, (n for n in r.names for _ in range(per_image))):
                result.image_name = name
            r.future.set_result(mine)
