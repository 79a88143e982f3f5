"""Protects the page's side of team evaluation, with handlers called as plain functions (one test serves the app
and goes through Gradio's own HTTP API):

- with --login the rater IS the signed-in account: whatever the rater box, a remembered browser state or an API
  call names, ratings, sets and imports are the account's; the rater box shows the account and is not editable;
- with --login only owners and admins create sets (a rater is told so and nothing is created), the set's owner is
  the account, and the admins are the accounts with role admin (--admin names no longer count);
- a set's overlap (raters per caption) is chosen when it is created, stored, shown fixed afterwards; a rating
  beyond it is a warning that puts the radio back, the grid greys out complete captions and keeps working;
- progress per set and per rater (Results) and what is left to the rater (the rating bar);
- the Review view: disagreements largest first, final scores by the owner and the admins only, and Results saying
  they are used;
- app.py: --login with --auth, --login on a database without accounts, $CAPTION_ZOO_DB, an unreachable or
  malformed database URL: one line, exit 2, no traceback, no password.
"""

from __future__ import annotations

import warnings

import gradio as gr
import pytest
from gradio_client import Client

import app
from helpers import free_port, no_progress, serve_asgi_in_thread, write_images
from page import blocks as page_blocks
from page import compare as page_compare
from page import context as page_context
from page import importing as page_importing
from page import results as page_results
from page import review as page_review
from page import server as page_server
from page import session as page_session
from rating import access, accounts, review, sets

PASSWORD = "correct horse battery"
USERS = {"ada": "admin", "olga": "owner", "rita": "rater", "ravi": "rater"}


def signed_in(name: str) -> gr.Request:
    """The gr.Request Gradio gives a handler for a signed-in user."""
    return gr.Request(username=name)


def endpoint(demo: gr.Blocks, api_name: str):
    """The function behind a gr.api endpoint (a closure inside build_app)."""
    return next(f.fn for f in demo.fns.values() if f.api_name == api_name)


def caption(ctx, session, files, models, *, rater, name, request=None, blind=False, overlap=None):
    return page_compare.caption(ctx, session, rater, name, blind, [str(f) for f in files], [], models, "greedy",
                                progress=no_progress, request=request, overlap=overlap)


def add_users(store) -> None:
    for name, role in USERS.items():
        accounts.add_user(store, name, role, PASSWORD)


@pytest.fixture()
def team(zoo, tmp_path):
    """An app context with --login on a database with four accounts (ada admin, olga owner, rita and ravi raters);
    --admin rita is given too, and must not count."""
    context = page_context.make_context(zoo, tmp_path / "team.sqlite", samples_dir=tmp_path / "samples",
                                        image_dir=tmp_path / "display", admins=("rita",), login=True)
    add_users(context.store)
    yield context
    context.store.close()


@pytest.fixture()
def olgas_set(team, tmp_path):
    """Set "team" created by olga (blind, 2 raters per caption): 2 images x 2 models. Returns olga's session."""
    files = write_images(tmp_path / "in", 2)
    session, _, _ = caption(team, page_session.new_session(), files, ["alpha", "beta"], rater="", name="team",
                            request=signed_in("olga"), blind=True, overlap=2)
    return session


# ----------------------------------------------------------------------------------------------------------
# --login: the rater is the account


