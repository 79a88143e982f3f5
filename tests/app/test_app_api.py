"""Protects the running app as clients see it, through `gradio_client` and plain HTTP.

The named endpoints (open_set, caption, captions, rate, results, export, import_captions) work end to end;
errors come back as messages, not crashes; the database and the zoo are never served as files, and a file
input naming a server path is refused with a message that names no server path; several
clients rating at once lose nothing; and killing the app mid-session (SIGKILL) and starting it again on the
same database keeps every rating and brings the rater's session back.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from captioning.zoo import CONFIG_FILE, WEIGHTS_FILE
from helpers import AppProcess, build_tiny_zoo, free_port, serve_in_thread, write_images
from page import blocks as page_blocks
from page import server as page_server
from rating.store import RatingStore


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app launched in this process, in a thread, exactly as `python app.py` launches it."""
    root = tmp_path_factory.mktemp("app-api")
    for demo in serve_in_thread(build_tiny_zoo(root / "zoo"), root):
        yield demo, root


def client_for(demo) -> Client:
    return Client(demo.local_url, verbose=False)


def test_named_endpoints_caption_rate_results_export(server):
    demo, root = server
    images = write_images(root / "api-images", 2, seed=1, broken=True)
    client = client_for(demo)
    assert {"/open_set", "/caption", "/captions", "/rate", "/results", "/export", "/import_captions"} <= set(
        client.view_api(print_info=False, return_format="dict")["named_endpoints"])

    status, line = client.predict("alice", "api-set", False, [handle_file(str(p)) for p in images], [],
                                  ["alpha", "beta"], "greedy", api_name="/caption")
    assert "2 image(s) x 2 model(s)" in status and "broken.jpg" in status and "4 captions" in line
    captions = client.predict("api-set", api_name="/captions")
    assert len(captions) == 4 and {c["model_name"] for c in captions} == {"alpha", "beta"}
    for c in captions:
        score = 2 if c["model_name"] == "alpha" else 1
        assert "saved" in client.predict("api-set", "alice", c["image_hash"], c["model_name"], score, api_name="/rate")

    table, agreement_text, plot = client.predict("api-set", api_name="/results")
    rows = {r[1]: r for r in table["data"]}  # rank, model, images rated, total, accuracy, CI
    assert rows["alpha"][:5] == [1, "alpha", 2, 4.0, 100.0] and rows["beta"][:5] == [2, "beta", 2, 2.0, 50.0]
    assert "two or more raters" in agreement_text and plot is not None

    files = client.predict("api-set", api_name="/export")
    by_name = {Path(f).name: Path(f) for f in files}
    assert set(by_name) == {"api-set_summary.csv", "api-set_ratings.csv", "api-set.xlsx", "api-set_history.csv"}
    ratings = list(csv.DictReader(io.StringIO(by_name["api-set_ratings.csv"].read_text(encoding="utf-8-sig"))))
    assert len(ratings) == 4 and {r["rater"] for r in ratings} == {"alice"}
    assert all(r["decoding"].startswith("{") and r["model_weights_hash"] for r in ratings)

    # Reopening the set as the same rater, from a new client (a new browser session), shows the progress.
    # (The browser-side state, like the session state, is not part of the API's outputs.)
    line, preset, blind = client_for(demo).predict("alice", "api-set", True, "consistent", api_name="/open_set")
    assert "you rated 4 of 4" in line and preset == "greedy" and blind is False


def test_import_endpoint(server):
    demo, root = server
    images = write_images(root / "import-images", 2, seed=2)
    table = root / "batch.csv"
    table.write_text("image_id;model_name;caption\n" + "".join(f"{p.name};other-project;a shape\n" for p in images))
    status, line = client_for(demo).predict("dan", "imported", False, "greedy", handle_file(str(table)),
                                            [handle_file(str(p)) for p in images], api_name="/import_captions")
    assert "Imported 2 caption(s) for 2 image(s)" in status and "2 captions" in line


