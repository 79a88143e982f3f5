"""Protects self-critical training (trainer/scst.py) and starting from a zoo entry (trainer/init_from.py): the
CIDEr-D reward is the metric's formula with training document frequencies (cached by the captions' hash), the
teacher-forced pass gives the sampler's log-probabilities, tiny SCST runs with either baseline raise their
reward, a run interrupted inside SCST resumes to the same weights, init_from loads the entry's weights exactly,
the card and config.json name the parent, and bad configs are refused with clear messages."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from captioning.generation import GenerationSettings, generate
from captioning.metrics import caption_scores
from captioning.tokenization import train_bpe_tokenizer
from captioning.zoo import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, file_sha256, load_entry
from helpers import assert_same_run_weights, tiny_captioner, tiny_run_overrides, tiny_shapes_data
from trainer.config import ConfigError, load_config
from trainer.scst import DF_FOLDER, CiderReward, baselines, references_hash, sample_batch, sequence_log_probs
from trainer.train import TrainingError, build_components, train

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "trainer" / "configs" / "demo_shapes_base.yaml"
REFS = {
    "a": ["a red circle", "a small red circle", "one red circle"],
    "b": ["a blue square and a green triangle", "a green triangle beside a blue square"],
    "c": ["two yellow circles", "a pair of yellow circles", "yellow circles"],
    "d": ["a large purple square", "a purple square"],
}


# ----------------------------------------------------------------------------------------------------------
# The reward and the loss's parts


def test_reward_is_the_cider_d_metric_when_the_frequencies_come_from_the_same_references():
    ids = ["a", "b", "c", "d"]
    predictions = ["a red circle", "a blue square", "yellow circles", ""]
    reward = CiderReward.from_training(REFS, cache_dir=None)
    metric = caption_scores(predictions, [REFS[i] for i in ids], use_bertscore=False)["cider"]
    assert reward.scores(ids, predictions) == pytest.approx(metric, abs=1e-9)
    assert metric[0] > 1.0 and metric[3] == 0.0


def test_reward_frequencies_are_the_training_ones_not_the_batchs():
    reward = CiderReward.from_training(REFS, cache_dir=None)
    alone = reward.scores(["a"], ["a red circle"])
    # the metric takes its frequencies from the batch: one image alone scores 0; the reward keeps its own
    assert caption_scores(["a red circle"], [REFS["a"]], use_bertscore=False)["cider"] == [0.0]
    assert alone == reward.scores(["b", "a"], ["a blue square", "a red circle"])[1:] and alone[0] > 1.0


def test_document_frequencies_are_cached_by_the_captions_hash(tmp_path):
    lines = []
    first = CiderReward.from_training(REFS, tmp_path, log=lines.append)
    files = list((tmp_path / DF_FOLDER).glob("*.json"))
    assert [f.stem for f in files] == [references_hash(REFS)] and "computed" in lines[-1]
    again = CiderReward.from_training(REFS, tmp_path, log=lines.append)
    assert "read from" in lines[-1] and again.df == first.df and again.ref_len == first.ref_len
    assert again.scores(["b"], ["a blue square"]) == first.scores(["b"], ["a blue square"])
    changed = {**REFS, "d": ["a large purple triangle"]}
    CiderReward.from_training(changed, tmp_path, log=lines.append)
    assert "computed" in lines[-1] and len(list((tmp_path / DF_FOLDER).glob("*.json"))) == 2


def test_baselines_greedy_and_mean_of_the_other_samples():
    rewards = torch.tensor([[1.0, 2.0, 6.0], [0.0, 0.0, 3.0]])
    assert torch.equal(baselines(rewards, torch.tensor([0.5, 2.0])), torch.tensor([[0.5] * 3, [2.0] * 3]))
    assert torch.allclose(baselines(rewards, None), torch.tensor([[4.0, 3.5, 1.5], [1.5, 1.5, 0.0]]))


def test_teacher_forced_log_probs_are_the_samplers_own():
    """The one teacher-forced pass must give, per caption, the log-prob the engine summed while decoding
    (EOS included when the caption stopped on it, nothing for padding)."""
    model = tiny_captioner(seed=3, vocab_size=8)  # EOS is one of 8 tokens: some samples stop, some are cut
    features = torch.randn(4, model.embed_dim)
    settings = GenerationSettings(strategy="sample", num_captions=3, max_new_tokens=6, seed=1)
    out = generate(model, features, settings)
    sequences = [s for image in out.tokens for s in image]
    assert any(len(s) < 6 for s in sequences) and any(len(s) == 6 for s in sequences)  # both cases covered
    input_ids, mask = sample_batch(sequences, model.eos_token_id, 6, pad=0)
    assert mask.sum(1).tolist() == [len(s) + (len(s) < 6) for s in sequences]
    with torch.no_grad():
        logits = model(input_ids, mask, image_embeds=features.repeat_interleave(3, 0))["logits"]
    got = sequence_log_probs(logits, input_ids, mask, model.config.prefix_length)
    expected = torch.tensor([score for image in out.scores for score in image])
    assert torch.allclose(got, expected, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------
# Tiny runs


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return tiny_shapes_data(tmp_path_factory.mktemp("scst-shapes"), n=12)


def overrides(shapes: Path, tmp: Path, name: str, **extra) -> list[str]:
    return tiny_run_overrides(shapes, tmp, name, **{
        "model.freeze_encoder": "true", "data.captions_per_image": "all", "data.test_split": "null",
        "training.batch_size": 16, "training.log_every": 5, "training.learning_rate": 5e-3, "training.num_threads": 1,
        "evaluation.metrics": "[loss, cider]", "evaluation.max_new_tokens": 16, "evaluation.max_val_images": 2,
        "evaluation.best_metric": "cider", **extra})


@pytest.fixture(scope="module")
def parent(shapes, tmp_path_factory):
    """A cross-entropy entry that already names shapes now and then (10 epochs of 8 images)."""
    tmp = tmp_path_factory.mktemp("parent")
    summary = train(load_config(BASE, overrides(shapes, tmp, "parent", **{
        "training.epochs": 10, "evaluation.metrics": "[loss]", "evaluation.best_metric": "val_loss"})), quiet=True)
    return Path(summary["entry"])


SCST = {"scst.enabled": "true", "scst.after_epoch": 0, "scst.steps_per_epoch": 10, "scst.learning_rate": 1e-3,
        "training.epochs": 3}


@pytest.mark.parametrize("baseline", ["greedy", "mean"])
def test_scst_from_an_entry_raises_the_reward_and_names_its_parent(shapes, parent, tmp_path, baseline, capsys):
    cfg = load_config(BASE, overrides(shapes, tmp_path, f"child-{baseline}", **SCST, **{"scst.baseline": baseline,
                                                                                         "model.init_from": parent}))
    summary = train(cfg)
    logged = capsys.readouterr().out
    assert "scst step 5 (epoch 1) | reward" in logged and "| baseline " in logged and "beat baseline" in logged
    history = summary["metrics"]["history"]
    assert [h["stage"] for h in history] == ["scst"] * 3 and [h["step"] for h in history] == [10, 20, 30]
    rewards = [h["train_reward"] for h in history]
    assert rewards[-1] > 1.5 * rewards[0] > 0, rewards  # 30 steps on 8 images: the policy learns the reward
    assert all(0 <= h["train_beat_baseline"] <= 1 for h in history)
    entry = Path(summary["entry"])
    record = json.loads((entry / CONFIG_FILE).read_text())["training"]
    assert record["init_from"] == {"entry": "parent", "path": str(parent),
                                   "weights_sha256": file_sha256(parent / WEIGHTS_FILE)}
    assert record["scst"]["baseline"] == baseline and record["scst"]["epochs"] == 3
    card = (entry / CARD_FILE).read_text()
    assert f"Started from zoo entry `parent` (weights sha256 `{file_sha256(parent / WEIGHTS_FILE)[:16]}`)" in card
    assert "SCST-trained (self-critical sequence training): 3 SCST epochs with no cross-entropy epoch" in card
    assert f"baseline {baseline}" in card


def test_interrupted_inside_scst_then_resumed_matches_uninterrupted(shapes, tmp_path):
    # 2 cross-entropy epochs (1 step each at 16 captions... 40 captions / 16 = 3 steps), then SCST; dropout on
    extra = {"scst.enabled": "true", "scst.after_epoch": 2, "scst.steps_per_epoch": 4, "scst.learning_rate": 1e-3,
             "training.epochs": 4, "scst.baseline": "mean", "model.freeze_encoder": "false"}
    full = load_config(BASE, overrides(shapes, tmp_path / "a", "full", **extra))
    train(full, quiet=True)
    part = load_config(BASE, overrides(shapes, tmp_path / "b", "part", **extra))
    with pytest.raises(KeyboardInterrupt):
        train(part, quiet=True, stop_after_steps=6 + 6)  # CE steps 1-6, then the middle of the second SCST epoch
    state = json.loads((tmp_path / "b" / "runs" / "part" / "state" / "trainer_state.json").read_text())
    assert state["stage"] == "scst" and state["global_step"] == 12 and state["epoch"] == 3 and state["batches_done"] == 2
    assert (tmp_path / "b" / "runs" / "part" / "state" / "optimizer_1.bin").is_file()  # the SCST optimiser's state
    train(part, quiet=True, resume=True)
    assert_same_run_weights(tmp_path / "a" / "runs" / "full", tmp_path / "b" / "runs" / "part")
    history = json.loads((tmp_path / "b" / "runs" / "part" / "state" / "trainer_state.json").read_text())["history"]
    assert [h.get("stage", "ce") for h in history] == ["ce", "ce", "scst", "scst"]


# ----------------------------------------------------------------------------------------------------------
# init_from


def test_init_from_loads_the_entrys_weights_exactly_and_applies_the_freezing(shapes, parent, tmp_path):
    cfg = load_config(BASE, overrides(shapes, tmp_path, "x", **{"model.init_from": parent,
                                                                 "model.freeze_decoder": "all"}))
    model, tokenizer, processor = build_components(cfg)
    stored = load_file(parent / WEIGHTS_FILE)
    state = model.state_dict()
    for key, tensor in stored.items():
        assert torch.equal(state[key], tensor), key
    assert tokenizer.get_vocab() == load_entry(parent).tokenizer.get_vocab()
    assert model.config.freeze_decoder == "all" and not any(p.requires_grad for p in model.decoder.parameters())
    assert any(p.requires_grad for p in model.mapper.parameters())


@pytest.mark.parametrize(("extra", "line"), [
    ({"model.prefix_length": 7}, "model.prefix_length: 7 contradicts model.init_from {parent}, whose prefix_length is "
                                 "4; remove model.prefix_length (the architecture comes from the entry)"),
    ({"model.mapper.type": "transformer"}, "model.mapper.type: 'transformer' contradicts model.init_from {parent}, "
                                           "whose mapper.type is 'mlp'"),
    ({"model.decoder_config.n_layer": 3}, "model.decoder_config.n_layer: 3 contradicts model.init_from {parent}, "
                                          "whose decoder_config.n_layer is 2"),
    ({"model.init_from": "{tmp}/zoo/nothing"}, "model.init_from: Zoo entry {tmp}/zoo/nothing does not exist"),
], ids=["prefix-length", "mapper", "decoder-config", "missing-entry"])
def test_init_from_refuses_contradictions_and_missing_entries(shapes, parent, tmp_path, extra, line):
    extra = {"model.init_from": parent, "model.prefix_length": 4, **extra}
    args = [o.format(tmp=tmp_path) for o in overrides(shapes, tmp_path, "bad", **extra)]
    out = subprocess.run([sys.executable, "-m", "trainer.train", str(BASE), *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    errors = [e for e in out.stderr.splitlines() if e.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: " + line.format(parent=parent, tmp=tmp_path)), out.stderr


def test_init_from_refuses_another_tokenizer(shapes, parent, tmp_path):
    other = tmp_path / "other-tokenizer"
    train_bpe_tokenizer(["completely different words here"] * 5, vocab_size=270).save_pretrained(other)
    cfg = load_config(BASE, overrides(shapes, tmp_path, "x", **{"model.init_from": parent, "model.prefix_length": 4,
                                                                 "model.tokenizer": other}))
    with pytest.raises(TrainingError, match="model.tokenizer: .* is not the tokenizer of model.init_from"):
        build_components(cfg)


# ----------------------------------------------------------------------------------------------------------
# Config


@pytest.mark.parametrize(("extra", "message"), [
    ({"scst.enabled": "true", "scst.after_epoch": 3, "training.epochs": 3},
     "scst.after_epoch (3) leaves no SCST epoch: training.epochs (3) counts every epoch"),
    ({"scst.enabled": "true", "training.epochs": 3},
     "scst.after_epoch is 0 but there is no model.init_from"),
    ({"scst.enabled": "true", "scst.after_epoch": 1, "scst.baseline": "mean", "scst.samples_per_image": 1},
     "scst.baseline 'mean' compares each sample with the other samples of its image, so it needs "
     "scst.samples_per_image >= 2, got 1"),
    ({"scst.enabled": "true", "scst.after_epoch": 1, "evaluation.best_metric": "val_loss",
      "evaluation.metrics": "[loss]"}, "evaluation.best_metric: 'val_loss' with scst.enabled would pick a "
                                       "cross-entropy epoch"),
    ({"scst.baselin": "mean"}, "Unknown config key 'scst.baselin' (did you mean 'scst.baseline'?)"),
    ({"scst.baseline": "beam"}, "scst.baseline: must be one of 'greedy', 'mean', got 'beam'"),
    ({"scst.temperature": 0}, "scst.temperature: must be > 0"),
], ids=["no-scst-epoch", "scst-from-random", "mean-needs-two", "val-loss", "misspelt", "baseline", "temperature"])
def test_bad_scst_configs_are_refused_with_clear_messages(tmp_path, extra, message):
    with pytest.raises(ConfigError) as error:
        load_config(BASE, [f"{k}={v}" for k, v in extra.items()])
    assert any(e.startswith(message) for e in error.value.errors), error.value.errors