def test_with_login_every_handler_rates_as_the_signed_in_account(team, olgas_set, tmp_path):
    assert team.store.get_set("team")["owner"] == "olga" and olgas_set["rater"] == "olga"
    # Rita's page (or a script through Gradio's API) names olga in the rater box: the session is rita's.
    session, line, _, _ = page_session.open_set(team, page_session.new_session(), "olga", "team", False, "greedy",
                                                signed_in("rita"))
    assert session["rater"] == "rita" and session["who"] == "rita" and "rater **rita**" in line
    row = page_compare.grid_view(team, session).rows[0]
    page_compare.rate_caption(team, row.image_hash, row.cells[0].model_name, "Caption A", session, 2)
    assert team.store.score("team", "rita", row.image_hash, row.cells[0].model_name) == 2
    assert team.store.ratings("team", "olga").empty

    # The /rate endpoint with rater "olga" and model "Caption B" (rita may not see names): stored as rita's.
    demo = page_blocks.build_app(context=team)
    rate = endpoint(demo, "rate")
    answer = rate("team", "olga", row.image_hash, "Caption B", 1, signed_in("rita"))
    assert "by rita" in answer and team.store.ratings("team", "olga").empty
    assert sorted(team.store.ratings("team", "rita")["score"]) == [1, 2]
    # /captions gives rita her own column labels, not olga's, and no model name.
    captions = endpoint(demo, "captions")("team", "olga", signed_in("rita"))
    assert {c["column"] for c in captions} == {"Caption A", "Caption B"} and "model_name" not in captions[0]

    # Captioning as "ravi" in the box while signed in as olga: olga's set, olga's session.
    files = write_images(tmp_path / "more", 1, seed=5)
    again, _, _ = caption(team, page_session.new_session(), files, ["alpha"], rater="ravi", name="team",
                          request=signed_in("olga"))
    assert again["rater"] == "olga"

    # A reload: the browser remembered olga's session, but rita is signed in: reopened for rita.
    restored, _, rater, name, *_ = page_session.restore_session(team, {"rater": "olga", "eval_set": "team"},
                                                               signed_in("rita"))
    assert (restored["rater"], rater, name) == ("rita", "rita", "team")
    box = page_session.signed_in_rater(team, signed_in("rita"))
    assert box.value == "rita" and box.interactive is False and box.label == page_session.SIGNED_IN

    # No signed-in user (a handler called without a login): refused, nothing stored.
    with pytest.raises(gr.Error, match="Sign in first"):
        page_session.open_set(team, page_session.new_session(), "olga", "team", False, "greedy", None)


def test_with_login_a_rater_imports_only_their_own_scores(team, olgas_set, tmp_path):
    names = [r.file_name for r in page_compare.grid_view(team, olgas_set).rows]
    forged = tmp_path / "forged.csv"
    forged.write_text(f"image_id,model_name,caption,score,rater\n{names[0]},delta,new words,2,olga\n")
    with pytest.raises(gr.Error, match="you may import only your own scores"):
        page_importing.import_captions(team, page_session.new_session(), "olga", "team", False, "greedy",
                                       str(forged), None, signed_in("rita"))
    assert team.store.ratings("team").empty
    own = tmp_path / "own.csv"
    own.write_text(f"image_id,model_name,caption,score\n{names[1]},gamma,a red circle,1\n")
    session, message, _ = page_importing.import_captions(team, page_session.new_session(), "olga", "team", False,
                                                         "greedy", str(own), None, signed_in("rita"))
    assert session["rater"] == "rita" and "1 saved" in message
    assert list(team.store.ratings("team")["rater"]) == ["rita"]
    # The set's owner may bring in other raters' scores (data rated elsewhere).
    page_importing.import_captions(team, page_session.new_session(), "", "team", False, "greedy", str(forged),
                                   None, signed_in("olga"))
    assert set(team.store.ratings("team")["rater"]) == {"rita", "olga"}


