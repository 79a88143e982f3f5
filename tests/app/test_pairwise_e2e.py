"""Protects the Pairwise tab as a rater uses it, in Debian's Chromium (1400 x 900) driven by Playwright.

Two images x three models, where two captions of one image are word for word the same: every model pair on
every image is offered (6), the identical pair is recorded as a tie without being shown, the rater votes the
other five with the keyboard shortcuts shown on the buttons (← A, → B, ↑ tie, ↓ both bad), and after the last
pair the vote buttons are disabled and the page says so, with a link to the ranking, which then shows.
Screenshot: test-artifacts/pairwise-done.png.
"""

from __future__ import annotations

import time

import pytest

from helpers import ARTIFACTS, browser_test_marks, fill, serve_in_thread, wait_until
from rating import intake, sets

SET, RATER = "pairs-set", "pia"
CAPTIONS = [("p1.png", "alpha", "a red circle"), ("p1.png", "beta", "a blue square"),
            ("p1.png", "gamma", "two green triangles"), ("p2.png", "alpha", "a red square"),
            ("p2.png", "beta", "a blue circle"), ("p2.png", "gamma", "A blue  circle")]  # identical to beta's

pytestmark = browser_test_marks()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairwise-e2e")
    (root / "zoo").mkdir()
    for demo in serve_in_thread(root / "zoo", root):
        sets.open_set(demo.ctx.store, SET, "owner", blind=False, preset="greedy")
        table = root / "captions.csv"
        table.write_text("image_id,model_name,caption\n" + "".join(f"{i},{m},{c}\n" for i, m, c in CAPTIONS))
        intake.import_captions_file(demo.ctx.store, SET, table)
        yield demo


def test_every_pair_keyboard_votes_identical_tie_and_the_end_state(server, browser):
    demo = server
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(60_000)
    page.goto(demo.local_url)
    page.wait_for_selector("#session-line")
    fill(page, "rater", RATER)
    fill(page, "set-name", SET)
    page.locator("#open-set").click()
    wait_until(lambda: SET in page.locator("#session-line").inner_text(), "the set to open")
    page.get_by_role("tab", name="Pairwise").click()
    status = page.locator("#pair-status")
    wait_until(lambda: "Pair 2 of 6" in status.inner_text(), "the first pair")  # the identical one is done
    assert "1 pair(s) with identical captions counted as ties" in status.inner_text()
    assert page.locator("#vote-a").inner_text().startswith("←") and page.locator("#vote-b").inner_text().endswith("→")
    ties = demo.ctx.store.votes(SET, RATER)
    assert ties["outcome"].tolist() == ["both_good"]  # recorded without asking
    assert ties["caption_a"].str.lower().str.split().tolist() == ties["caption_b"].str.lower().str.split().tolist()

    shown = set()
    for number, key in zip(range(2, 7), ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "ArrowLeft"]):
        wait_until(lambda n=number: f"Pair {n} of 6" in status.inner_text(), f"pair {number}")
        a, b = page.locator("#caption-a textarea").input_value(), page.locator("#caption-b textarea").input_value()
        assert a.lower().split() != b.lower().split()  # never two identical captions on screen
        shown.add(frozenset((a, b)))
        page.locator("body").click(position={"x": 5, "y": 5})  # no text box in focus: keys are votes
        page.keyboard.press(key)
        wait_until(lambda n=number: len(demo.ctx.store.votes(SET, RATER)) == n, f"vote {number}")
    assert len(shown) == 5
    outcomes = demo.ctx.store.votes(SET, RATER)["outcome"].tolist()
    assert sorted(outcomes) == sorted(["both_good", "a", "b", "both_good", "both_bad", "a"])

    wait_until(lambda: "All 6 pairs of this set voted" in status.inner_text(), "the end state")
    for button in ("vote-a", "vote-b", "vote-both-good", "vote-both-bad"):
        wait_until(lambda b=button: page.locator(f"#{b}").is_disabled(), f"{button} disabled")
    page.keyboard.press("ArrowLeft")  # a key after the end does nothing
    time.sleep(0.5)
    assert len(demo.ctx.store.votes(SET, RATER)) == 6
    assert page.locator(".toast-body").count() == 0  # and no error badges
    assert page.locator("#pair-status a[href='#pair-results-btn']").count() == 1  # a link to the ranking
    page.locator("#pair-status a").click()
    page.locator("#pair-results-btn").click()
    wait_until(lambda: page.locator("#pair-board").is_visible(), "the ranking")
    assert "alpha" in page.locator("#pair-board").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "pairwise-done.png"), full_page=True)
    page.close()
