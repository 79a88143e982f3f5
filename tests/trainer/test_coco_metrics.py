"""Protects the claim that our BLEU-1..4, METEOR, ROUGE-L and CIDEr are the COCO caption evaluation's numbers:
`python -m trainer.evaluate --captions RESULTS --data ANNOTATIONS` (no image files on disk) scores a COCO results
file equal to pycocoevalcap run directly (pycocotools' COCO/loadRes, PTBTokenizer, Bleu/Meteor/Rouge/Cider,
as pycocoevalcap's eval.py does minus SPICE) to 4 decimals, under our keys and the COCO names; the regex
fallback is stated and really differs on these captions; bad --metrics and unmatched ids give one clear line;
--help is complete; each metric's time is reported. Needs Java (installed by `make test`); skipped without it.
"""
import contextlib
import io
import json
import random
import shutil

import pytest

from trainer.evaluate import main as evaluate_main

pytestmark = pytest.mark.skipif(shutil.which("java") is None,
                                reason="no Java runtime: the COCO tokenizer and METEOR need one (make test installs it)")

# Words and the punctuation the regex tokenizer and the PTB tokenizer treat differently: possessives,
# contractions, hyphens, abbreviations, times, quotes, brackets.
SUBJECTS = ["A man", "The skier's dog", "Two kids", "A woman", "Mr. Smith's cat", "A black-and-white bird",
            "Some people", "The U.S. team", "A chef", "An old-fashioned train"]
VERBS = ["is riding", "rides", "doesn't like", "sits on", "is standing near", "looks at", "can't reach",
         "jumps over", "holds", "walks past"]
OBJECTS = ["a red bike.", "the snow-covered hill", "a plate of food, at 3:30 p.m.", "a \"big\" sign!",
           "the (small) table", "a skateboard", "the ocean's waves", "a double-decker bus", "a dog's toy;",
           "two frisbees & a ball"]


def caption(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)}"


def write_coco_files(folder, n_images: int = 24, seed: int = 3):
    """A COCO captions annotation file (5 references per image, no image files) and a results file."""
    rng = random.Random(seed)
    images = [{"id": 100 + i, "file_name": f"COCO_val2014_{100 + i:012d}.jpg"} for i in range(n_images)]
    annotations = [{"id": 1000 + 10 * i + j, "image_id": 100 + i, "caption": caption(rng)}
                   for i in range(n_images) for j in range(5)]
    annotation_file = folder / "captions_val2014.json"
    annotation_file.write_text(json.dumps({"images": images, "annotations": annotations}))
    # Half the results reuse a reference with changes, so every metric is well above 0.
    results = []
    for i in range(n_images):
        text = rng.choice([a["caption"] for a in annotations if a["image_id"] == 100 + i]) if i % 2 else caption(rng)
        results.append({"image_id": 100 + i, "caption": text.replace(" a ", " one ", 1)})
    results_file = folder / "results.json"
    results_file.write_text(json.dumps(results))
    return annotation_file, results_file


