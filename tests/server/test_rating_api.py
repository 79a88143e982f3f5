"""The raters' REST API (`server.rating_api`) with --login accounts (`server.auth`), on both backends: the queue
gives leased items with opaque caption ids and hides a blind set's names from raters; ratings are stored under
the signed-in account only (403 for another name), never beyond the overlap (409), on the set's scale (422);
a rater deletes their own rating; results of a blind set are for its owner and admins; wrong credentials get
one 401 that does not say which part was wrong; an unknown set is 404. Without --login the rater is named in
the request, as on the page."""
from __future__ import annotations

import base64

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from rating import accounts
from rating.images import display_path
from rating.store import RatingStore
from server.api import ApiConfig, create_app

SET = "team"
MODELS = ("alpha", "beta")
PASSWORDS = {"olga": "owner-pass-1", "ann": "rater-pass-1", "bob": "rater-pass-2", "ada": "admin-pass-1"}


def basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{PASSWORDS[user]}".encode()).decode()}


@pytest.fixture
def store(db, tmp_path):
    store = RatingStore(db)
    for name, role in (("olga", "owner"), ("ann", "rater"), ("bob", "rater"), ("ada", "admin")):
        accounts.add_user(store, name, role, PASSWORDS[name])
    for name, blind, overlap in ((SET, True, 1), ("open", False, None)):
        store.create_or_open_set(name, blind=blind, overlap=overlap, owner="olga")
        for i in range(3):
            image = f"{i:064x}"
            store.add_image(image, f"img{i}.png", 16, 16)
            for model in MODELS:
                store.save_caption(name, image, model, f"caption {i}-{MODELS.index(model)}", weights_hash=None,
                                   decoding=None)
    (tmp_path / "display").mkdir()
    Image.new("RGB", (16, 16), "red").save(display_path(tmp_path / "display", f"{0:064x}"))
    yield store
    store.close()


@pytest.fixture
def client(store, tmp_path):
    (tmp_path / "display").mkdir(exist_ok=True)
    app = create_app(ApiConfig(zoo_dir=tmp_path / "zoo", store=store, image_dir=tmp_path / "display", login=True))
    with TestClient(app) as c:
        yield c


def test_a_rater_gets_leased_items_without_blind_names_and_rates_under_their_own_name(client, store):
    item = client.get(f"/api/v1/sets/{SET}/next", headers=basic("ann")).json()["item"]
    assert item["image_id"] == "img0.png" and len(item["captions"]) == 2 and item["scale"] == [0, 2]
    assert all(set(c) == {"caption_id", "caption"} for c in item["captions"])  # blind: no model for a rater
    assert not any(model in str(item) for model in MODELS)  # nor anywhere else in the answer
    picture = client.get(item["image_url"], headers=basic("ann"))
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    first = item["captions"][0]
    body = {"image_hash": item["image_hash"], "caption_id": first["caption_id"], "score": 2}
    answer = client.post(f"/api/v1/sets/{SET}/ratings", json=body, headers=basic("ann"))
    assert answer.status_code == 201 and answer.json()["rating"]["rater"] == "ann"
    refused = client.post(f"/api/v1/sets/{SET}/ratings", json={**body, "rater": "bob"}, headers=basic("ann"))
    assert refused.status_code == 403 and "signed in as 'ann'" in refused.json()["error"]["message"]
    assert store.ratings(SET)["rater"].tolist() == ["ann"]  # nothing stored under bob's name
    full = client.post(f"/api/v1/sets/{SET}/ratings", json=body, headers=basic("bob"))  # overlap 1: taken
    assert full.status_code == 409 and full.json()["error"]["kind"] == "overlap_full"
    off_scale = client.post(f"/api/v1/sets/{SET}/ratings", headers=basic("ann"),
                            json={**body, "caption_id": item["captions"][1]["caption_id"], "score": 3})
    assert off_scale.status_code == 422 and "score must be 0, 1 or 2" in off_scale.json()["error"]["message"]
    bob_item = client.get(f"/api/v1/sets/{SET}/next", headers=basic("bob")).json()["item"]
    assert bob_item["image_hash"] != item["image_hash"]  # ann's image is leased (and half full)
    owner_item = client.get(f"/api/v1/sets/{SET}/next", headers=basic("olga")).json()["item"]
    assert all("model" in c for c in owner_item["captions"])  # the owner may see the names


