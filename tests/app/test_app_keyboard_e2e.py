"""Protects rating by keyboard and the grid's layout with many models, in Debian's Chromium driven by Playwright.

A 6-model set with 3 images on pages of 2 rows: the legend is on the page; with a caption card in focus (a
visible focus ring) "2" saves the score through the same path as a click and moves focus to the next
caption; arrows move between captions and rows, "0" rates again, "n" / "p" turn pages. Each image row keeps
its 6 captions beside the image on one line, and a truncated model name is in full in the label's tooltip.
Then one vote on the Pairwise tab is stored. Screenshot: test-artifacts/grid-6-models.png.
Skipped, with the reason, when /usr/bin/chromium is not installed (`make browser` installs it).
"""

from __future__ import annotations

import re
import time

import pytest

from helpers import ARTIFACTS, browser_test_marks, build_tiny_zoo, fill, serve_in_thread, wait_until, write_images
from page import compare as page_compare

MODELS = ["alpha", "beta", "gamma", "delta-captioner-with-a-rather-long-name", "epsilon", "zeta"]
SET, RATER = "keys-set", "kim"
ROWS_PER_PAGE = 2  # 3 images make two pages, so page keys can be tried

pytestmark = browser_test_marks()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-keys")
    zoo = build_tiny_zoo(root / "zoo", MODELS)
    write_images(root / "samples", 3, seed=5)
    with pytest.MonkeyPatch.context() as mp:  # smaller pages; the page reads the grid's default page size
        mp.setattr(page_compare.grid_view, "__defaults__", (ROWS_PER_PAGE,))
        yield from serve_in_thread(zoo, root)






def focused(page) -> str:
    return page.evaluate("() => document.activeElement ? document.activeElement.id : ''")


