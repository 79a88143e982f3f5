"""Protects the one zoo writer and the one card writer: `save_entry` writes the experiment config and the
curves inside its atomic save, the card's Reproduce command works from the repository root, the trainer's
embedding cache and the captioning pipeline use one encoder key, and the trainer drops unreadable images by
the library's rule. Everything is tiny and generated; nothing is downloaded."""

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from captioning.preprocessing import make_image_processor
from captioning.tokenization import train_bpe_tokenizer
from captioning.zoo import (
    CARD_FILE,
    CURVES_FILE,
    EXPERIMENT_FILE,
    ZooError,
    load_entry,
    reproduce_command,
    rewrite_card,
    save_entry,
)
from helpers import tiny_captioner, write_images
from trainer.cache import EmbeddingCache
from trainer.config import load_config
from trainer.data import drop_unreadable, load_dataset, write_shapes_dataset
from trainer.train import train

ROOT = Path(__file__).resolve().parents[2]
PNG = b"\x89PNG\r\n\x1a\n" + b"not really a picture"


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(["a red circle", "a blue square", "two green triangles"] * 10, vocab_size=280)


def _model(tokenizer, **kw):
    model = tiny_captioner(vocab_size=len(tokenizer), **kw)
    model.decoder.config.eos_token_id = tokenizer.eos_token_id
    return model


