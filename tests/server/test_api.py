"""The REST API (`server.api`) on a tiny zoo: captions through the library's one path with their settings and
weights hash, JSON and multipart, every error kind as JSON with its 4xx (and the server goes on serving),
auth by HTTP Basic and by bearer token, micro-batching merging concurrent requests, and /metrics."""

from __future__ import annotations

import base64
import io
import threading

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from captioning.generation import get_settings
from captioning.images import load_image
from captioning.pipeline import caption_images
from captioning.preprocessing import needed_side
from captioning.zoo import CONFIG_FILE, WEIGHTS_FILE, file_sha256, load_entry
from helpers import build_tiny_zoo, serve_asgi_in_thread, write_images
from server.api import ApiConfig, create_app

LIMIT = 50_000  # bytes per image in these tests


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-zoo")
    zoo = build_tiny_zoo(root / "zoo", ["alpha", "beta"])
    broken = zoo / "broken"
    broken.mkdir()
    (broken / CONFIG_FILE).write_text("{not json")
    return zoo


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("api-images"), 3, seed=4)


@pytest.fixture(scope="module")
def client(zoo):
    app = create_app(ApiConfig(zoo_dir=zoo, max_file_size=LIMIT, max_images=4, default_models=["alpha"]))
    with TestClient(app) as c:
        yield c