def official_scores(annotation_file, results_file) -> dict[str, float]:
    """pycocoevalcap as its eval.py runs it (tokenize gts and res, then each scorer), SPICE left out."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotation_file))
        coco_results = coco.loadRes(str(results_file))
        ids = coco_results.getImgIds()
        gts = PTBTokenizer().tokenize({i: coco.imgToAnns[i] for i in ids})
        res = PTBTokenizer().tokenize({i: coco_results.imgToAnns[i] for i in ids})
        scores = dict(zip(["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"], Bleu(4).compute_score(gts, res)[0]))
        scores["METEOR"] = Meteor().compute_score(gts, res)[0]
        scores["ROUGE_L"] = Rouge().compute_score(gts, res)[0]
        scores["CIDEr"] = Cider().compute_score(gts, res)[0]
    return scores


def run_json(capsys, *args) -> dict:
    capsys.readouterr()
    assert evaluate_main([*args, "--json"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out) | {"stderr": captured.err}


@pytest.fixture(scope="module")
def coco_files(tmp_path_factory):
    return write_coco_files(tmp_path_factory.mktemp("coco"))


def test_results_file_scores_equal_pycocoevalcap_to_4_decimals_without_images(coco_files, capsys):
    annotation_file, results_file = coco_files
    official = official_scores(annotation_file, results_file)
    assert official["CIDEr"] > 0.5 and official["Bleu_4"] > 0.1  # numbers that could be wrong
    result = run_json(capsys, "--captions", str(results_file), "--data", str(annotation_file), "--split", "val",
                      "--metrics", "bleu,meteor,rouge,cider")
    block = result["models"]["results"]
    assert block["captioned_images"] == 24 and block["tokenizer"] == "ptb" and result["info"]["tokenizer"] == "ptb"
    assert set(block["coco"]) == set(official)
    for name, value in official.items():
        assert round(block["coco"][name], 4) == round(value, 4), name
    ours = block["metrics"]
    assert [ours[k] for k in ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")] == \
        [block["coco"][k] for k in ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")]
    # each metric's time is reported, in the JSON and on stderr
    assert set(block["seconds"]) == {"tokenize", "bleu", "meteor", "rouge", "cider"}
    assert "tokenizer ptb" in result["stderr"] and "meteor" in result["stderr"]


def test_regex_fallback_is_stated_and_differs_from_the_official_numbers(coco_files, capsys):
    annotation_file, results_file = coco_files
    official = official_scores(annotation_file, results_file)
    result = run_json(capsys, "--captions", str(results_file), "--data", str(annotation_file), "--split", "val",
                      "--metrics", "bleu,rouge,cider", "--tokenizer", "regex")
    block = result["models"]["results"]
    assert block["tokenizer"] == "regex" and result["info"]["tokenizer"] == "regex"
    assert "regex" in result["info"]["normalisation"]
    assert any(round(block["coco"][k], 4) != round(official[k], 4) for k in ("Bleu_1", "CIDEr"))


def test_unknown_metric_is_refused_with_the_valid_names(coco_files, capsys):
    annotation_file, results_file = coco_files
    assert evaluate_main(["--captions", str(results_file), "--data", str(annotation_file), "--split", "val",
                          "--metrics", "bleu,cidr"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'cidr'" in err
    assert "bleu, meteor, rouge, cider, bertscore, object_accuracy" in err


def test_ids_that_do_not_match_say_how_many_with_examples_from_both_sides(coco_files, tmp_path, capsys):
    annotation_file, _ = coco_files
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"image_id": 9000 + i, "caption": "a dog"} for i in range(4)]))
    assert evaluate_main(["--captions", str(wrong), "--data", str(annotation_file), "--split", "val"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: 0 of the 4 image ids")
    assert "9000" in err and "24 images" in err and "ids like 100" in err and "COCO_val2014_000000000100.jpg" in err
    # a partial match: how many matched, and examples of the others
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([{"image_id": 100, "caption": "a man rides a bike"},
                                   {"image_id": 9001, "caption": "a dog"}]))
    result = run_json(capsys, "--captions", str(partial), "--data", str(annotation_file), "--split", "val",
                      "--metrics", "bleu")
    assert "1 of 2 image ids matched" in result["stderr"] and "9001" in result["stderr"]


def test_clipscore_without_image_files_says_it_needs_them(coco_files, capsys, monkeypatch):
    import trainer.evaluate as evaluate

    annotation_file, results_file = coco_files
    monkeypatch.setattr(evaluate, "load_clip", lambda name: (object(), {"model": name}))  # no CLIP download
    result = run_json(capsys, "--captions", str(results_file), "--data", str(annotation_file), "--split", "val",
                      "--metrics", "bleu", "--clipscore", "some-clip")
    assert "clipscore" not in result["models"]["results"]["metrics"]
    assert "CLIPScore needs the image files" in result["clipscore"]["reason"]
    assert result["models"]["results"]["metrics"]["bleu4"] > 0


def test_help_is_complete(capsys):
    with pytest.raises(SystemExit):
        evaluate_main(["--help"])
    text = capsys.readouterr().out
    for needle in ("--captions RESULTS --data DIR_OR_ANNOTATION_FILE", "Bleu_1", "ROUGE_L", "CIDEr", "METEOR",
                   "SPICE", "not available offline", "80 s per", "--tokenizer", "--clipscore", "needs the image files"):
        assert needle in text, needle
