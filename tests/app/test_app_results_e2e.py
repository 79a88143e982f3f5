"""Protects the Results tab as a person sees it on a partly rated set, in Debian's Chromium: every model of
a 6-model set is listed with its coverage, the headline accuracy and ranks rest on the image rated for every
model (ties share a rank), and the page says coverage is incomplete and what is left to rate. While the tab
is open, a rating made elsewhere shows up without a click (the tab's refresh). A screenshot goes to
test-artifacts/results-partial-coverage.png. Skipped, with the reason, when /usr/bin/chromium is missing."""

from __future__ import annotations

from helpers import ARTIFACTS, browser_test_marks, build_tiny_zoo, serve_in_thread, wait_until, write_images
from page import compare as page_compare
from page import results as page_results
from page import session as page_session

MODELS = ["clip-mlp-k10", "clip-transformer-k10", "vit-mlp-k10", "clip-grid-k9", "prefix-only-k5", "frozen-k4"]

pytestmark = browser_test_marks()


def test_results_of_a_partly_rated_six_model_set(tmp_path, browser):
    zoo = build_tiny_zoo(tmp_path / "zoo", MODELS)
    images = write_images(tmp_path / "in", 4)
    for demo in serve_in_thread(zoo, tmp_path):
        store = demo.ctx.store
        page_compare.caption(demo.ctx, page_session.new_session(), "alice", "round1", False, [str(p) for p in images], [], MODELS,
                    "greedy", progress=lambda *a, **k: None)
        hashes = sorted({c["image_hash"] for c in store.get_captions("round1")})
        for i, model in enumerate(MODELS):  # the first image for every model: scores 0, 1, 2, 0, 1, 2
            store.rate("round1", "alice", hashes[0], model, i % 3)
        for model in MODELS[:3]:  # a second image for three models only
            store.rate("round1", "alice", hashes[1], model, 2)
        page = browser.new_page(viewport={"width": 1500, "height": 1300})
        page.goto(demo.local_url, timeout=60_000)
        page.get_by_role("tab", name="Results").click()
        page.fill("#results-set input", "round1")
        page.click("#results-btn")
        page.get_by_text("Coverage is incomplete").wait_for(timeout=60_000)
        summary = page.locator("#summary").inner_text()
        sentence = page.get_by_text("Coverage is incomplete").inner_text()
        assert "15 of 24 caption(s) have no score yet" in page.locator("#agreement").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "results-partial-coverage.png"), full_page=True)
        # Another rater's score arrives while the tab is open: the figures follow without a click.
        store.rate("round1", "bob", hashes[2], MODELS[0], 1)
        wait_until(lambda p=page: "14 of 24 caption(s) have no score yet" in p.locator("#agreement").inner_text(),
                   "the Results tab to refresh", timeout=30)
        page.close()
        for model in MODELS:
            assert model in summary  # every model listed, rated or not
        assert "9 of 24 caption(s) rated" in sentence
        # the page's table comes from the Results handler: vit-mlp-k10 and frozen-k4 scored 2 on the common
        # image and share rank 1; clip-transformer-k10 and prefix-only-k5 (1) share rank 3
        table, _, _ = page_results.results(demo.ctx, page_session.new_session(), "round1")
        ranks = dict(zip(table["model"], table["rank"]))
        assert ranks["vit-mlp-k10"] == ranks["frozen-k4"] == 1
        assert ranks["clip-transformer-k10"] == ranks["prefix-only-k5"] == 3
        assert ranks["clip-mlp-k10"] == 5 and ranks["clip-grid-k9"] == 5