def test_with_login_only_owners_and_admins_create_sets_and_admins_are_accounts(team, olgas_set):
    for forged_rater in ("rita", "olga", "ada"):
        with pytest.raises(gr.Error, match=r"Only owners and admins may create evaluation sets, and your account "
                                           r"\(rita\)"):
            page_session.open_set_on_page(team, page_session.new_session(), forged_rater, "ritas-own", True,
                                          "greedy", 3, signed_in("rita"))
    assert "ritas-own" not in page_session.set_choices(team)
    session, *_ = page_session.open_set(team, page_session.new_session(), "", "adas", False, "greedy",
                                        signed_in("ada"))
    assert team.store.get_set("adas")["owner"] == "ada"

    # The blind set's names: its owner olga and the admin account ada; not rita, although --admin rita was given.
    assert page_session.admins_for(team, "ada") == ("ada",) and page_session.admins_for(team, "rita") == ()
    results = page_results.results(team, olgas_set, None, signed_in("ada"))
    assert set(results[0]["model"]) == {"alpha", "beta"}
    with pytest.raises(gr.Error, match="are for its owner"):
        page_results.results(team, olgas_set, "team", signed_in("rita"))
    rita, *_ = page_session.open_set(team, page_session.new_session(), "", "team", False, "greedy", signed_in("rita"))
    with pytest.raises(gr.Error, match="Only the owner of blind set 'team' can reveal"):
        page_compare.reveal_names(team, rita, signed_in("rita"))
    # Without --login the --admin names count (and typed names are the raters).
    team.login = False
    assert page_session.admins_for(team, "rita") == ("rita",)


# ----------------------------------------------------------------------------------------------------------
# Overlap


def test_overlap_is_chosen_when_a_set_is_created_and_fixed_afterwards(ctx, tmp_path):
    session, line, _, _ = page_session.open_set_on_page(ctx, page_session.new_session(), "alice", "pairs", False,
                                                        "greedy", 2.0)
    assert ctx.store.get_set("pairs")["overlap"] == 2 and "2 rater(s) per caption" in line
    blind, overlap, fixed = page_session.set_controls(ctx, "pairs")
    assert (overlap.value, overlap.interactive, fixed) == (2, False, True)
    assert blind.interactive is False and overlap.label == page_session.OVERLAP_FIXED
    # Opening it again with another overlap changes nothing: fixed at creation, like Blind.
    page_session.open_set_on_page(ctx, page_session.new_session(), "bob", "pairs", True, "greedy", 5)
    assert ctx.store.get_set("pairs")["overlap"] == 2 and ctx.store.get_set("pairs")["blind"] is False
    # A new name after an existing set: editable again, blank (everyone).
    blind, overlap, fixed = page_session.set_controls(ctx, "a-new-set", True)
    assert (overlap.value, overlap.interactive, fixed) == (None, True, False)
    assert page_session.set_controls(ctx, "a-new-set-2", False)[:2] == (gr.skip(), gr.skip())  # the user's choice
    # Blank (the browser sends 0 for an empty number box): everyone rates everything.
    for blank in (None, 0, ""):
        page_session.open_set_on_page(ctx, page_session.new_session(), "alice", f"all{blank}", False, "greedy", blank)
        assert ctx.store.get_set(f"all{blank}")["overlap"] is None
    for bad in (1.5, -2, "two"):
        with pytest.raises(gr.Error, match=r"whole number of at least 1, or blank \(0\) for everyone"):
            page_session.open_set_on_page(ctx, page_session.new_session(), "alice", f"bad-{bad}", False, "greedy",
                                          bad)
        assert f"bad-{bad}" not in page_session.set_choices(ctx)
    # Caption and Import create a new set with the overlap too (the page's own inputs).
    files = write_images(tmp_path / "in", 1)
    page_compare.caption_on_page(ctx, page_session.new_session(), "alice", "captioned", False, [str(files[0])], [],
                                 ["alpha"], "greedy", 3, progress=no_progress)
    assert ctx.store.get_set("captioned")["overlap"] == 3
    table = tmp_path / "caps.csv"
    table.write_text("image_id,model_name,caption\nx.png,alpha,a red circle\n")
    page_importing.import_on_page(ctx, page_session.new_session(), "alice", "imported", False, "greedy", str(table),
                                  None, 4)
    assert ctx.store.get_set("imported")["overlap"] == 4


