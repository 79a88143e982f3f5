"""Protects human judgments on their own scale and metric agreement as the literature reports it: a set's score
scale (0-2 by default; `python -m rating import FILE --set S --scale 1-4`), scores outside it listed by row and
left out, accuracy normalised by the scale, a schema-1 database upgraded so a 1-4 set can be stored; and
`python -m rating agreement --set S --json` giving Kendall tau-c and tau-b of each metric against the human
scores on one row per judgment and on per-caption means, equal to scipy on pycocoevalcap's per-sentence
scores, with the counts, a candidate that is among its image's references scored against the others.

The corpus is generated (a Flickr8k-Expert-shaped file: one row per image, candidate, rater and 1-4 score, plus
the image's references): no public human-judgment corpus can be downloaded here.
"""
from __future__ import annotations

import json
import random
import sqlite3

import pandas as pd
import pytest
from scipy.stats import kendalltau

from captioning.metrics import caption_scores, tokenize
from rating import sets
from rating.cli import main as rating_main
from rating.database import HEAD_REVISION
from rating.store import RatingStore

SUBJECTS = ["a dog", "two children", "a man in a red shirt", "a woman", "a black cat", "three boys", "a surfer",
            "a girl in a pink dress", "a brown horse", "an old man", "a skier", "a cyclist"]
ACTIONS = ["runs across the grass", "plays in the water", "climbs a rock", "sits on a bench", "jumps over a fence",
           "rides a wave", "walks down the street", "skis down a snowy hill", "rides a bike on a trail",
           "sleeps on a couch", "eats an ice cream", "throws a ball"]


def write_corpus(path, n_images: int = 12, seed: int = 5) -> dict:
    """A judgment file: per image 4 references and 3 candidates (its own first reference, a near paraphrase, a
    caption of another image), each scored 1-4 by three experts (truth plus noise); two rows are off the scale."""
    rng = random.Random(seed)
    rows, truth = [], {}
    for i in range(n_images):
        image = f"{1000 + i}_photo.jpg"
        refs = [f"{SUBJECTS[i]} {ACTIONS[i]}", f"{SUBJECTS[i]} {ACTIONS[i]} outside",
                f"there is {SUBJECTS[i]} that {ACTIONS[i]}", f"{SUBJECTS[i]} {rng.choice(ACTIONS)}"]
        other = (i + 1 + rng.randrange(n_images - 1)) % n_images
        candidates = {f"{image}#own": (refs[0], 4), f"{image}#near": (f"{SUBJECTS[i]} {ACTIONS[(i + 3) % 12]}", 2),
                      f"{image}#other": (f"{SUBJECTS[other]} {ACTIONS[other]}", 1)}
        for ref in refs:
            rows.append({"image_id": image, "model_name": "", "caption": "", "rater": "", "score": "",
                         "reference": ref})
        for candidate, (text, quality) in candidates.items():
            for expert in ("expert1", "expert2", "expert3"):
                score = min(4, max(1, quality + rng.choice([-1, 0, 0, 1])))
                rows.append({"image_id": image, "model_name": candidate, "caption": text, "rater": expert,
                             "score": score, "reference": ""})
                truth[(image, candidate, expert)] = score
    rows[5]["score"], rows[9]["score"] = 5, 0  # off the 1-4 scale
    pd.DataFrame(rows).to_csv(path, index=False)
    return {"rows": rows, "bad_rows": [7, 11]}  # file row numbers: header is row 1


def run_cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    code = rating_main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def imported(tmp_path, capsys):
    corpus = tmp_path / "expert.csv"
    made = write_corpus(corpus)
    db = tmp_path / "r.sqlite"
    code, out, err = run_cli(capsys, "import", str(corpus), "--set", "expert", "--scale", "1-4", "--db", str(db))
    assert code == 0, err
    return {"db": db, "corpus": corpus, "out": out, "err": err, **made}


