"""Protects the app as a person uses it, end to end in Debian's Chromium driven by Playwright.

Upload images (one of them corrupt: a warning, the rest captioned), pick a sample image and two models,
caption in blind mode, rate every caption with the radio buttons (each click saved at once, the last of two
quick clicks wins), reveal the names, reload the page (the session comes back with its scores), show the
results and download the export. A screenshot of the rated grid goes to test-artifacts/app-e2e.png.
Skipped, with the reason, when /usr/bin/chromium is not installed (`make browser` installs it).
"""

from __future__ import annotations

import csv
import io
import time

import pytest

from helpers import ARTIFACTS, browser_test_marks, build_tiny_zoo, fill, serve_in_thread, write_images
from page import compare as page_compare

pytestmark = browser_test_marks()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("app-e2e")
    zoo = build_tiny_zoo(root / "zoo", ["alpha", "beta"])
    write_images(root / "samples", 1, seed=7)
    for demo in serve_in_thread(zoo, root):
        yield demo, root






def wait_for_text(page, selector: str, text: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = page.locator(selector).first.inner_text() if page.locator(selector).count() else ""
        if text in content:
            return content
        time.sleep(0.2)
    messages = page.locator(".toast-body").all_inner_texts()  # gr.Error / gr.Warning pop-ups, if any
    raise AssertionError(f"{selector} never showed {text!r}; last text: {content!r}; messages: {messages}")


def test_caption_rate_blind_reveal_reload_results_export(server, browser, tmp_path):
    demo, root = server
    images = write_images(root / "uploads", 2, seed=8, broken=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page.set_default_timeout(60_000)
    outside = []  # the app works offline: the page never asks anything of another host
    local = (demo.local_url, "data:", "blob:")
    page.on("request", lambda request: None if request.url.startswith(local) else outside.append(request.url))
    page.goto(demo.local_url)
    page.wait_for_selector("#session-line")
    assert "fully accurate" in page.locator("#rubric").inner_text()  # the rubric is on screen

    fill(page, "rater", "alice")
    fill(page, "set-name", "browser-set")
    page.locator("#blind input").check()
    page.locator("#uploads input[type=file]").set_input_files([str(p) for p in images])
    wait_for_text(page, "#uploads", "broken")  # the list shows names and extensions in separate elements
    page.locator("#samples").get_by_text("img7_0.png").click()
    page.locator("#models").get_by_text("alpha ·").click()
    page.locator("#models").get_by_text("beta ·").click()
    page.locator("#model-cards-box").get_by_text("Model cards").click()  # the cards sit in a folded box
    wait_for_text(page, "#model-cards", "training data: synthetic shapes split 1")
    page.locator("#caption-btn").click()

    status = wait_for_text(page, "#caption-status", "Captioned")
    assert "3 image(s) x 2 model(s)" in status and "6 new caption(s)" in status
    assert "broken.jpg" in page.locator("body").inner_text()  # the warning names the bad file
    page.wait_for_selector("#rate-2-1")
    labels = [page.locator(f"#caption-{i}-{j} [data-testid=block-info]").inner_text()
              for i in range(3) for j in range(2)]
    assert set(labels) == {"Caption A", "Caption B"}  # blind: no model name in the grid...
    grid_html = " ".join(page.locator(".grid-row").evaluate_all("rows => rows.map(r => r.outerHTML)"))
    assert "alpha" not in grid_html and "beta" not in grid_html  # ...not even hidden in the markup

    # Rate every caption; on the first one change our mind quickly (0 then 2): the last click must win.
    wanted = {}
    for i in range(3):
        for j in range(2):
            score = 2 if (i + j) % 2 == 0 else 1
            radio = page.locator(f"#rate-{i}-{j}")
            if (i, j) == (0, 0):
                radio.get_by_text("0 · unrelated").click()
            radio.get_by_text(f"{score} · ").click()
            wanted[(i, j)] = score
    wait_for_text(page, "#rate-status", "you rated 6 of 6")
    wait_for_text(page, "#session-line", "you rated 6 of 6")
    def stored_scores() -> list[int]:
        return sorted(demo.ctx.store.ratings("browser-set", "alice")["score"])

    deadline = time.monotonic() + 10  # the second quick click may still be on its way
    while time.monotonic() < deadline and stored_scores() != [1, 1, 1, 2, 2, 2]:
        time.sleep(0.2)
    assert stored_scores() == [1, 1, 1, 2, 2, 2]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-e2e.png"), full_page=True)

    # Which model is behind each column, from the server's view of this rater's grid.
    view = page_compare.grid_view(demo.ctx, {"eval_set": "browser-set", "rater": "alice", "page": 0})
    assert [[c.score for c in r.cells] for r in view.rows] == [[wanted[(i, j)] for j in range(2)] for i in range(3)]

    page.locator("#reveal").click()
    wait_for_text(page, "#caption-0-0", f"Caption A = {view.rows[0].cells[0].model_name}")

    # A reload: the browser remembers rater and set, and the grid comes back with this rater's scores.
    page.reload()
    page.wait_for_selector("#rate-2-1")
    assert page.locator("#rater input, #rater textarea").first.input_value() == "alice"
    assert page.locator("#blind input").is_checked()  # the set's own mode comes back with it
    for (i, j), score in wanted.items():
        assert page.locator(f"#rate-{i}-{j} input[value='{score}']").is_checked()

    page.get_by_role("tab", name="Results").click()
    page.locator("#results-btn").click()
    summary = wait_for_text(page, "#summary", "alpha")
    assert "beta" in summary and "accuracy %" in summary
    page.locator("#export-btn").click()
    link = page.locator("#export-files a[download='browser-set_ratings.csv']")
    link.wait_for()
    with page.expect_download() as download:
        link.click()
    target = tmp_path / "ratings.csv"
    download.value.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert len(rows) == 6 and {r["rater"] for r in rows} == {"alice"}
    assert {r["model_name"] for r in rows} == {"alpha", "beta"} and all(r["caption"] for r in rows)
    page.screenshot(path=str(ARTIFACTS / "app-e2e-results.png"), full_page=True)
    page.close()
    assert not outside, outside