def test_save_entry_writes_experiment_and_curves_inside_the_atomic_save(tmp_path, tokenizer, monkeypatch):
    model, processor = _model(tokenizer), make_image_processor("clip", 32)
    path = save_entry(model, tokenizer, processor, tmp_path / "zoo" / "m", metrics={"bleu4": 0.5},
                      experiment={"experiment": {"name": "m"}}, curves=PNG)
    assert yaml.safe_load((path / EXPERIMENT_FILE).read_text()) == {"experiment": {"name": "m"}}
    assert (path / CURVES_FILE).read_bytes() == PNG
    card = (path / CARD_FILE).read_text()
    assert f"![training curves]({CURVES_FILE})" in card and reproduce_command(path) in card
    # A save that fails half-way (here: copying the curves) leaves the old entry exactly as it was.
    before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    curves = tmp_path / "curves.png"
    curves.write_bytes(PNG)
    monkeypatch.setattr(shutil, "copyfile", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        save_entry(model, tokenizer, processor, path, experiment="experiment: {name: other}\n", curves=curves,
                   overwrite=True)
    assert {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()} == before
    assert [p.name for p in (tmp_path / "zoo").iterdir()] == ["m"], "no temp folder left behind"
    # Without an experiment or curves the card has neither a Reproduce section nor an image.
    plain = (save_entry(model, tokenizer, processor, tmp_path / "zoo" / "plain") / CARD_FILE).read_text()
    assert "## Reproduce" not in plain and "![" not in plain and "## Model" in plain
    with pytest.raises(ZooError, match="already exists"):
        save_entry(model, tokenizer, processor, tmp_path / "zoo" / "plain")


def test_reproduce_command_is_relative_to_the_repository_root_when_inside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert reproduce_command(Path("model_zoo") / "m") == f"python -m trainer.train model_zoo/m/{EXPERIMENT_FILE}"
    assert reproduce_command(tmp_path / "model_zoo" / "m") == f"python -m trainer.train model_zoo/m/{EXPERIMENT_FILE}"
    outside = tmp_path.parent / "elsewhere" / "m"
    assert reproduce_command(outside) == f"python -m trainer.train {(outside / EXPERIMENT_FILE).as_posix()}"


def test_committed_cards_are_what_the_card_writer_writes(tmp_path, monkeypatch):
    # Each committed entry's card, rewritten from its own files in a copy, comes out byte for byte the same.
    monkeypatch.chdir(tmp_path)
    entries = sorted(p for p in (ROOT / "model_zoo").iterdir() if (p / CARD_FILE).is_file())
    assert entries
    for entry in entries:
        copy = tmp_path / "model_zoo" / entry.name
        shutil.copytree(entry, copy)
        rewrite_card(Path("model_zoo") / entry.name)
        assert (copy / CARD_FILE).read_text() == (entry / CARD_FILE).read_text(), entry.name
        assert f"python -m trainer.train model_zoo/{entry.name}/{EXPERIMENT_FILE}" in (entry / CARD_FILE).read_text()
        load_config(ROOT / "model_zoo" / entry.name / EXPERIMENT_FILE)


def test_reproduce_command_of_a_trained_entry_runs_from_the_repository_root(tmp_path):
    data = tmp_path / "data"
    write_shapes_dataset(data, n=20, seed=0, image_size=32)
    captions = [a["caption"] for a in json.loads((data / "annotations/captions_train.json").read_text())["annotations"]]
    train_bpe_tokenizer(captions, vocab_size=300).save_pretrained(tmp_path / "tokenizer")
    overrides = {
        "experiment.name": "tiny", "experiment.output_dir": tmp_path / "runs", "experiment.zoo_dir": tmp_path / "zoo",
        "data.path": data, "data.cache_dir": tmp_path / "cache", "model.tokenizer": tmp_path / "tokenizer",
        "model.image_size": 32, "model.encoder_config.hidden_size": 32,
        "model.encoder_config.projection_dim": 32, "model.decoder_config.n_embd": 32, "training.epochs": 1,
        "training.batch_size": 16, "training.num_threads": 1, "evaluation.metrics": "[loss, bleu]", "evaluation.best_metric": "val_loss",
        "evaluation.max_new_tokens": 4, "evaluation.max_val_images": 2,
    }
    cfg = load_config(ROOT / "trainer" / "configs" / "demo_shapes_base.yaml", [f"{k}={v}" for k, v in overrides.items()])
    entry = Path(train(cfg, quiet=True)["entry"])
    card = (entry / CARD_FILE).read_text()
    command = card.split("## Reproduce", 1)[1].split("```")[1].strip()
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "trainer.train"] and Path(argv[3]) == entry / EXPERIMENT_FILE
    assert load_config(argv[3]).experiment.name == "tiny"
    again = subprocess.run([sys.executable, *argv[1:], f"experiment.output_dir={tmp_path / 'again'}",
                            f"experiment.zoo_dir={tmp_path / 'zoo-again'}", "training.max_steps=1", "--quiet"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert load_entry(tmp_path / "zoo-again" / "tiny").kind == "prefix-captioner"


@pytest.mark.parametrize("mapper,k", [("mlp", 3), ("grid", 4)])
def test_embedding_cache_and_pipeline_use_one_encoder_key(tmp_path, tokenizer, mapper, k):
    model, processor = _model(tokenizer, mapper=mapper, prefix_length=k), make_image_processor("clip", 32)
    entry = load_entry(save_entry(model, tokenizer, processor, tmp_path / "m"))
    cache = EmbeddingCache.for_model(tmp_path / "cache", model, processor)
    assert cache.key == entry.encoder_key
    assert cache.folder == tmp_path / "cache" / entry.encoder_key


def test_trainer_drops_unreadable_images_by_the_library_rule(tmp_path):
    root = tmp_path / "mine"
    paths = write_images(root, 3)
    (root / "truncated.png").write_bytes(PNG)  # looks like an image file, does not decode
    lines = ["image,caption,split"] + [f"{p.name},picture {i},train" for i, p in enumerate(paths)]
    (root / "captions.csv").write_text("\n".join(lines + ["truncated.png,broken,train"]) + "\n")
    split = load_dataset(root, split="train")
    assert split.report.images == 4
    split = drop_unreadable(split)
    assert sorted(split.image_paths) == sorted(p.name for p in paths)
    assert (split.report.images, split.report.captions, split.report.missing_images) == (3, 3, 1)
    assert [n for n in split.report.notes if "unreadable image skipped" in n and "truncated.png" in n]
