"""Protects blind integrity: a blind set's model names reach only its owner (who created it) and the --admin
users, in the grid (reveal), the results, the exports (ratings and pairwise), and the plain API endpoints
`captions` and `rate`; any other rater gets a plain refusal, and no model name appears in anything they get
back. A set that is not blind is unaffected. With --auth the rule follows the login, not the typed name.

Handlers are called as plain functions (like test_app_handlers.py); one test goes through gradio_client.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

import app
from helpers import free_port
from page import blocks as page_blocks
from page import compare as page_compare
from page import context as page_context
from page import pairwise as page_pairwise
from page import results as page_results
from page import server as page_server
from page import session as page_session
from rating import access

MODELS = ["secret-alpha", "secret-beta", "secret-gamma"]
BLIND, OPEN = "hidden-set", "open-set"
REFUSAL = "are for its owner; ask them, or start the app with --admin YOUR_NAME"


def fill(ctx: page_context.AppContext, name: str, *, blind: bool, owner: str | None) -> None:
    ctx.store.create_or_open_set(name, blind=blind, owner=owner)
    for i in range(2):
        ctx.store.add_image(f"hash{i}", f"photo{i}.jpg", 32, 32)
        Image.new("RGB", (32, 32), "blue").save(ctx.image_dir / f"hash{i}.png")
        for model in MODELS:
            ctx.store.save_caption(name, f"hash{i}", model, f"caption {i} number {MODELS.index(model)}",
                                   weights_hash=None, decoding=None)
    ctx.store.rate(name, "alice", "hash0", MODELS[0], 2)
    ctx.store.vote(name, "alice", "hash0", MODELS[0], MODELS[1], "a")


@pytest.fixture()
def ctx(tmp_path):
    context = page_context.make_context(tmp_path / "no-zoo", tmp_path / "ratings.sqlite", samples_dir=tmp_path / "samples",
                               image_dir=tmp_path / "display", admins=("root",))
    fill(context, BLIND, blind=True, owner="alice")
    fill(context, OPEN, blind=False, owner="alice")
    yield context
    context.store.close()


def endpoint(demo: gr.Blocks, api_name: str):
    """The function behind a gr.api endpoint (a closure inside build_app)."""
    return next(f.fn for f in demo.fns.values() if f.api_name == api_name)


def text_of(value) -> str:
    """Everything a handler returned, as text: tables, strings, dicts, and the contents of returned files."""
    if isinstance(value, pd.DataFrame):
        return value.to_csv() + " ".join(map(str, value.columns))
    if isinstance(value, (list, tuple)):
        return " ".join(text_of(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k} {text_of(v)}" for k, v in value.items())
    if isinstance(value, str) and value.startswith("/") and Path(value).is_file():  # an exported file
        path = Path(value)
        if path.suffix == ".xlsx":
            return " ".join(text_of(frame) for frame in pd.read_excel(path, sheet_name=None).values())
        return path.read_text(encoding="utf-8-sig")
    return str(value)


def names_in(value) -> list[str]:
    text = text_of(value)
    return [m for m in MODELS if m in text]


@dataclass
class Refused:
    message: str


def session_of(ctx, rater: str, name: str = BLIND) -> dict:
    session, _, _, _ = page_session.open_set(ctx, page_session.new_session(), rater, name, False, "greedy")
    return session


def everything(ctx, session) -> dict:
    """What each name-revealing handler gives this session (or the gr.Error message it raises)."""
    got = {}
    calls = {"results": lambda: page_results.results(ctx, session, None),
             "rater_results": lambda: page_results.rater_results(ctx, session, None),
             "export": lambda: page_results.export(ctx, session, None),
             "pairwise_results": lambda: page_pairwise.pairwise_results(ctx, session),
             "pairwise_export": lambda: page_pairwise.pairwise_export(ctx, session),
             "reveal": lambda: page_compare.grid_view(ctx, page_compare.reveal_names(ctx, session))}
    for key, call in calls.items():
        try:
            got[key] = call()
        except gr.Error as e:
            got[key] = Refused(e.message)
    return got


def test_the_owner_sees_names_results_and_exports(ctx):
    got = everything(ctx, session_of(ctx, "alice"))
    for key, value in got.items():
        assert not isinstance(value, Refused), (key, value)
        assert names_in(value), key  # every one of them shows model names to the owner
    assert sorted(got["results"][0]["model"]) == MODELS
    assert {c.label.split(" = ")[1] for r in got["reveal"].rows for c in r.cells} == set(MODELS)


def test_another_rater_is_refused_and_gets_no_model_name(ctx):
    bob = session_of(ctx, "bob")
    for key, value in everything(ctx, bob).items():
        assert isinstance(value, Refused), key
        assert (REFUSAL in value.message) if key != "reveal" else ("Only the owner" in value.message), value
        assert not names_in(value), key
    # A session that says "revealed" (however it got there) still shows bob no name.
    view = page_compare.grid_view(ctx, {**bob, "revealed": True})
    assert {c.label for r in view.rows for c in r.cells} == {"Caption A", "Caption B", "Caption C"}
    # Typing the owner's name is honour-based without --auth: it is the owner then.
    assert names_in(page_results.results(ctx, session_of(ctx, "alice"), BLIND))


def test_an_admin_sees_everything(ctx):
    got = everything(ctx, session_of(ctx, "root"))
    assert all(not isinstance(value, Refused) and names_in(value) for value in got.values())


def test_a_set_that_is_not_blind_is_unaffected(ctx):
    got = everything(ctx, session_of(ctx, "bob", OPEN))
    for key in ("results", "rater_results", "export", "pairwise_results", "pairwise_export"):
        assert not isinstance(got[key], Refused) and names_in(got[key]), key
    assert access.may_see_names(ctx.store, OPEN, None)


def test_a_set_from_an_older_database_has_no_owner_so_only_admins_see_names(ctx):
    fill(ctx, "legacy", blind=True, owner=None)
    assert not access.may_see_names(ctx.store, "legacy", "alice", ctx.admins)
    assert access.may_see_names(ctx.store, "legacy", "root", ctx.admins)
    with pytest.raises(gr.Error, match="for its owner"):
        page_results.results(ctx, session_of(ctx, "alice", "legacy"), None)


def test_opening_a_new_set_makes_the_rater_its_owner(ctx):
    page_session.open_set(ctx, page_session.new_session(), "carol", "carols", True, "greedy")
    page_session.open_set(ctx, page_session.new_session(), "dave", "carols", True, "greedy")
    assert ctx.store.get_set("carols")["owner"] == "carol"


def test_captions_and_rate_endpoints_give_a_non_owner_column_labels(ctx):
    demo = page_blocks.build_app(context=ctx)
    captions, rate = endpoint(demo, "captions"), endpoint(demo, "rate")
    owner_rows = captions(BLIND, "alice")
    assert {r["model_name"] for r in owner_rows} == set(MODELS)
    rows = captions(BLIND, "bob")
    assert not names_in(rows) and "model_name" not in rows[0]
    assert sorted(r["caption"] for r in rows) == sorted(r["caption"] for r in owner_rows)
    grid = {(row.image_hash, c.label): c.model_name for row in page_compare.grid_view(ctx, session_of(ctx, "bob")).rows
            for c in row.cells}
    assert {(r["image_hash"], r["column"]) for r in rows} == set(grid)  # the same labels as the grid's

    first = rows[0]
    message = rate(BLIND, "bob", first["image_hash"], first["column"], 1)
    assert "saved 1" in message and not names_in(message)
    saved = ctx.store.ratings(BLIND, "bob")
    assert saved["model_name"].tolist() == [grid[(first["image_hash"], first["column"])]]
    with pytest.raises(gr.Error) as refused:  # a model name is no label: refused without naming any model
        rate(BLIND, "bob", first["image_hash"], MODELS[1], 2)
    # (it says what it received, and names no other model: no oracle for which models the image has)
    assert "Caption A" in refused.value.message and names_in(refused.value.message) == [MODELS[1]]
    assert rate(BLIND, "alice", "hash1", MODELS[2], 2).startswith("saved 2")  # the owner rates by name
    assert {r["model_name"] for r in captions(OPEN, "bob")} == set(MODELS)  # not blind: names for all


def test_with_logins_the_rule_follows_the_login_through_the_api(ctx):
    demo = page_blocks.build_app(context=ctx)
    demo.queue()
    options = page_server.launch_options(ctx, port=free_port(), auth=[("alice", "pw"), ("bob", "pw"), ("root", "pw")])
    demo.launch(**options, prevent_thread_lock=True, quiet=True)
    try:
        def client(user: str) -> Client:
            return Client(demo.local_url, auth=(user, "pw"), verbose=False)

        bob = client("bob")
        bob.predict("alice", BLIND, False, "greedy", api_name="/open_set")  # typing the owner's name is not enough
        for api_name, args in [("/results", (BLIND,)), ("/export", (BLIND,)), ("/pairwise_results", ()),
                               ("/pairwise_export", ())]:
            with pytest.raises(AppError, match="for its owner") as refused:
                bob.predict(*args, api_name=api_name)
            assert not names_in(str(refused.value))
        rows = bob.predict(BLIND, "alice", api_name="/captions")
        assert not names_in(rows) and {r["column"] for r in rows} == {"Caption A", "Caption B", "Caption C"}

        # The owner, and an admin, by login.
        alice = client("alice")
        alice.predict("alice", BLIND, False, "greedy", api_name="/open_set")
        table, _, _ = alice.predict(BLIND, api_name="/results")
        assert sorted(r[1] for r in table["data"]) == MODELS
        assert {r["model_name"] for r in alice.predict(BLIND, "", api_name="/captions")} == set(MODELS)
        root = client("root")
        root.predict("root", BLIND, False, "greedy", api_name="/open_set")
        assert names_in(root.predict(api_name="/pairwise_results"))
    finally:
        demo.close()


def test_admin_option_is_repeatable_or_comma_separated(capsys):
    args = app.build_parser().parse_args(["--admin", "root", "--admin", "ann, bo", "--admin", "root"])
    assert page_server.parse_admins(args.admin) == ("root", "ann", "bo")
    assert page_server.parse_admins(app.build_parser().parse_args([]).admin) == ()
    assert app.main(["--admin", "x" * 200, "--port", str(free_port())]) == 2  # one clear line, no traceback
    err = capsys.readouterr().err
    assert err.startswith("error: --admin user name is 200 characters long") and err.count("\n") == 1


def test_marking_gold_from_the_page_is_for_the_owner(ctx):
    """The Results tab's gold control: the owner (or an admin) makes an expert's scores the gold scores and
    the per-rater table then shows agreement with them; any other rater is refused and nothing changes."""
    bob = session_of(ctx, "bob", OPEN)
    for model, score in zip(MODELS, (2, 0, 1)):
        ctx.store.rate(OPEN, "bob", "hash0", model, score)
    with pytest.raises(gr.Error, match="Only the owner of set 'open-set'"):
        page_results.mark_gold(ctx, bob, OPEN, "alice")
    assert ctx.store.gold_scores(OPEN).empty
    alice = session_of(ctx, "alice", OPEN)
    with pytest.raises(gr.Error, match="Type the name of the rater"):
        page_results.mark_gold(ctx, alice, OPEN, "  ")
    with pytest.raises(gr.Error, match="'carol' has rated nothing"):
        page_results.mark_gold(ctx, alice, OPEN, "carol")
    message = page_results.mark_gold(ctx, alice, OPEN, "alice")
    assert message.startswith("1 caption(s) now have alice's score") and "1 gold caption(s)" in message
    assert page_results.mark_gold(ctx, session_of(ctx, "root", OPEN), OPEN, "alice").startswith("0 caption(s)")  # admin
    per_rater = page_results.rater_results(ctx, alice, OPEN).set_index("rater")
    assert per_rater.loc["bob", "gold rated"] == 1 and per_rater.loc["bob", "gold exact %"] == 100.0
