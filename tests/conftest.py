"""Test-wide settings: offline, one torch thread, and small shared fixtures (one headless Chromium per browser
test module).

The machine is shared and has two cores; torch with two threads oversubscribes badly when anything else
runs, so every test process uses one thread. Nothing is ever downloaded.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import torch

from helpers import CHROMIUM, CHROMIUM_ARGS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, for one test module (Playwright drives it; it cannot download its own)."""
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