def b64(path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def sample(client, name: str, **labels) -> float | None:
    return client.app.state.api.metrics.registry.get_sample_value(name, labels or None)


def test_caption_json_is_the_library_caption_path(client, zoo, images):
    body = {"images": [{"id": "first", "data": b64(images[0])},
                       {"id": "second", "data": "data:image/png;base64," + b64(images[1])}],
            "models": ["alpha", "beta"], "caption_mode": "greedy"}
    answer = client.post("/api/v1/caption", json=body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["preset"] == "greedy" and [i["id"] for i in got["images"]] == ["first", "second"]

    models = [load_entry(zoo / "alpha"), load_entry(zoo / "beta")]
    pictures = [load_image(p.read_bytes(), min_side=needed_side(models)) for p in images[:2]]
    expected = caption_images(models, pictures, names=["first", "second"], settings="greedy")
    flat = [m for image in got["images"] for m in image["models"]]
    assert [m["model"] for m in flat] == ["alpha", "beta", "alpha", "beta"]
    assert [m["captions"] for m in flat] == [r.captions for r in expected]
    assert all(m["settings"] == get_settings("greedy").to_dict() for m in flat)
    assert [m["weights_hash"] for m in flat] == [file_sha256(zoo / n / WEIGHTS_FILE) for n in ["alpha", "beta"] * 2]
    # the same images as plain base64 strings (named image-<i>), mixed with an object
    plain = client.post("/api/v1/caption", json={**body, "images": [b64(images[0]), {"id": "second",
                                                                                     "data": b64(images[1])}]})
    assert plain.status_code == 200, plain.text
    assert [i["id"] for i in plain.json()["images"]] == ["image-0", "second"]
    assert [m["captions"] for image in plain.json()["images"] for m in image["models"]] == [r.captions for r in expected]
    bad = client.post("/api/v1/caption", json={**body, "images": ["not base64!"]})
    assert bad.status_code == 400 and bad.json()["error"]["kind"] == "bad_base64"


def test_caption_multipart_with_preset_and_several_captions(client, images):
    files = [("images", (p.name, p.read_bytes(), "image/png")) for p in images[:2]]
    answer = client.post("/api/v1/caption", files=files, data={"models": "alpha,beta", "preset": "safe_diverse",
                                                                "num_captions": "2"})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert [i["id"] for i in got["images"]] == [images[0].name, images[1].name]
    for image in got["images"]:
        assert [m["model"] for m in image["models"]] == ["alpha", "beta"]
        for m in image["models"]:
            assert len(m["captions"]) == 2 and len(m["scores"]) == 2
            assert m["settings"] == get_settings("safe_diverse", num_captions=2).to_dict()


def test_default_models_and_preset(client, images):
    got = client.post("/api/v1/caption", json={"images": [{"data": b64(images[2])}]}).json()
    assert got["preset"] == "consistent"
    assert got["images"][0]["id"] == "image-0" and [m["model"] for m in got["images"][0]["models"]] == ["alpha"]


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


BIG = _png((200, 200))  # about 120 KB of noise: over LIMIT


@pytest.mark.parametrize("body, status, kind, words", [
    ({"images": [{"data": "not base64 at all!"}]}, 400, "bad_base64", "not valid base64"),
    ({"images": [{"data": "data:image/png,rawbytes"}]}, 400, "bad_base64", "data URL"),
    ({"images": [{"id": "notes.jpg", "data": base64.b64encode(b"just some text").decode()}]}, 415, "not_an_image",
     "notes.jpg"),
    ({"images": [{"id": "big", "data": base64.b64encode(BIG).decode()}]}, 413, "too_large", "50,000 bytes"),
    ({"images": [{"data": "AAAA"}] * 5}, 413, "too_many_images", "at most 4"),
    ({"images": [{"data": "AAAA"}], "models": ["alpha", "nope"]}, 404, "unknown_model", "['nope']"),
    ({"images": [{"data": "AAAA"}], "models": ["broken"]}, 503, "model_unavailable", "broken"),
    ({"images": [{"data": "AAAA"}], "caption_mode": "wild"}, 422, "unknown_preset", "'wild'"),
    ({"images": [{"data": "AAAA"}], "caption_mode": "greedy", "num_captions": 2}, 422, "invalid_settings", "greedy"),
    ({"images": [{"data": "AAAA"}], "caption_mode": "greedy", "preset": "consistent"}, 422, "invalid_request",
     "disagree"),
    ({"models": ["alpha"]}, 422, "invalid_request", "images"),
])
def test_errors_are_json_with_their_status_and_the_server_keeps_serving(client, images, body, status, kind, words):
    before = sample(client, "captionzoo_errors_total", kind=kind) or 0
    answer = client.post("/api/v1/caption", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["kind"] == kind and words in error["message"]
    assert sample(client, "captionzoo_errors_total", kind=kind) == before + 1
    good = client.post("/api/v1/caption", json={"images": [{"data": b64(images[0])}], "caption_mode": "greedy"})
    assert good.status_code == 200


def test_multipart_and_body_errors(client, images):
    answer = client.post("/api/v1/caption", files=[("images", ("big.png", BIG, "image/png"))])
    assert answer.status_code == 413 and answer.json()["error"]["kind"] == "too_large"
    answer = client.post("/api/v1/caption", files=[("other", ("a.png", images[0].read_bytes(), "image/png"))])
    assert answer.status_code == 422 and "images" in answer.json()["error"]["message"]
    answer = client.post("/api/v1/caption", files=[("images", ("a.png", images[0].read_bytes(), "image/png"))],
                         data={"num_captions": "many"})
    assert answer.status_code == 422 and "num_captions" in answer.json()["error"]["message"]
    answer = client.post("/api/v1/caption", content=b"hello", headers={"content-type": "text/plain"})
    assert answer.status_code == 415 and answer.json()["error"]["kind"] == "unsupported_media_type"
    answer = client.post("/api/v1/caption", content=b"{broken", headers={"content-type": "application/json"})
    assert answer.status_code == 422 and answer.json()["error"]["kind"] == "invalid_request"
    assert client.get("/api/v1/nothing").json()["error"]["kind"] == "not_found"


def test_models_listing_health_and_docs(client, zoo):
    listing = client.get("/api/v1/models").json()
    rows = {r["name"]: r for r in listing["models"]}
    assert set(rows) == {"alpha", "beta", "broken"} and "error" in rows["broken"]
    assert rows["alpha"]["weights_hash"] == file_sha256(zoo / "alpha" / WEIGHTS_FILE)
    assert rows["alpha"]["default"] and not rows["beta"]["default"]
    assert all("path" not in r for r in listing["models"]) and "consistent" in listing["presets"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "models": ["alpha"]}
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/api/v1/caption"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)
    assert "$ref" not in str(body) and "images" in body["application/json"]["schema"]["properties"]
    assert client.get("/docs").status_code == 200


def test_not_ready_without_a_usable_zoo(tmp_path):
    with TestClient(create_app(ApiConfig(zoo_dir=tmp_path / "missing"))) as c:
        assert c.get("/healthz").status_code == 200
        answer = c.get("/readyz")
        assert answer.status_code == 503 and "does not exist" in answer.json()["error"]["message"]
    (tmp_path / "empty").mkdir()
    with TestClient(create_app(ApiConfig(zoo_dir=tmp_path / "empty"))) as c:
        assert c.get("/readyz").json()["error"]["kind"] == "not_ready"


def test_auth_basic_and_bearer_token(zoo, images):
    app = create_app(ApiConfig(zoo_dir=zoo, auth=[("ann", "s3cret")], api_token="tok-123", default_models=["alpha"]))
    body = {"images": [{"data": b64(images[0])}], "caption_mode": "greedy"}
    with TestClient(app) as c:
        refused = c.post("/api/v1/caption", json=body)
        assert refused.status_code == 401 and refused.json()["error"]["kind"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert c.post("/api/v1/caption", json=body, auth=("ann", "s3cret")).status_code == 200
        assert c.post("/api/v1/caption", json=body, auth=("ann", "wrong")).status_code == 401
        assert c.post("/api/v1/caption", json=body, headers={"Authorization": "Bearer tok-123"}).status_code == 200
        assert c.post("/api/v1/caption", json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert c.get("/api/v1/models").status_code == 401 and c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer tok-123"}).status_code == 200
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
    only_token = create_app(ApiConfig(zoo_dir=zoo, api_token="tok-123"))
    with TestClient(only_token) as c:
        answer = c.get("/api/v1/models", auth=("ann", "s3cret"))
        assert answer.status_code == 401 and answer.headers["www-authenticate"].startswith("Bearer")


def _post_at_once(url: str, bodies: list[dict]) -> list[httpx.Response]:
    """Every body posted from its own thread, released together."""
    answers: list = [None] * len(bodies)
    start = threading.Barrier(len(bodies))

    def post(i: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            start.wait()
            answers[i] = http.post("/api/v1/caption", json=bodies[i])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


@pytest.mark.parametrize("wait_ms", [300, 0])
def test_micro_batching_merges_concurrent_requests(zoo, tmp_path, wait_ms):
    pictures = write_images(tmp_path, 6, seed=9)
    app = create_app(ApiConfig(zoo_dir=zoo, max_batch_wait_ms=wait_ms, max_batch=32))
    bodies = [{"images": [{"id": p.name, "data": b64(p)}], "models": ["alpha", "beta"], "caption_mode": "greedy"}
              for p in pictures]
    for url in serve_asgi_in_thread(app):
        answers = _post_at_once(url, bodies)
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    # each request gets its own image's captions back, the same as the library gives that image alone
    models = [load_entry(zoo / "alpha"), load_entry(zoo / "beta")]
    for picture, answer in zip(pictures, answers):
        image = answer.json()["images"][0]
        assert image["id"] == picture.name
        alone = caption_images(models, [load_image(picture, min_side=needed_side(models))], settings="greedy")
        assert [m["captions"] for m in image["models"]] == [r.captions for r in alone]
    registry = app.state.api.metrics.registry
    batches = registry.get_sample_value("captionzoo_batch_requests_count")
    assert registry.get_sample_value("captionzoo_batch_requests_sum") == 6
    assert registry.get_sample_value("captionzoo_batch_images_sum") == 6
    if wait_ms:
        assert batches < 6  # some requests shared a caption_images call
        assert registry.get_sample_value("captionzoo_batch_requests_bucket", {"le": "1.0"}) < batches
    else:
        assert batches == 6  # merging off: one call per request
    assert registry.get_sample_value("captionzoo_queue_depth") == 0


def test_requests_with_other_settings_are_not_merged(zoo, tmp_path):
    pictures = write_images(tmp_path, 4, seed=11)
    app = create_app(ApiConfig(zoo_dir=zoo, max_batch_wait_ms=300))
    bodies = [{"images": [{"id": p.name, "data": b64(p)}], "models": ["alpha"],
               "caption_mode": "greedy" if i % 2 else "consistent"} for i, p in enumerate(pictures)]
    for url in serve_asgi_in_thread(app):
        answers = _post_at_once(url, bodies)
    for body, answer in zip(bodies, answers):
        assert answer.status_code == 200
        assert answer.json()["images"][0]["models"][0]["settings"] == get_settings(body["caption_mode"]).to_dict()
    registry = app.state.api.metrics.registry
    assert registry.get_sample_value("captionzoo_batch_requests_count") >= 2  # one batch per setting at least
    assert registry.get_sample_value("captionzoo_batch_requests_sum") == 4


def test_metrics_text(client, images):
    before = sample(client, "captionzoo_captions_generated_total", model="beta") or 0
    body = {"images": [{"data": b64(p)} for p in images], "models": ["beta"], "caption_mode": "consistent",
            "num_captions": 3}
    got = client.post("/api/v1/caption", json=body).json()
    made = sum(len(m["captions"]) for i in got["images"] for m in i["models"])
    assert made == 9
    text = client.get("/metrics")
    assert text.headers["content-type"].startswith("text/plain")
    lines = text.text.splitlines()
    assert f'captionzoo_captions_generated_total{{model="beta"}} {before + 9:.1f}' in lines
    assert sample(client, "captionzoo_tokens_generated_total", model="beta") > 0
    assert sample(client, "captionzoo_request_duration_seconds_count", endpoint="/api/v1/caption", model="beta") >= 1
    assert sample(client, "captionzoo_models_loaded") >= 1
    assert any(line.startswith("captionzoo_batch_images_bucket") for line in lines)
    assert any(line.startswith("process_resident_memory_bytes") for line in lines)


def test_another_makers_model_is_served_like_our_own(zoo, images, tmp_path):
    """A GIT entry beside ours: listed with its family and weights hash, captioned through the same path."""
    import shutil

    from captioning.zoo import weights_sha256
    from foreign_models import build_git

    mixed = tmp_path / "zoo"
    shutil.copytree(zoo / "alpha", mixed / "alpha")
    build_git(mixed / "git-tiny")
    with TestClient(create_app(ApiConfig(zoo_dir=mixed, max_file_size=LIMIT, max_images=4))) as c:
        rows = {r["name"]: r for r in c.get("/api/v1/models").json()["models"]}
        assert rows["git-tiny"]["family"] == "GIT" and rows["alpha"]["family"] == "prefix captioner"
        assert rows["git-tiny"]["weights_hash"] == weights_sha256(mixed / "git-tiny")
        body = {"images": [{"id": "one", "data": b64(images[0])}], "models": ["alpha", "git-tiny"],
                "caption_mode": "greedy"}
        answer = c.post("/api/v1/caption", json=body)
        assert answer.status_code == 200, answer.text
        got = {m["model"]: m for m in answer.json()["images"][0]["models"]}
        models = [load_entry(mixed / "alpha"), load_entry(mixed / "git-tiny")]
        picture = load_image(images[0].read_bytes(), min_side=needed_side(models))
        expected = caption_images(models, [picture], names=["one"], settings="greedy")
        assert [got[r.model_name]["captions"] for r in expected] == [r.captions for r in expected]