def test_a_rater_deletes_their_own_rating_and_history_keeps_it(client, store):
    item = client.get("/api/v1/sets/open/next", headers=basic("bob")).json()["item"]
    cid = item["captions"][0]["caption_id"]
    assert item["captions"][0]["model"] in MODELS  # not blind: names shown
    client.post("/api/v1/sets/open/ratings", json={"image_hash": item["image_hash"], "caption_id": cid, "score": 1},
                headers=basic("bob"))
    url = f"/api/v1/sets/open/ratings/{item['image_hash']}/{cid}"
    assert client.delete(url, headers=basic("ann")).status_code == 404  # ann has no rating there
    assert client.delete(url, headers=basic("bob")).status_code == 200
    assert client.delete(url, headers=basic("bob")).status_code == 404
    assert store.ratings("open").empty
    history = store.history("open")
    assert history["rater"].tolist() == ["bob", "bob"]
    assert history["old_score"].tolist()[1:] == [1] and pd.isna(history["old_score"].iloc[0])
    assert history["new_score"].tolist()[:1] == [1] and pd.isna(history["new_score"].iloc[1])


def test_results_of_a_blind_set_are_for_its_owner_and_admins(client, store):
    store.rate(SET, "ann", f"{0:064x}", "alpha", 2)
    refused = client.get(f"/api/v1/sets/{SET}/results", headers=basic("ann"))
    assert refused.status_code == 403 and "for its owner and the admins" in refused.json()["error"]["message"]
    for who in ("olga", "ada"):
        found = client.get(f"/api/v1/sets/{SET}/results", headers=basic(who)).json()
        assert "alpha" in [row["model"] for row in found["models"]] and found["reviewed"] == 0
    assert client.get("/api/v1/sets/open/results", headers=basic("ann")).status_code == 200
    progress = client.get(f"/api/v1/sets/{SET}/progress", headers=basic("ann")).json()
    assert progress["overlap"] == 1 and progress["rater"]["rated"] == 1 and progress["images_complete"] == 0
    listing = client.get("/api/v1/sets", headers=basic("ann")).json()["sets"]
    assert {s["name"]: s["overlap"] for s in listing} == {SET: 1, "open": None}


def test_credentials_unknown_sets_and_tokens(client, store):
    wrong = client.get("/api/v1/sets", headers={"Authorization": "Basic " + base64.b64encode(b"ann:nope").decode()})
    unknown = client.get("/api/v1/sets", headers={"Authorization": "Basic " + base64.b64encode(b"zed:nope").decode()})
    none = client.get("/api/v1/sets")
    assert wrong.status_code == unknown.status_code == none.status_code == 401
    assert wrong.json() == unknown.json()  # nothing says which part was wrong
    assert client.get("/api/v1/sets/nope/next", headers=basic("ann")).status_code == 404
    token = accounts.create_token(store, "bob")
    by_token = client.get(f"/api/v1/sets/{SET}/next", headers={"Authorization": f"Bearer {token}"})
    assert by_token.status_code == 200 and by_token.json()["item"] is not None
    assert client.get("/api/v1/sets", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
    bad_id = client.post(f"/api/v1/sets/{SET}/ratings", headers=basic("bob"),
                         json={"image_hash": f"{0:064x}", "caption_id": "0" * 16, "score": 1})
    assert bad_id.status_code == 404 and bad_id.json()["error"]["kind"] == "unknown_caption"


def test_without_login_the_request_names_the_rater(store, tmp_path):
    app = create_app(ApiConfig(zoo_dir=tmp_path / "zoo", store=store))
    with TestClient(app) as client:
        assert client.get("/api/v1/sets/open/next").status_code == 422  # who is rating?
        item = client.get("/api/v1/sets/open/next", params={"rater": "carl"}).json()["item"]
        cid = item["captions"][0]["caption_id"]
        answer = client.post("/api/v1/sets/open/ratings",
                             json={"image_hash": item["image_hash"], "caption_id": cid, "score": 2, "rater": "carl"})
        assert answer.status_code == 201
        assert store.ratings("open")["rater"].tolist() == ["carl"]
        assert client.get(f"/api/v1/sets/{SET}/results", params={"rater": "carl"}).status_code == 403
        assert client.get(f"/api/v1/sets/{SET}/results", params={"rater": "olga"}).status_code == 200
