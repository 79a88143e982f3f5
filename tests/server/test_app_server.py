"""`python app.py` as one server: the Gradio page mounted on the REST API's FastAPI app (`page_server.build_server`),
served by uvicorn as `main` serves it. The page keeps its theme, login, upload limit and blocked paths; the API
shares the login (HTTP Basic) and the limit; ratings saved through the page and its API are counted."""

from __future__ import annotations

import base64

import httpx
import pytest
from gradio_client import Client, handle_file

import app
from captioning.zoo import WEIGHTS_FILE
from helpers import build_tiny_zoo, free_port, serve_asgi_in_thread, write_images
from page import blocks as page_blocks
from page import compare as page_compare
from page import server as page_server


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("one-server")
    zoo = build_tiny_zoo(root / "zoo", ["alpha", "beta"])
    demo = page_blocks.build_app(zoo, root / "ratings.sqlite", samples_dir=root / "samples", image_dir=root / "display")
    demo.queue(default_concurrency_limit=4)
    server = page_server.build_server(demo, auth=page_server.parse_auth("ann:s3cret"), max_file_size="50kb", api_token="tok")
    try:
        for url in serve_asgi_in_thread(server):
            yield demo, url, root
    finally:
        demo.ctx.store.close()


def test_page_keeps_its_login_theme_and_blocked_paths(served):
    demo, url, _ = served
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/gradio_api/info").status_code in (401, 403)
        assert http.post("/login", data={"username": "ann", "password": "wrong"}).status_code >= 400
        assert http.post("/login", data={"username": "ann", "password": "s3cret"}).status_code == 200
        config = http.get("/config").json()
        assert config["theme"] == "soft" and ".grid-row" in config["css"] and "captionZooKeys" in config["js"]
        assert config["max_file_size"] == 51200
        db = demo.ctx.store.path.resolve()
        for private in (db, (demo.ctx.zoo_dir / "alpha" / WEIGHTS_FILE).resolve()):
            assert http.get(f"/gradio_api/file={private}").status_code == 403
        assert http.get("/").status_code == 200
        # a file input naming a server file instead of an upload is refused (Gradio's check, kept when mounted)
        given = {"path": str(db), "meta": {"_type": "gradio.FileData"}}
        data = ["eve", "probe", False, [given], [], ["alpha"], "greedy"]
        event = http.post("/gradio_api/call/caption", json={"data": data}).json()["event_id"]
        stream = http.get(f"/gradio_api/call/caption/{event}").text
        assert "event: error" in stream and page_blocks.UPLOADS_ONLY in stream, stream


def test_api_shares_the_login_and_the_upload_limit(served, tmp_path):
    _, url, _ = served
    small = write_images(tmp_path, 1)[0]
    big = tmp_path / "big.png"
    big.write_bytes(small.read_bytes() + b"\0" * 80_000)
    with httpx.Client(base_url=url, timeout=60) as http:
        body = {"images": [{"data": base64.b64encode(small.read_bytes()).decode()}], "caption_mode": "greedy",
                "models": ["alpha"]}
        assert http.post("/api/v1/caption", json=body).status_code == 401
        answer = http.post("/api/v1/caption", json=body, auth=("ann", "s3cret"))
        assert answer.status_code == 200 and answer.json()["images"][0]["models"][0]["model"] == "alpha"
        assert http.post("/api/v1/caption", json=body, headers={"Authorization": "Bearer tok"}).status_code == 200
        body["images"] = [{"data": base64.b64encode(big.read_bytes()).decode()}]
        answer = http.post("/api/v1/caption", json=body, auth=("ann", "s3cret"))
        assert answer.status_code == 413 and "51,200 bytes" in answer.json()["error"]["message"]
        # the page refuses the same file with the same limit
        assert http.post("/login", data={"username": "ann", "password": "s3cret"}).status_code == 200
        upload = http.post("/gradio_api/upload", files={"files": ("big.png", big.read_bytes(), "image/png")})
        assert upload.status_code == 413
        assert http.get("/healthz").json() == {"status": "ok"}
        assert http.get("/readyz").json()["status"] == "ready"
        assert http.get("/docs").status_code == 200


def test_ratings_through_the_page_and_its_api_are_counted(served, tmp_path):
    demo, url, _ = served
    images = write_images(tmp_path, 1, seed=3)
    client = Client(url, auth=("ann", "s3cret"), verbose=False)
    status, _ = client.predict("ann", "counted", False, [handle_file(str(images[0]))], [], ["alpha", "beta"],
                               "greedy", api_name="/caption")
    assert "2 new caption(s)" in status
    captions = client.predict("counted", api_name="/captions")
    client.predict("counted", "ann", captions[0]["image_hash"], captions[0]["model_name"], 2, api_name="/rate")
    page_compare.rate_caption(demo.ctx, captions[1]["image_hash"], captions[1]["model_name"], "Caption B",
                     {"eval_set": "counted", "rater": "ann"}, 1)  # the grid's radio handler
    with httpx.Client(base_url=url, timeout=60) as http:
        lines = http.get("/metrics", auth=("ann", "s3cret")).text.splitlines()
    assert 'captionzoo_ratings_saved_total{source="api"} 1.0' in lines
    assert 'captionzoo_ratings_saved_total{source="page"} 1.0' in lines


def test_bad_batching_options_exit_with_one_line(tmp_path, capsys):
    args = ["--db", str(tmp_path / "r.sqlite"), "--image-cache", str(tmp_path / "c"), "--port", str(free_port())]
    assert app.main([*args, "--max-batch-wait-ms", "-1"]) == 2
    assert app.main([*args, "--max-batch", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("error: --max-batch-wait-ms must be >= 0") for line in lines)
