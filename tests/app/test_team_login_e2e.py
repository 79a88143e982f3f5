"""Protects signing in to the page with the accounts of the rating database, in Debian's Chromium (1400 x 900)
driven by Playwright, against `python app.py --login` on an SQLite file that has accounts: a wrong password stays
on Gradio's login form with its error; the right one opens the page with the rater box showing the account (not
editable); a rating clicked on the page is stored under the account's name.
"""

from __future__ import annotations

import pytest

from helpers import AppProcess, browser_test_marks, fill, fill_set, wait_until
from rating import accounts
from rating.store import RatingStore

SET, PASSWORD = "team-set", "rita's long password"
WIDTH, HEIGHT = 1400, 900

pytestmark = browser_test_marks()


@pytest.fixture(scope="module")
def app_with_accounts(tmp_path_factory):
    """`python app.py --login` on a database with an owner (olga), a rater (rita) and olga's set of 2 images x 2
    models; yields (the app process, the database file)."""
    root = tmp_path_factory.mktemp("team-login")
    db = root / "team.sqlite"
    with RatingStore(db) as store:
        accounts.add_user(store, "olga", "owner", "olga's long password")
        accounts.add_user(store, "rita", "rater", PASSWORD)
        fill_set(store, SET, ["a.png", "b.png"], ("alpha", "beta"))
    app = AppProcess(root / "no-zoo", db, root / "display", None, "--login", log_dir=root)
    try:
        yield app, db
    finally:
        app.kill()


def test_sign_in_then_rate_as_the_signed_in_account(app_with_accounts, browser):
    app, db = app_with_accounts
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    page.set_default_timeout(60_000)
    page.goto(app.url + "/")

    # Gradio's login form; a wrong password keeps it, with its error.
    password = page.locator("input[type=password]")
    password.wait_for()
    username = page.locator("input:not([type=password])").first
    username.fill("rita")
    password.fill("not the password")
    page.get_by_role("button", name="Login").click()
    wait_until(lambda: page.get_by_text("Incorrect Credentials").is_visible(), "the login form's error")
    assert password.is_visible() and page.locator("#session-line").count() == 0

    # The right password opens the page: the rater box shows the account and cannot be edited.
    username.fill("rita")
    password.fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    page.wait_for_selector("#session-line", timeout=120_000)
    rater = page.locator("#rater input, #rater textarea").first
    wait_until(lambda: rater.input_value() == "rita", "the rater box to show the account",
               state=lambda: rater.input_value())
    assert not rater.is_editable()
    assert page.locator("#sign-out").is_visible()

    # Open olga's set and rate a caption on the page: stored under rita, and nobody else.
    fill(page, "set-name", SET)
    page.locator("#open-set").click()
    wait_until(lambda: "rater rita" in page.locator("#session-line").inner_text(), "the set opened for rita",
               timeout=60, state=lambda: page.locator("#session-line").inner_text())
    page.wait_for_selector("#rate-0-0")
    page.locator("#rate-0-0").get_by_text("2 · ").click()

    def ratings():
        with RatingStore(db) as store:
            return list(zip(store.ratings(SET)["rater"], store.ratings(SET)["score"]))

    wait_until(lambda: ratings() == [("rita", 2)], "the rating stored under rita", timeout=60, state=ratings)
    wait_until(lambda: "1 of 4 rated" in page.locator("#progress").inner_text(), "the progress bar")
    page.close()
