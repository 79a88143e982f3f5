"""Protects the rating screen as a person first sees it, in Debian's Chromium (1400 x 900) driven by Playwright.

10 sample images x 4 models captioned in one click: right after Caption the inputs have folded away and the
first unrated caption and the progress bar are on screen without scrolling; images are at least 320 px wide
with their file name below, nothing drawn over the picture; a click on an image zooms it; a rating can be
undone (button and Ctrl+Z) and cleared; "u" jumps to the next unrated caption. The screenshot of the rating
screen goes to test-artifacts/rating-screen.png (`make screenshot` copies it into docs/ for the README).
"""

from __future__ import annotations

import time

import pytest

from helpers import (
    ARTIFACTS,
    browser_test_marks,
    build_tiny_zoo,
    fill,
    focus_state,
    serve_in_thread,
    wait_until,
    write_images,
)
from page.compare import grid_view

MODELS = ["alpha", "beta", "gamma", "delta"]
SET, RATER = "screen-set", "rita"
WIDTH, HEIGHT = 1400, 900

pytestmark = browser_test_marks()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("rating-screen")
    zoo = build_tiny_zoo(root / "zoo", MODELS)
    write_images(root / "samples", 10, seed=3)
    yield from serve_in_thread(zoo, root)


def in_view(box: dict | None) -> bool:
    return bool(box) and box["y"] >= 0 and box["y"] + box["height"] <= HEIGHT and box["x"] + box["width"] <= WIDTH


def open_rating_screen(page, url: str, samples: list[str], models: list[str], set_name: str, rater: str) -> float:
    """Open the page, name rater and set, tick the sample images and models, click Caption and wait for the
    grid. Returns how far the click on Caption scrolled the window. (docs/screenshot.py uses it too.)"""
    page.set_default_timeout(60_000)
    page.goto(url)
    page.wait_for_selector("#session-line")
    fill(page, "rater", rater)
    fill(page, "set-name", set_name)
    for name in samples:
        page.locator("#samples").get_by_text(name, exact=True).click()
    for name in models:
        page.locator("#models").get_by_text(f"{name} ·").click()
    page.locator("#caption-btn").click()
    scrolled = page.evaluate("() => window.scrollY")  # as far as the click on Caption took the window
    wait_until(lambda: "Captioned" in page.locator("#caption-status").inner_text(), "captioning", timeout=600)
    page.wait_for_selector(f"#rate-0-{len(models) - 1}")
    wait_until(lambda: f"0 of {len(samples) * len(models)} rated" in page.locator("#progress").inner_text(),
               "the progress bar")
    time.sleep(1)  # let the inputs fold and the focus settle
    return scrolled


def test_caption_10_images_4_models_then_rate_undo_clear(server, browser):
    demo = server
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    scrolled = open_rating_screen(page, demo.local_url, [f"img3_{i}.png" for i in range(10)], MODELS, SET, RATER)

    # Without any more scrolling: the first unrated caption (with its rating buttons) and the progress are in
    # view.
    assert page.evaluate("() => window.scrollY") <= scrolled
    assert in_view(page.locator("#cell-0-0").bounding_box()), page.locator("#cell-0-0").bounding_box()
    assert in_view(page.locator("#rate-0-0").bounding_box())
    assert in_view(page.locator("#progress").bounding_box())
    assert not page.locator("#uploads").is_visible()  # the inputs folded into one line
    assert "New images" in page.locator("#setup").inner_text()
    # The first caption has the keyboard focus, so 0/1/2 rate it straight away.
    wait_until(lambda: page.evaluate("() => document.activeElement && document.activeElement.id") == "cell-0-0",
               "focus on the first unrated caption", state=lambda: focus_state(page))

    # Images at least 320 px wide, the file name below the picture, nothing drawn over it.
    image = page.locator("#image-0 img").bounding_box()
    assert image["width"] >= 320, image
    name = page.locator("#file-name-0").bounding_box()
    assert name["y"] >= image["y"] + image["height"] - 1 and "img3_0.png" in page.locator("#file-name-0").inner_text()
    on_top = page.evaluate("""() => { const img = document.querySelector('#image-0 img'); const r =
        img.getBoundingClientRect(); const points = [[0.5, 0.5], [0.1, 0.1], [0.9, 0.1], [0.1, 0.9], [0.9, 0.9],
        [0.5, 0.95]]; return points.map(([fx, fy]) => document.elementFromPoint(r.x + fx * r.width,
        r.y + fy * r.height) === img); }""")
    assert all(on_top), on_top
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "rating-screen.png"))

    # Click to zoom, Escape closes.
    page.locator("#image-0 img").click()
    page.wait_for_selector("#zoom-overlay img")
    assert page.locator("#zoom-overlay img").bounding_box()["width"] > image["width"]
    page.keyboard.press("Escape")
    wait_until(lambda: page.locator("#zoom-overlay").count() == 0, "the zoom to close")

    view = grid_view(demo.ctx, {"eval_set": SET, "rater": RATER, "page": 0})
    first = (view.rows[0].image_hash, view.rows[0].cells[0].model_name)

    def stored() -> dict[tuple[str, str], int]:
        table = demo.ctx.store.ratings(SET, RATER)
        return {(r.image_hash, r.model_name): int(r.score) for r in table.itertuples()}

    # Rate, then Undo with the button: the score is gone from the store and from the grid.
    page.locator("#rate-0-0").get_by_text("2 · ").click()
    wait_until(lambda: stored() == {first: 2}, "the first score")
    wait_until(lambda: "1 of 40 rated" in page.locator("#progress").inner_text(), "progress 1 of 40")
    page.locator("#undo-btn").click()
    wait_until(lambda: stored() == {}, "undo")
    wait_until(lambda: "0 of 40 rated" in page.locator("#progress").inner_text(), "progress back to 0")
    wait_until(lambda: not page.locator("#rate-0-0 input[value='2']").is_checked(), "the radio emptied")

    # Change a score and undo it with Ctrl+Z: the previous score comes back.
    page.locator("#rate-0-0").get_by_text("1 · ").click()
    wait_until(lambda: stored() == {first: 1}, "score 1")
    page.locator("#rate-0-0").get_by_text("0 · ").click()
    wait_until(lambda: stored() == {first: 0}, "score 0")
    page.locator("#cell-0-0").focus()
    page.keyboard.press("Control+z")
    wait_until(lambda: stored() == {first: 1}, "Ctrl+Z puts back 1")
    wait_until(lambda: page.locator("#rate-0-0 input[value='1']").is_checked(), "the radio shows 1 again")

    # Clear: the card's Clear button removes the score.
    page.locator("#clear-0-0").click()
    wait_until(lambda: stored() == {}, "clear")
    wait_until(lambda: "Cleared" in page.locator("#rate-status").inner_text(), "the confirmation")
    wait_until(lambda: not page.locator("#rate-0-0 input[value='1']").is_checked(), "the radio emptied")
    time.sleep(0.5)  # the grid is redrawn

    # "u" goes to the next unrated caption: rate the first two, then u lands on the third.
    page.locator("#cell-0-0").focus()
    page.keyboard.press("2")
    page.keyboard.press("1")
    wait_until(lambda: len(stored()) == 2, "two scores", timeout=15)
    page.locator("#cell-0-0").focus()
    page.keyboard.press("u")
    wait_until(lambda: page.evaluate("() => document.activeElement.id") == "cell-0-2", "u: the next unrated",
               state=lambda: focus_state(page))
    page.close()