def test_import_on_a_declared_scale_lists_and_leaves_out_the_scores_outside_it(imported, capsys):
    assert "row 7: score '5' is not on the set's 1-4 scale" in imported["err"]
    assert "row 11: score '0' is not on the set's 1-4 scale" in imported["err"]
    assert "ratings: 106 saved" in imported["out"] and "2 left out" in imported["out"]
    with RatingStore(imported["db"]) as store:
        assert store.set_scale("expert") == (1, 4)
        ratings = store.ratings("expert")
        assert sorted(set(ratings["score"])) == [1, 2, 3, 4] and len(ratings) == 106
        # the set's scale holds for later ratings too
        with pytest.raises(ValueError, match="score must be an integer from 1 to 4, got 0"):
            store.rate("expert", "expert1", ratings["image_hash"][0], ratings["model_name"][0], 0)
    # the same set under another scale is refused in one line; a bad scale too
    code, _, err = run_cli(capsys, "import", str(imported["corpus"]), "--set", "expert", "--scale", "0-2",
                           "--db", str(imported["db"]))
    assert code == 2 and err.count("\n") == 1 and "has the score scale 1-4, not 0-2" in err
    code, _, err = run_cli(capsys, "import", str(imported["corpus"]), "--set", "x", "--scale", "4-1",
                           "--db", str(imported["db"]))
    assert code == 2 and "LOW < HIGH" in err


def test_accuracy_is_normalised_by_the_sets_scale(imported):
    with RatingStore(imported["db"]) as store:
        found = sets.set_results(store, "expert", metrics=False)
        ratings = store.ratings("expert")
    assert found.scale == (1, 4)
    table = found.summary.set_index("model")
    for model, group in ratings.groupby("model_name"):
        mean = group.groupby("image_hash")["score"].mean().mean()  # per image over raters, then over images
        assert table.loc[model, "accuracy_all"] == pytest.approx((mean - 1) * 100 / 3)


def test_a_schema_1_database_is_upgraded_keeping_its_ratings(tmp_path):
    path = tmp_path / "old.sqlite"
    raw = sqlite3.connect(path)  # as schema 1 wrote it: ratings with CHECK (score IN (0, 1, 2)), no owner
    raw.executescript(
        "CREATE TABLE evaluation_sets (name TEXT PRIMARY KEY, created_at TEXT NOT NULL, blind INTEGER NOT NULL "
        "DEFAULT 0, preset TEXT, settings_json TEXT NOT NULL DEFAULT '{}', notes TEXT);"
        "CREATE TABLE images (content_hash TEXT PRIMARY KEY, file_name TEXT, width INTEGER, height INTEGER, "
        "added_at TEXT NOT NULL);"
        "CREATE TABLE captions (eval_set TEXT NOT NULL REFERENCES evaluation_sets(name), image_hash TEXT NOT NULL, "
        "model_name TEXT NOT NULL, caption TEXT NOT NULL, model_weights_hash TEXT, decoding_json TEXT NOT NULL "
        "DEFAULT '{}', created_at TEXT NOT NULL, PRIMARY KEY (eval_set, image_hash, model_name));"
        "CREATE TABLE ratings (eval_set TEXT NOT NULL REFERENCES evaluation_sets(name), rater TEXT NOT NULL, "
        "image_hash TEXT NOT NULL, model_name TEXT NOT NULL, score INTEGER NOT NULL CHECK (score IN (0, 1, 2)), "
        "caption TEXT NOT NULL, model_weights_hash TEXT, decoding_json TEXT NOT NULL DEFAULT '{}', rated_at TEXT "
        "NOT NULL, PRIMARY KEY (eval_set, rater, image_hash, model_name));"
        "CREATE INDEX ratings_by_item ON ratings(eval_set, image_hash, model_name);"
        f"INSERT INTO evaluation_sets VALUES ('s', '2025-01-01', 0, NULL, '{{}}', NULL);"
        f"INSERT INTO captions VALUES ('s', '{'h' * 64}', 'm', 'a dog', NULL, '{{}}', '2025-01-01');"
        f"INSERT INTO ratings VALUES ('s', 'ann', '{'h' * 64}', 'm', 2, 'a dog', NULL, '{{}}', '2025-01-01');"
        "PRAGMA user_version = 1;")
    raw.close()
    with RatingStore(path) as store:
        assert store.schema_version == HEAD_REVISION
        assert store.ratings("s")["score"].tolist() == [2]
        store.create_or_open_set("wide", settings={"scale": [1, 4]})
        store.save_caption("wide", "h" * 64, "m", "a dog", weights_hash=None, decoding=None)
        store.rate("wide", "ann", "h" * 64, "m", 4)
        assert store.ratings("wide")["score"].tolist() == [4]