def test_errors_come_back_as_messages(server):
    demo, _ = server
    client = client_for(demo)
    with pytest.raises(AppError, match="score must be 0, 1 or 2, got 5"):
        client.predict("api-set", "alice", "0" * 64, "alpha", 5, api_name="/rate")
    with pytest.raises(AppError, match="Choose at least one model"):
        client.predict("alice", "api-set", False, [], [], [], "greedy", api_name="/caption")
    with pytest.raises(AppError, match="Evaluation set 'nope' not found"):
        client.predict("nope", api_name="/results")
    with pytest.raises(AppError, match="Evaluation set 'nope' not found"):
        client.predict("nope", api_name="/captions")
    assert client.predict("api-set", api_name="/captions")  # and the app keeps serving


def _status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def test_database_and_zoo_are_never_served(server):
    demo, root = server
    base = demo.local_url.rstrip("/") + "/gradio_api/file="
    db = demo.ctx.store.path.resolve()
    assert _status(base + str(db)) == 403
    assert _status(base + str(db) + "-wal") == 403
    assert _status(base + str((demo.ctx.zoo_dir / "alpha" / WEIGHTS_FILE).resolve())) == 403
    assert _status(base + str((demo.ctx.zoo_dir / "alpha" / CONFIG_FILE).resolve())) == 403
    shown = next(demo.ctx.image_dir.glob("*.png"), None) or pytest.skip("no display image yet")
    assert _status(base + str(shown.resolve())) == 200  # the display copies are what the page shows


def test_several_clients_rating_at_once_lose_nothing(server):
    demo, root = server
    images = write_images(root / "crowd", 3, seed=4)
    client_for(demo).predict("setup", "crowd", False, [handle_file(str(p)) for p in images], [],
                             ["alpha", "beta", "gamma"], "greedy", api_name="/caption")
    captions = client_for(demo).predict("crowd", api_name="/captions")
    assert len(captions) == 9
    raters = [f"rater-{i}" for i in range(5)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(raters))

    def work(rater: str) -> None:
        try:
            client = client_for(demo)
            barrier.wait()  # everyone starts at once
            for c in captions:
                client.predict("crowd", rater, c["image_hash"], c["model_name"], len(rater) % 3, api_name="/rate")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    stored = demo.ctx.store.ratings("crowd")
    assert len(stored) == len(raters) * 9 and sorted(stored["rater"].unique()) == raters


def test_restart_after_kill_keeps_every_rating(tmp_path):
    zoo = build_tiny_zoo(tmp_path / "zoo", ["alpha", "beta"])
    images = write_images(tmp_path / "images", 3, seed=5)
    db, cache = tmp_path / "ratings.sqlite", tmp_path / "display"
    first = AppProcess(zoo, db, cache)
    try:
        client = Client(first.url, verbose=False)
        client.predict("erin", "durable", True, [handle_file(str(p)) for p in images], [], ["alpha", "beta"],
                       "greedy", api_name="/caption")
        captions = client.predict("durable", "erin", api_name="/captions")  # blind: names for its owner only
        for c in captions[:5]:
            client.predict("durable", "erin", c["image_hash"], c["model_name"], 2, api_name="/rate")
    finally:
        first.kill()  # mid-session, no clean shutdown

    second = AppProcess(zoo, db, cache)
    try:
        client = Client(second.url, verbose=False)
        line, preset, blind = client.predict("erin", "durable", False, "consistent", api_name="/open_set")
        assert "you rated 5 of 6" in line and blind is True and preset == "greedy"
        table, _, _ = client.predict("durable", api_name="/results")
        assert sum(r[3] for r in table["data"]) == 10.0  # five ratings of 2
        client.predict("durable", "erin", captions[5]["image_hash"], captions[5]["model_name"], 0, api_name="/rate")
    finally:
        second.kill()
    with RatingStore(db) as store:
        assert len(store.ratings("durable", "erin")) == 6


