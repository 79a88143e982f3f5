"""Several processes, one database: two `python app.py --login` processes on a PostgreSQL that the test starts,
four raters working through the REST API at once, and one process killed with SIGKILL half-way. The raters of
the killed process carry on against the other one. At the end every caption has exactly R ratings by R different
raters, every acknowledged rating is in the database with its score, and no rater ever saw a blind set's model
names. Prints the figures (ratings per second, requests that failed with the killed process)."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

from helpers import AppProcess
from rating import accounts
from rating.store import RatingStore

pytestmark = pytest.mark.slow

SET = "team-blind"
OVERLAP = 2
IMAGES = 30
MODELS = ("alpha", "beta", "gamma")
RATERS = ("r1", "r2", "r3", "r4")
PASSWORD = "correct horse battery"


def call(base: str, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(base + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_two_processes_four_raters_one_killed(postgres_url, tmp_path):
    with RatingStore(postgres_url) as store:
        accounts.add_user(store, "olga", "owner", PASSWORD)
        tokens = {}
        for rater in RATERS:
            accounts.add_user(store, rater, "rater", PASSWORD)
            tokens[rater] = accounts.create_token(store, rater)
        store.create_or_open_set(SET, blind=True, overlap=OVERLAP, owner="olga")
        for i in range(IMAGES):
            image = f"{i:064x}"
            store.add_image(image, f"img{i}.png", 32, 32)
            for m, model in enumerate(MODELS):
                store.save_caption(SET, image, model, f"caption {i}.{m}", weights_hash=None, decoding=None)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    apps = [AppProcess(zoo, postgres_url, tmp_path / "display", None, "--login", log_dir=tmp_path) for _ in range(2)]
    acknowledged: dict[tuple[str, str, str], int] = {}
    lock = threading.Lock()
    errors: list[str] = []
    failed = {"requests": 0}
    seen_names: list[str] = []
    killed = threading.Event()

    def work(index: int, rater: str) -> None:
        app = apps[index % 2]
        token = tokens[rater]

        def request(method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
            nonlocal app
            for _ in range(20):
                try:
                    return call(app.url, method, path, token, body)
                except (urllib.error.URLError, ConnectionError, TimeoutError):  # the killed process
                    with lock:
                        failed["requests"] += 1
                    app = apps[1]  # carry on against the process that is still running
                    time.sleep(0.2)
            raise RuntimeError("no process answered")

        try:
            while True:
                status, answer = request("GET", f"/api/v1/sets/{SET}/next")
                assert status == 200, answer
                item = answer["item"]
                if item is None:
                    return
                for caption in item["captions"]:
                    if "model" in caption:
                        seen_names.append(caption["model"])
                    score = (len(rater) + int(item["image_hash"][-2:], 16) + len(caption["caption"])) % 3
                    body = {"image_hash": item["image_hash"], "caption_id": caption["caption_id"], "score": score}
                    status, answer = request("POST", f"/api/v1/sets/{SET}/ratings", body)
                    if status == 201:
                        with lock:
                            acknowledged[(rater, item["image_hash"], caption["caption_id"])] = score
                            if len(acknowledged) == IMAGES * len(MODELS) * OVERLAP // 2 and not killed.is_set():
                                killed.set()
                                apps[0].kill()  # SIGKILL half-way through
                    elif status != 409:  # 409: the caption filled up meanwhile (counted, not stored)
                        raise AssertionError((status, answer))
        except BaseException as error:  # surfaced below
            errors.append(f"{rater}: {error!r}")

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(i, rater)) for i, rater in enumerate(RATERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        seconds = time.monotonic() - started
        assert killed.is_set() and apps[0].process.poll() is not None
        assert apps[1].process.poll() is None  # the other process kept serving
    finally:
        for app in apps:
            app.kill()
    assert not errors, errors
    assert seen_names == []  # raters never see a blind set's model names
    with RatingStore(postgres_url) as store:
        frame = store.ratings(SET)
        from rating import queue

        key = queue.caption_key(store, SET)
        stored = {(row.rater, row.image_hash, queue.caption_id(key, row.image_hash, row.model_name)): row.score
                  for row in frame.itertuples()}
    per_caption = frame.groupby(["image_hash", "model_name"])["rater"].agg(["size", "nunique"])
    assert len(per_caption) == IMAGES * len(MODELS)
    assert (per_caption["size"] == OVERLAP).all() and (per_caption["nunique"] == OVERLAP).all()
    lost = {k: v for k, v in acknowledged.items() if stored.get(k) != v}
    assert not lost, f"acknowledged ratings missing or changed: {lost}"
    print(f"\n{len(frame)} ratings ({IMAGES} images x {len(MODELS)} captions x overlap {OVERLAP}) by {len(RATERS)} "
          f"raters through 2 app processes in {seconds:.1f} s ({len(frame) / seconds:.1f} ratings/s); process 1 "
          f"SIGKILLed after {IMAGES * len(MODELS) * OVERLAP // 2} acknowledged; {failed['requests']} request(s) "
          f"failed with it and were sent again to process 2; acknowledged {len(acknowledged)}, all stored")