def test_agreement_gives_tau_c_and_tau_b_on_judgments_and_caption_means(imported, capsys):
    code, out, err = run_cli(capsys, "agreement", "--set", "expert", "--json", "--no-bertscore", "--no-meteor",
                             "--db", str(imported["db"]))
    assert code == 0, err
    found = json.loads(out)
    assert found["scale"] == [1, 4] and found["tokenizer"] in ("ptb", "regex")
    assert found["judgments"] == 106 and found["captions"] == 36 and found["left_out"] == 0
    # Recompute from the file: each candidate against its image's references less itself, in one call.
    frame = pd.read_csv(imported["corpus"], keep_default_na=False)
    refs = frame[frame["reference"] != ""].groupby("image_id")["reference"].apply(list)
    judged = frame[(frame["model_name"] != "") & frame["score"].astype(str).isin(["1", "2", "3", "4"])]
    captions = judged.drop_duplicates(["image_id", "model_name"]).sort_values(["image_id", "model_name"])
    texts = list(captions["caption"])
    own_refs = [[r for r in refs[i] if tokenize(r) != tokenize(t)] for i, t in zip(captions["image_id"], texts)]
    lost = [len(r) < len(refs[i]) for i, r in zip(captions["image_id"], own_refs)]
    assert lost == [m.endswith("#own") for m in captions["model_name"]]  # own candidates lose their reference
    scores = caption_scores(texts, own_refs, use_bertscore=False, tokenizer=found["tokenizer"])
    metric_of = {(i, m): k for k, (i, m) in enumerate(zip(captions["image_id"], captions["model_name"]))}
    means = judged.assign(score=judged["score"].astype(int)).groupby(["image_id", "model_name"])["score"].mean()
    rows = {row["metric"]: row for row in found["metrics"]}
    for metric in ("bleu1", "bleu4", "rouge_l", "cider"):
        per_judgment = [scores[metric][metric_of[(i, m)]] for i, m in zip(judged["image_id"], judged["model_name"])]
        human = judged["score"].astype(int).tolist()
        per_caption = [scores[metric][metric_of[key]] for key in means.index]
        assert rows[metric]["tau_c_judgments"] == pytest.approx(kendalltau(per_judgment, human, variant="c")[0])
        assert rows[metric]["tau_b_judgments"] == pytest.approx(kendalltau(per_judgment, human, variant="b")[0])
        assert rows[metric]["tau_c"] == pytest.approx(kendalltau(per_caption, list(means), variant="c")[0])
        assert rows[metric]["kendall_tau"] == pytest.approx(kendalltau(per_caption, list(means), variant="b")[0])
        assert rows[metric]["n_judgments"] == 106 and rows[metric]["n_captions"] == 36
        assert rows[metric]["tau_c_judgments"] > 0.3  # the generated experts follow caption quality
    assert rows["bertscore_f1"]["tau_c"] is None and rows["meteor"]["tau_c"] is None  # left out when asked
    assert "CLIPScore" in found["clipscore"] or "clip" in found["clipscore"].lower()
    # the text form says the same, with the counts
    code, out, _ = run_cli(capsys, "agreement", "--set", "expert", "--no-bertscore", "--no-meteor",
                           "--db", str(imported["db"]))
    assert code == 0 and "106 judgment(s) of 36 caption(s)" in out and "tau-c" in out and "cider" in out


def test_agreement_on_a_set_without_references_is_one_line(tmp_path, capsys):
    csv_path = tmp_path / "plain.csv"
    csv_path.write_text("image_id,model_name,caption,score\na.png,m,a dog,2\n")
    db = str(tmp_path / "r.sqlite")
    assert run_cli(capsys, "import", str(csv_path), "--set", "s", "--rater", "ann", "--db", db)[0] == 0
    code, _, err = run_cli(capsys, "agreement", "--set", "s", "--db", db)
    assert code == 2 and err.count("\n") == 1 and "has no reference captions" in err