def test_login_and_upload_limit(tmp_path):
    """`--auth USER:PASS` keeps strangers out; uploads over `max_file_size` are refused, the app keeps serving."""
    zoo = build_tiny_zoo(tmp_path / "zoo", ["alpha"])
    demo = page_blocks.build_app(zoo, tmp_path / "ratings.sqlite", samples_dir=tmp_path / "samples",
                         image_dir=tmp_path / "display")
    demo.queue()
    options = page_server.launch_options(demo.ctx, port=free_port(), auth=page_server.parse_auth("ann:s3cret"), max_file_size="50kb")
    demo.launch(**options, prevent_thread_lock=True, quiet=True)
    try:
        assert _status(demo.local_url.rstrip("/") + "/gradio_api/info") in (401, 403)
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises a bare Exception for a failed login
            Client(demo.local_url, auth=("ann", "wrong"), verbose=False)
        client = Client(demo.local_url, auth=("ann", "s3cret"), verbose=False)
        small = write_images(tmp_path / "small", 1)[0]
        big = tmp_path / "big.png"
        big.write_bytes(small.read_bytes() + b"\0" * 80_000)  # a valid PNG header, 80 KB of padding
        with pytest.raises(ValueError, match="exceeds the maximum file size of 51200 bytes"):  # the client reads it
            client.predict("ann", "limits", False, [handle_file(str(big))], [], ["alpha"], "greedy",
                           api_name="/caption")
        with httpx.Client(base_url=demo.local_url) as browser:  # and the server enforces it
            assert browser.post("/login", data={"username": "ann", "password": "s3cret"}).status_code == 200
            answer = browser.post("/gradio_api/upload", files={"files": ("big.png", big.read_bytes(), "image/png")})
            assert answer.status_code == 413, answer.text
        status, _ = client.predict("ann", "limits", False, [handle_file(str(small))], [], ["alpha"], "greedy",
                                   api_name="/caption")
        assert "1 new caption(s)" in status
    finally:
        demo.close()
        demo.ctx.store.close()


def _raw_call(demo, api_name: str, data: list) -> dict:
    """One call through plain HTTP (`/gradio_api/call/...`), which, unlike gradio_client, sends file inputs
    exactly as given: a client can name any path on the server this way. Returns the final event's data."""
    with httpx.Client(base_url=demo.local_url, timeout=60) as http:
        event = http.post(f"/gradio_api/call/{api_name}", json={"data": data}).json()["event_id"]
        stream = http.get(f"/gradio_api/call/{api_name}/{event}").text
    kind, _, payload = stream.strip().rpartition("event: ")[2].partition("\ndata: ")
    return {"event": kind.strip(), **(json.loads(payload) if payload.strip().startswith("{") else {})}


def test_a_server_path_is_refused_without_naming_server_paths(server):
    demo, root = server
    ctx = demo.ctx
    db = ctx.store.path.resolve()
    private = [str(root), str(ctx.zoo_dir.resolve()), str(db), str(ctx.image_dir.resolve()),
               str(ctx.work_dir.resolve()), str(Path.cwd()), "blocked_paths"]
    display = next(ctx.image_dir.glob("*.png"), ctx.image_dir / "none.png")
    attempts = [str(db), str(db) + "-wal", str(ctx.zoo_dir / "alpha" / CONFIG_FILE), "ratings.sqlite",
                str(display), "/etc/hostname"]
    for path in attempts:
        given = {"path": path, "meta": {"_type": "gradio.FileData"}}
        for api_name, data in [("caption", ["eve", "api-set", False, [given], [], ["alpha"], "greedy"]),
                               ("import_captions", ["eve", "api-set", False, "greedy", given, [given]])]:
            answer = _raw_call(demo, api_name, data)
            assert answer["event"] == "error", (path, answer)
            message = answer["error"]
            assert message == page_blocks.UPLOADS_ONLY, (path, message)
            assert not any(p in message for p in private) and "/" not in message
    assert client_for(demo).predict("api-set", api_name="/captions")  # and the app keeps serving
