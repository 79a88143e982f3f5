"""Protects fine-tuning runs end to end at tiny scale: training with `data.augment` on and off (the images the
model sees differ, so the weights do), an interrupted fine-tune with per-part rates and augmentation resumed
to the same weights and rates as an uninterrupted one, the trainer's refusals (augmentation over cached
embeddings, flipping left/right captions) as one clear line, and the flip override."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import tiny_run_overrides, tiny_shapes_data
from trainer.config import load_config
from trainer.train import TrainingError, train

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "trainer" / "configs" / "demo_shapes_base.yaml"
AUGMENT = {"data.augment.crop_scale": "[0.6, 1.0]", "data.augment.rotation_degrees": 10,
           "data.augment.brightness": 0.3, "data.augment.hue": 0.05}
FINE_TUNE = {"model.freeze_encoder": "false", "training.lr.encoder": 3e-5, "training.lr.mapper": 2e-3}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return tiny_shapes_data(tmp_path_factory.mktemp("shapes"), n=24)


def overrides(shapes, tmp_path, name, **extra) -> list[str]:
    return tiny_run_overrides(shapes, tmp_path, name, **{
        "training.epochs": 2, "training.batch_size": 8, "training.log_every": 1, "training.num_threads": 1,
        "evaluation.metrics": "[loss]", "evaluation.best_metric": "val_loss", "data.test_split": "null", **extra})


def weights(tmp_path: Path, name: str) -> dict[str, torch.Tensor]:
    return load_file(tmp_path / "runs" / name / "state" / "model.safetensors")


def test_augmented_fine_tune_resumes_to_the_same_weights_and_rates(shapes, tmp_path, capsys):
    extra = {**AUGMENT, **FINE_TUNE}
    train(load_config(BASE, overrides(shapes, tmp_path, "full", **extra)))
    log = capsys.readouterr().out
    assert "lr encoder " in log and " mapper " in log and " decoder " in log
    part = load_config(BASE, overrides(shapes, tmp_path, "part", **extra))
    with pytest.raises(KeyboardInterrupt):
        train(part, quiet=True, stop_after_steps=3)  # mid-epoch 2: 2 batches of 8 per epoch
    # the state saved at the interruption: a group pair per part, each at its configured peak rate, and one
    # schedule scaling them all (mid-run, after the warmup, the ratios of the peak rates stay)
    groups = torch.load(tmp_path / "runs" / "part" / "state" / "optimizer.bin", weights_only=True)["param_groups"]
    assert [g["name"] for g in groups] == [f"{p}{s}" for p in ("encoder", "mapper", "decoder")
                                           for s in ("", " (no decay)")]
    peak = {g["name"]: g["initial_lr"] for g in groups}
    assert peak["encoder"] == pytest.approx(3e-5) and peak["mapper (no decay)"] == pytest.approx(2e-3)
    assert peak["decoder"] == pytest.approx(2e-3)  # no training.lr.decoder: the base training.learning_rate
    now = {g["name"]: g["lr"] for g in groups}
    assert 0 < now["mapper"] < 2e-3 and now["encoder"] / now["mapper"] == pytest.approx(3e-5 / 2e-3)
    train(part, quiet=True, resume=True)
    full, resumed = weights(tmp_path, "full"), weights(tmp_path, "part")
    for key in full:
        assert torch.allclose(full[key], resumed[key], atol=1e-6), key
    # without augmentation the same run sees other pixels and ends elsewhere
    train(load_config(BASE, overrides(shapes, tmp_path, "plain", **FINE_TUNE)), quiet=True)
    plain = weights(tmp_path, "plain")
    assert any(not torch.allclose(full[k], plain[k], atol=1e-6) for k in full if k.startswith("encoder."))


def test_flip_is_refused_on_left_right_captions_and_allowed_by_the_override(shapes, tmp_path):
    flip = {"model.freeze_encoder": "false", "data.augment.flip_probability": 0.5, "training.max_steps": 1}
    with pytest.raises(TrainingError, match=r"data.augment.flip_probability: 0.5 would mirror training images, but "
                                            r"\d+ of \d+ training captions name left or right"):
        train(load_config(BASE, overrides(shapes, tmp_path, "flip", **flip)), quiet=True)
    allowed = {**flip, "data.augment.allow_flip_with_left_right": "true", "training.epochs": 1}
    summary = train(load_config(BASE, overrides(shapes, tmp_path, "flip-ok", **allowed)), quiet=True)
    assert Path(summary["entry"]).is_dir()


def test_trainer_refuses_augmentation_over_cached_embeddings_in_one_line(shapes, tmp_path):
    args = overrides(shapes, tmp_path, "cached", **{"model.freeze_encoder": "true", "data.augment.crop_scale": "[0.5, 1]"})
    out = subprocess.run([sys.executable, "-m", "trainer.train", str(BASE), *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "data.augment: data.augment.crop_scale asked for, but with model.freeze_encoder true and " \
           "data.cache_embeddings true" in out.stderr
    assert "set data.cache_embeddings=false" in out.stderr
    assert not (tmp_path / "runs").exists()  # refused before anything is written