def test_rating_beyond_the_overlap_is_a_warning_and_the_grid_keeps_working(ctx, tmp_path):
    files = write_images(tmp_path / "in", 2)
    alice, _, _ = caption(ctx, page_session.new_session(), files, ["alpha", "beta"], rater="alice", name="solo",
                          overlap=1)
    rows = page_compare.grid_view(ctx, alice).rows
    full = (rows[0].image_hash, rows[0].cells[0].model_name)
    page_compare.rate_caption(ctx, *full, "alpha on img0_0.png", alice, 2)

    bob, *_ = page_session.open_set(ctx, page_session.new_session(), "bob", "solo", False, "greedy")
    assert page_compare.queue.closed_captions(ctx.store, "solo", "bob") == {full}
    with pytest.warns(UserWarning, match="already has 1 rating"):
        status, line, bar, history = page_compare.rate_caption(ctx, *full, "alpha on img0_0.png", bob, 1, [])
    assert status.startswith("⚠️ Not saved for alpha on img0_0.png") and history == []
    assert ctx.store.score("solo", "bob", *full) is None and ctx.store.score("solo", "alice", *full) == 2
    # As the grid calls it: the radio is put back to what is stored (nothing).
    with pytest.warns(UserWarning):
        *_, radio = page_compare.rate_from_grid(ctx, *full, "alpha on img0_0.png", bob, 1, [])
    assert radio.value is None
    # The rest of bob's grid works: another caption is saved, and the rating bar counts what is left to him.
    other = (rows[1].image_hash, rows[1].cells[1].model_name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        *_, radio = page_compare.rate_from_grid(ctx, *other, "beta on img0_1.png", bob, 0, [])
    assert radio == gr.skip() and ctx.store.score("solo", "bob", *other) == 0
    assert "1 rated · 2 left for you" in page_compare.progress_html(ctx, bob)
    # Next unrated skips the complete caption: bob's first open one is beta on the first image.
    session, _ = page_compare.next_unrated(ctx, {**bob, "page": 0})
    assert session["focus"] == [rows[0].image_hash, rows[0].cells[1].model_name]
    # Without an overlap the bar is unchanged: "N of M rated".
    plain, *_ = page_session.open_set(ctx, page_session.new_session(), "bob", "plain", False, "greedy")
    caption(ctx, plain, files[:1], ["alpha"], rater="bob", name="plain")
    assert "0 of 1 rated · 1 left" in page_compare.progress_html(ctx, plain)


# ----------------------------------------------------------------------------------------------------------
# Progress and review


def disagreeing_set(ctx, tmp_path, name="rev", overlap=None):
    """A set of 2 images x 2 models, owner alice, rated by alice and bob: (img0, alpha) 0 vs 2, (img1, beta) 1 vs 2,
    (img0, beta) 2 and 2 (no disagreement). Returns the grid rows."""
    files = write_images(tmp_path / f"in-{name}", 2)
    alice, _, _ = caption(ctx, page_session.new_session(), files, ["alpha", "beta"], rater="alice", name=name,
                          overlap=overlap)
    rows = page_compare.grid_view(ctx, alice).rows
    for rater, scores in {"alice": (0, 2, 1), "bob": (2, 2, 2)}.items():
        for (row, column), score in zip([(0, 0), (0, 1), (1, 1)], scores):
            ctx.store.rate(name, rater, rows[row].image_hash, rows[row].cells[column].model_name, score)
    return rows


def test_progress_per_set_and_per_rater_in_results(ctx, tmp_path):
    disagreeing_set(ctx, tmp_path, "prog", overlap=2)
    bob, *_ = page_session.open_set(ctx, page_session.new_session(), "bob", "prog", False, "greedy")
    table, text = page_results.progress_of(ctx, bob, None)
    assert table.to_dict("records") == [{"rater": "alice", "rated": 3, "images": 2},
                                        {"rater": "bob", "rated": 3, "images": 2}]
    assert "1 of 2 images complete at 2 rater(s) per caption (3 of 4 captions; 6 ratings)" in text
    assert "You (bob) have 1 caption(s) left to rate" in text
    assert "You (bob) have 1 left" in page_results.results(ctx, bob, None)[1]  # the captions still open to him
    shown, _ = page_results.show_progress(ctx, page_session.new_session(), "prog")
    assert shown.visible is True
    assert page_results.progress_of(ctx, None, None)[1] == "" and page_results.progress_of(ctx, None, "nope")[1] == ""


def test_review_disagreements_final_scores_for_the_owner_and_admins(ctx, tmp_path):
    rows = disagreeing_set(ctx, tmp_path)
    alice, *_ = page_session.open_set(ctx, page_session.new_session(), "alice", "rev", False, "greedy")
    bob, *_ = page_session.open_set(ctx, page_session.new_session(), "bob", "rev", False, "greedy")

    table, state, picker, scores, text = page_review.show_review(ctx, alice, None, False)
    assert list(table.value["headers"]) == list(page_review.SHOWN_COLUMNS.values())
    data = table.value["data"]
    assert [(r[1], r[3], r[4]) for r in data] == [("alpha", "0, 2", 2), ("beta", "1, 2", 1)]  # largest first
    assert "2 caption(s) of set 'rev' where raters disagree" in text
    assert [c[1] for c in picker.choices] == state and [c[1] for c in scores.choices] == [0, 1, 2]

    # Bob (not the owner, no admin) is told who may review, and may not save.
    table, state, _, _, text = page_review.show_review(ctx, bob, None, False)
    assert table.visible is False and state == []
    assert "Only the owner of set 'rev' (alice) and the --admin users may review" in text
    with pytest.raises(gr.Error, match="may review"):
        page_review.save_review(ctx, bob, None, state or page_review.caption_key(rows[0].image_hash, "alpha"), 1, "")

    # Alice picks the first row (a click on the table) and saves a final score with a note.
    key = page_review.pick_row(page_review.show_review(ctx, alice, None, False)[1],
                               gr.SelectData(None, {"index": [0, 2], "value": "x"}))
    assert key == page_review.caption_key(rows[0].image_hash, "alpha")
    with pytest.raises(gr.Error, match="Choose the final score"):
        page_review.save_review(ctx, alice, None, key, None, "")
    with pytest.raises(gr.Error, match="Pick a caption first"):
        page_review.save_review(ctx, alice, None, None, 2, "")
    saved = page_review.save_review(ctx, alice, None, key, 2, "the dog is there")
    assert "Saved final score 2 for alpha" in saved
    assert review.reviews_of(ctx.store, "rev")[["final_score", "note", "reviewer"]].values.tolist() == [
        [2, "the dog is there", "alice"]]
    assert page_review.current_review(ctx, alice, None, key) == (2, "the dog is there")
    # What is left to review, and everything with "show reviewed too".
    assert [r[1] for r in page_review.show_review(ctx, alice, None, False)[0].value["data"]] == ["beta"]
    everything = page_review.show_review(ctx, alice, None, True)
    assert [r[6] for r in everything[0].value["data"]] == [2, None] and "1 have a final score" in everything[4]
    # Results use the final score, and say so; the raw ratings stay.
    _, text, _ = page_results.results(ctx, alice, None)
    assert "reviewed final score of 1 caption(s)" in text
    assert sorted(ctx.store.ratings("rev")["score"]) == [0, 1, 2, 2, 2, 2]
    # An --admin user may review as well; removing the final score makes the raters' scores count again.
    ctx.admins = ("root",)
    root = {**bob, "rater": "root", "who": "root"}
    assert "Removed the final score" in page_review.clear_review(ctx, root, None, key)
    assert review.reviews_of(ctx.store, "rev").empty and "reviewed" not in sets.set_results(ctx.store, "rev").message


def test_review_with_login_is_for_the_owner_and_admin_accounts(team, olgas_set):
    rows = page_compare.grid_view(team, olgas_set).rows
    model = rows[0].cells[0].model_name
    for rater, score in (("rita", 0), ("ravi", 2)):
        team.store.rate("team", rater, rows[0].image_hash, model, score)
    key = page_review.caption_key(rows[0].image_hash, model)
    rita, *_ = page_session.open_set(team, page_session.new_session(), "", "team", False, "greedy", signed_in("rita"))
    text = page_review.show_review(team, rita, None, False, signed_in("rita"))[-1]
    assert "Only the owner of set 'team' (olga) and the accounts with role admin may review" in text
    assert "you are rita" in text
    assert "by ada" in page_review.save_review(team, rita, "team", key, 1, None, signed_in("ada"))
    assert access.may_manage(team.store, "team", "olga")


# ----------------------------------------------------------------------------------------------------------
# Through Gradio's HTTP API: the signed-in account, whatever the call names


def test_gradio_api_calls_rate_as_the_signed_in_account(zoo, tmp_path):
    demo = page_blocks.build_app(zoo, tmp_path / "api.sqlite", samples_dir=tmp_path / "samples",
                                 image_dir=tmp_path / "display", login=True)
    add_users(demo.ctx.store)
    sets.open_set(demo.ctx.store, "shared", "olga", owner="olga")
    demo.ctx.store.add_image("a" * 64, "cat.png", 10, 10)
    demo.ctx.store.save_caption("shared", "a" * 64, "alpha", "a cat", weights_hash=None, decoding=None)
    demo.queue()
    try:
        for url in serve_asgi_in_thread(page_server.build_server(demo, login=True)):
            with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a bare Exception for a failed login
                Client(url, auth=("rita", "wrong password"), verbose=False)
            client = Client(url, auth=("rita", PASSWORD), verbose=False)
            assert "by rita" in client.predict("shared", "olga", "a" * 64, "alpha", 2, api_name="/rate")
            line, _, _ = client.predict("olga", "shared", False, "greedy", api_name="/open_set")
            assert "rater **rita**" in line
            with pytest.raises(Exception, match="Only owners and admins may create"):
                client.predict("olga", "ritas-set", False, "greedy", api_name="/open_set")
    finally:
        demo.ctx.store.close()
    assert list(demo.ctx.store.ratings("shared")["rater"]) == ["rita"]
    assert "ritas-set" not in page_session.set_choices(demo.ctx)


# ----------------------------------------------------------------------------------------------------------
# app.py


def test_app_login_and_database_options_fail_in_one_line(capsys, tmp_path, monkeypatch):
    port = ["--port", str(free_port()), "--image-cache", str(tmp_path / "display")]
    assert app.main(["--login", "--auth", "ann:pw", *port]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --login and --auth cannot be used together") and err.count("\n") == 1

    empty = tmp_path / "empty.sqlite"
    assert app.main(["--login", "--db", str(empty), "--zoo", str(tmp_path / "no-zoo"), *port]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"python -m rating users add NAME --role admin --db {empty}" in err

    # An unreachable PostgreSQL and a malformed URL: one line naming the problem, never the password.
    refused = f"postgresql://zoo:s3cretpw@127.0.0.1:{free_port()}/ratings"
    for db, words in ((refused, f"127.0.0.1:{refused.split(':')[-1].split('/')[0]}"), ("mysql://x@y/z", "postgresql")):
        assert app.main(["--login", "--db", db, "--zoo", str(tmp_path / "no-zoo"), *port]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err
        assert "s3cretpw" not in err and "Traceback" not in err

    # --db defaults to $CAPTION_ZOO_DB, and the help says so.
    monkeypatch.setenv("CAPTION_ZOO_DB", "postgresql://zoo@db:5432/ratings")
    parser = app.build_parser()
    assert parser.parse_args([]).db == "postgresql://zoo@db:5432/ratings"
    assert "$CAPTION_ZOO_DB" in parser.format_help() and "postgresql://" in parser.format_help()
    monkeypatch.delenv("CAPTION_ZOO_DB")
    assert app.build_parser().parse_args([]).db == page_context.DEFAULT_DB