def test_rate_by_keyboard_six_model_layout_and_a_pairwise_vote(server, browser):
    demo = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)

    page.goto(demo.local_url)
    page.wait_for_selector("#session-line")
    legend = page.locator("#keys-legend").inner_text()
    assert "0 / 1 / 2" in legend and "PageDown" in legend

    fill(page, "rater", RATER)
    fill(page, "set-name", SET)
    for i in range(3):
        page.locator("#samples").get_by_text(f"img5_{i}.png").click()
    for name in MODELS:
        page.locator("#models").get_by_text(re.compile(rf"^{re.escape(name)} ·")).click()
    page.locator("#caption-btn").click()
    wait_until(lambda: "Captioned" in page.locator("#caption-status").inner_text(), "captioning")
    page.wait_for_selector("#rate-1-5")
    assert "Page 1 of 2" in page.locator("#page-line").inner_text()
    view = page_compare.grid_view(demo.ctx, {"eval_set": SET, "rater": RATER, "page": 0})
    model = {(i, j): cell.model_name for i, row in enumerate(view.rows) for j, cell in enumerate(row.cells)}

    def stored() -> dict[tuple[str, str], int]:
        table = demo.ctx.store.ratings(SET, RATER)
        return {(r.image_hash, r.model_name): int(r.score) for r in table.itertuples()}

    # Click the first caption: a visible focus ring; "2" saves it and focus moves to the next caption.
    page.locator("#caption-0-0 textarea").scroll_into_view_if_needed()
    box = page.locator("#caption-0-0 textarea").bounding_box()  # a click on the caption text (a disabled
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # box) focuses its card
    assert focused(page) == "cell-0-0"
    ring = page.evaluate("() => { const s = getComputedStyle(document.activeElement); "
                         "return [s.outlineStyle, s.outlineWidth]; }")
    assert ring == ["solid", "3px"]
    page.keyboard.press("2")
    wait_until(lambda: stored() == {(view.rows[0].image_hash, model[(0, 0)]): 2}, "the first score")
    assert focused(page) == "cell-0-1"
    assert page.locator("#rate-0-0 input[value='2']").is_checked()  # the radio shows it, as after a click
    wait_until(lambda: "Saved 2" in page.locator("#rate-status").inner_text(), "the confirmation")

    # Arrows: down to the next image row (same column), left; "0" rates that caption and moves on.
    page.keyboard.press("ArrowDown")
    assert focused(page) == "cell-1-1"
    page.keyboard.press("ArrowLeft")
    assert focused(page) == "cell-1-0"
    page.keyboard.press("0")
    wait_until(lambda: stored().get((view.rows[1].image_hash, model[(1, 0)])) == 0, "the second score")
    assert focused(page) == "cell-1-1"
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowRight")
    assert focused(page) == "cell-0-2"
    assert len(stored()) == 2  # moving never rates
    page.locator("#cell-0-5").focus()
    page.keyboard.press("1")  # the last caption of a row: focus goes on to the next row's first
    wait_until(lambda: stored().get((view.rows[0].image_hash, model[(0, 5)])) == 1, "the third score")
    assert focused(page) == "cell-1-0"

    # Layout: each image row keeps its six captions on one line beside its image, rows do not overlap.
    # (Keys scroll a row's strip sideways to the caption in focus; measure each strip from its start.)
    page.evaluate("() => document.querySelectorAll('.caption-strip').forEach((s) => { s.scrollLeft = 0; })")
    for i in range(2):
        image = page.locator(f"#image-{i}").bounding_box()
        boxes = [page.locator(f"#cell-{i}-{j}").bounding_box() for j in range(6)]
        assert max(b["y"] for b in boxes) - min(b["y"] for b in boxes) < 2, boxes
        assert all(b["x"] >= image["x"] + image["width"] for b in boxes), (image, boxes)
        assert [b["x"] for b in boxes] == sorted(b["x"] for b in boxes)
    assert page.locator("#cell-1-0").bounding_box()["y"] > page.locator("#cell-0-0").bounding_box()["y"] + 150
    # A truncated model name is there in full on hover.
    long_j = next(j for j in range(6) if model[(0, j)] == MODELS[3])
    label = page.locator(f"#caption-0-{long_j} [data-testid=block-info]")
    assert label.get_attribute("title") == MODELS[3]
    assert label.evaluate("el => el.scrollWidth > el.clientWidth")  # the name really is cut on screen
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "grid-6-models.png"), full_page=True)
    # A narrow window: the captions still stay beside their image, in a line that scrolls sideways, and a
    # caption reached by keyboard is scrolled into view.
    page.set_viewport_size({"width": 900, "height": 1000})
    boxes = [page.locator(f"#cell-0-{j}").bounding_box() for j in range(6)]
    assert max(b["y"] for b in boxes) - min(b["y"] for b in boxes) < 2, boxes
    assert page.locator(".caption-strip").first.evaluate("el => el.scrollWidth > el.clientWidth")
    page.locator("#cell-0-4").focus()
    page.keyboard.press("ArrowRight")
    assert focused(page) == "cell-0-5"
    last = page.locator("#cell-0-5").bounding_box()
    assert last["x"] + last["width"] <= 900
    page.set_viewport_size({"width": 1400, "height": 1000})

    # Pages: "n" shows the next page with its first caption in focus, "2" rates it, "p" goes back.
    page.keyboard.press("n")
    wait_until(lambda: "Page 2 of 2" in page.locator("#page-line").inner_text(), "page 2")
    wait_until(lambda: focused(page) == "cell-0-0", "focus on page 2")
    assert not page.locator("#rate-0-0 input[value='2']").is_checked()  # page 2's radios show page 2's scores
    page.keyboard.press("2")
    second = page_compare.grid_view(demo.ctx, {"eval_set": SET, "rater": RATER, "page": 1}).rows[0]
    wait_until(lambda: stored().get((second.image_hash, second.cells[0].model_name)) == 2, "a score on page 2")
    page.keyboard.press("p")
    wait_until(lambda: "Page 1 of 2" in page.locator("#page-line").inner_text(), "page 1 again")
    wait_until(lambda: focused(page) == "cell-0-0", "focus on page 1")
    assert page.locator("#rate-0-5 input[value='1']").is_checked()

    # Keys typed into a text box are text, not ratings.
    box = page.locator("#rater input, #rater textarea").first
    box.press("2")
    assert box.input_value() in (RATER + "2", "2" + RATER)  # the key went into the text
    time.sleep(1)  # a wrongly sent rating would have arrived by now
    assert len(stored()) == 4
    fill(page, "rater", RATER)

    # Pairwise tab: one vote is stored.
    page.get_by_role("tab", name="Pairwise").click()
    page.locator("#pair-next").click()
    wait_until(lambda: "Pair 1 of" in page.locator("#pair-status").inner_text(), "a pair on screen")
    page.locator("#vote-a").click()
    wait_until(lambda: len(demo.ctx.store.votes(SET)), "a stored vote")
    votes = demo.ctx.store.votes(SET)
    assert votes["outcome"].tolist() == ["a"] and votes["rater"].tolist() == [RATER]
    page.close()
