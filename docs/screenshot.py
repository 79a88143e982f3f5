"""Makes docs/rating-screen.png, the README's picture of the rating screen (`make screenshot`).

It runs the rating-screen browser test's own steps (tests/app/test_rating_screen_e2e.py: `open_rating_screen`)
on the bundled demo zoo and sample images instead of tiny random models: the app served in this process,
Debian's Chromium at 1400 x 900, the sample images captioned by every demo model, a few captions rated.
Offline, like the app; about a minute on 2 cores.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "app")]
for key, value in {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                   "OMP_NUM_THREADS": "1"}.items():
    os.environ.setdefault(key, value)

from playwright.sync_api import sync_playwright  # noqa: E402
from test_rating_screen_e2e import HEIGHT, WIDTH, open_rating_screen  # noqa: E402

from captioning.zoo import list_zoo  # noqa: E402
from helpers import CHROMIUM, CHROMIUM_ARGS, serve_in_thread  # noqa: E402

OUT = ROOT / "docs" / "rating-screen.png"


def main() -> int:
    if not CHROMIUM.exists():
        print(f"error: {CHROMIUM} is missing; run `make browser` first", file=sys.stderr)
        return 2
    zoo = ROOT / "model_zoo"
    models = [r["name"] for r in list_zoo(zoo) if "error" not in r]
    samples = sorted(p.name for p in (ROOT / "sample_images").iterdir() if p.suffix in (".jpg", ".png"))
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        (root / "samples").symlink_to(ROOT / "sample_images")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            for demo in serve_in_thread(zoo, root):
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                open_rating_screen(page, demo.local_url, samples, models, "demo-set", "you")
                for j, key in enumerate("00"):  # two captions rated (shapes captions of a photo: unrelated), so the progress bar shows progress
                    page.locator(f"#cell-0-{j}").focus()
                    page.keyboard.press(key)
                page.wait_for_timeout(1500)
                page.locator("#cell-0-2").focus()
                page.wait_for_timeout(500)
                page.screenshot(path=str(OUT))
                page.close()
            browser.close()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
