"""Protects the trainer end to end at tiny scale: a run writes a complete zoo entry, an interrupted run
resumed with --resume ends with the same weights as an uninterrupted one, every shipped config's code path
runs (with tiny local stand-ins for the hub models), the embedding cache is reused, and `trainer.evaluate`
reproduces the trainer's test numbers. Nothing is downloaded."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import CLIPVisionModelWithProjection, GPT2Config, GPT2LMHeadModel, ViTModel

from captioning.preprocessing import make_image_processor
from captioning.zoo import (
    CARD_FILE,
    CONFIG_FILE,
    CURVES_FILE,
    EXPERIMENT_FILE,
    METRICS_FILE,
    PREPROCESSOR_FILE,
    WEIGHTS_FILE,
    list_zoo,
    load_entry,
)
from helpers import assert_same_run_weights, tiny_run_overrides, tiny_shapes_data, tiny_vision_config
from trainer.config import config_from_dict, config_to_dict, load_config
from trainer.train import train

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "trainer" / "configs"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return tiny_shapes_data(tmp_path_factory.mktemp("shapes"), n=40)


def tiny_overrides(shapes, tmp_path, name="tiny", **extra):
    return tiny_run_overrides(shapes, tmp_path, name, **{
        "training.epochs": 2, "training.batch_size": 16, "training.log_every": 1, "training.num_threads": 1,
        "evaluation.metrics": "[loss, bleu, cider, object_accuracy]", "evaluation.max_new_tokens": 12,
        "evaluation.max_val_images": 4, **extra})


def test_tiny_run_writes_a_complete_zoo_entry(shapes, tmp_path):
    # the demo's best design: the grid mapper (patch tokens pooled to 2 x 2 regions, K=4)
    cfg = load_config(CONFIGS / "demo_shapes_base.yaml", tiny_overrides(
        shapes, tmp_path, **{"data.captions_per_image": 1, "model.mapper.type": "grid", "model.prefix_length": 4,
                             "evaluation.max_val_images": 3}))
    summary = train(cfg, quiet=True)
    entry = Path(summary["entry"])
    names = {p.name for p in entry.iterdir()}
    assert {CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE, CARD_FILE, CURVES_FILE, "tokenizer.json",
            PREPROCESSOR_FILE, EXPERIMENT_FILE} <= names
    metrics = json.loads((entry / METRICS_FILE).read_text())
    assert metrics["split"] == "test" and 0 <= metrics["object_accuracy"] <= 1 and "bleu4" in metrics
    assert len(metrics["history"]) == 2 and metrics["decoding"]["preset"] == "consistent"
    # one caption per image per epoch: 32 training images / batch 16 = 2 steps per epoch (not 160 / 16)
    assert [h["step"] for h in metrics["history"]] == [2, 4]
    # the caption metrics ran on evaluation.max_val_images=3 of the 4 val images, and say so (val_loss: all 4)
    assert [h["metric_images"] for h in metrics["history"]] == [3, 3]
    assert metrics["validation"]["metric_images"] == 3
    card = (entry / CARD_FILE).read_text()
    assert "## Metrics" in card and "pooled to a 2 x 2 grid of regions" in card
    assert (tmp_path / "runs" / "tiny" / "config.yaml").is_file()
    assert list((tmp_path / "runs" / "tiny" / "tensorboard").iterdir())
    # the entry loads and the CLI lists it
    assert load_entry(entry).kind == "prefix-captioner"
    assert [r["name"] for r in list_zoo(tmp_path / "zoo")] == ["tiny"]
    # evaluate reproduces the trainer's test numbers
    out = subprocess.run([sys.executable, "-m", "trainer.evaluate", "--model", str(entry), "--data", str(shapes / "data"),
                          "--split", "test", "--metrics", "bleu,cider,object_accuracy", "--max-new-tokens", "12", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    scores = json.loads(out.stdout)["metrics"]
    for key in ("bleu4", "cider", "object_accuracy"):
        assert scores[key] == pytest.approx(metrics[key], abs=1e-6)
    by_count = {k: v for k, v in scores.items() if k.startswith("object_accuracy_")}
    assert by_count and set(by_count) <= {"object_accuracy_1obj", "object_accuracy_2obj", "object_accuracy_3obj"}
    assert by_count == pytest.approx({k: metrics[k] for k in by_count}, abs=1e-6)


def test_interrupted_then_resumed_run_matches_uninterrupted(shapes, tmp_path):
    extra = {"training.epochs": 2, "evaluation.metrics": "[loss]", "evaluation.best_metric": "val_loss",
             "model.freeze_encoder": "false"}  # dropout stays on: RNG state must resume too
    full = load_config(CONFIGS / "demo_shapes_base.yaml", tiny_overrides(shapes, tmp_path / "a", "full", **extra))
    train(full, quiet=True)
    part = load_config(CONFIGS / "demo_shapes_base.yaml", tiny_overrides(shapes, tmp_path / "b", "part", **extra))
    with pytest.raises(KeyboardInterrupt):
        train(part, quiet=True, stop_after_steps=3)  # mid-epoch: 2 batches per epoch
    with pytest.raises(Exception, match="--resume"):
        train(part, quiet=True)
    train(part, quiet=True, resume=True)
    assert_same_run_weights(tmp_path / "a" / "runs" / "full", tmp_path / "b" / "runs" / "part")


@pytest.mark.parametrize("mapper,prefix_length", [("mlp", 2), ("grid", 4)])  # pooled embeddings vs patch tokens
def test_embedding_cache_is_reused_across_runs(shapes, tmp_path, capsys, mapper, prefix_length):
    extra = {"model.freeze_encoder": "true", "training.epochs": 1, "evaluation.metrics": "[loss]",
             "evaluation.best_metric": "val_loss", "model.mapper.type": mapper, "model.prefix_length": prefix_length}
    train(load_config(CONFIGS / "demo_shapes_base.yaml", tiny_overrides(shapes, tmp_path, "c1", **extra)))
    first = capsys.readouterr().out
    train(load_config(CONFIGS / "demo_shapes_base.yaml", tiny_overrides(shapes, tmp_path, "c2", **extra)))
    second = capsys.readouterr().out
    assert "0 reused" in first and "0 computed" in second
    assert list((tmp_path / "cache").rglob("shard-*.safetensors"))


def save_tiny_pretrained(root: Path, tokenizer_dir: Path) -> dict[str, str]:
    """Local folders standing in for `openai/clip-vit-base-patch32`, a ViT and `gpt2`."""
    from transformers import AutoTokenizer, CLIPVisionConfig, ViTConfig

    torch.manual_seed(0)
    CLIPVisionModelWithProjection(CLIPVisionConfig(**{k: v for k, v in tiny_vision_config("clip").items()
                                                       if k != "model_type"})).save_pretrained(root / "clip")
    make_image_processor("clip", 32).save_pretrained(root / "clip")
    ViTModel(ViTConfig(**{k: v for k, v in tiny_vision_config("vit").items() if k != "model_type"})).save_pretrained(root / "vit")
    make_image_processor("vit", 32).save_pretrained(root / "vit")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=12, n_head=4,
                               bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(root / "gpt2")
    tok.save_pretrained(root / "gpt2")
    return {"clip": str(root / "clip"), "vit": str(root / "vit"), "gpt2": str(root / "gpt2")}


def make_karpathy_and_flickr(shapes: Path, root: Path) -> dict[str, Path]:
    """The shapes data re-expressed in the Karpathy and Flickr8k formats (same images)."""
    images, _files = [], {}
    for split in ("train", "val", "test"):
        ann = json.loads((shapes / "data" / "annotations" / f"captions_{split}.json").read_text())
        caps = {}
        for a in ann["annotations"]:
            caps.setdefault(a["image_id"], []).append(a["caption"])
        for im in ann["images"]:
            images.append({"filepath": split, "filename": im["file_name"], "split": split,
                           "sentences": [{"raw": c} for c in caps[im["id"]]], "cocoid": im["id"]})
    (root / "karpathy").mkdir(parents=True)
    (root / "karpathy" / "dataset_coco.json").write_text(json.dumps({"dataset": "coco", "images": images}))
    flickr = root / "flickr8k"
    (flickr / "Flicker8k_Dataset").mkdir(parents=True)
    lines, split_lists = [], {"train": [], "val": [], "test": []}
    for im in images:
        src = shapes / "data" / im["filepath"] / im["filename"]
        (flickr / "Flicker8k_Dataset" / im["filename"]).write_bytes(src.read_bytes())
        split_lists[im["split"]].append(im["filename"])
        lines += [f"{im['filename']}#{i}\t{s['raw']}" for i, s in enumerate(im["sentences"])]
    (flickr / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    for split, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        (flickr / f"Flickr_8k.{name}Images.txt").write_text("\n".join(split_lists[split]) + "\n")
    return {"karpathy": root / "karpathy" / "dataset_coco.json", "flickr8k": flickr, "image_root": shapes / "data"}


@pytest.mark.parametrize("config_name", ["coco_clip_gpt2", "karpathy_coco_clip_gpt2", "flickr8k_vit_gpt2",
                                         "prefix_only_clip_gpt2", "clipcap_transformer", "coco_clip_gpt2_finetune"])
def test_every_shipped_recipe_runs_at_tiny_scale(shapes, tmp_path, config_name):
    local = save_tiny_pretrained(tmp_path / "hub", shapes / "tokenizer")
    other = make_karpathy_and_flickr(shapes, tmp_path / "formats")
    cfg_path = CONFIGS / f"{config_name}.yaml"
    raw = load_config(cfg_path)
    overrides = [f"experiment.output_dir={tmp_path / 'runs'}", f"experiment.zoo_dir={tmp_path / 'zoo'}",
                 f"model.decoder={local['gpt2']}", f"model.encoder={local['vit' if raw.model.encoder_type == 'vit' else 'clip']}",
                 "model.image_size=32", "training.epochs=1", "training.batch_size=16", "training.mixed_precision=no",
                 "training.warmup_steps=0", "training.num_threads=1", f"data.cache_dir={tmp_path / 'cache'}",
                 "evaluation.metrics=[loss,bleu,cider]", "evaluation.max_val_images=4", "evaluation.max_new_tokens=8",
                 "model.mapper.num_heads=4", "model.mapper.num_layers=1"]
    if raw.training.warmup_ratio is not None:
        overrides.remove("training.warmup_steps=0")
    if raw.data.format == "karpathy":
        overrides += [f"data.path={other['karpathy']}", f"data.image_root={other['image_root']}"]
    elif raw.data.format == "flickr8k":
        overrides += [f"data.path={other['flickr8k']}"]
    else:
        overrides += [f"data.path={shapes / 'data'}"]
    cfg = load_config(cfg_path, overrides)
    summary = train(cfg, quiet=True)
    entry = load_entry(summary["entry"])
    assert entry.model.config.prefix_length == raw.model.prefix_length
    assert entry.model.config.mapper.type == raw.model.mapper.type
    assert entry.model.config.freeze_decoder == raw.model.freeze_decoder
    assert entry.model.config.freeze_encoder == raw.model.freeze_encoder
    counts = entry.model.parameter_counts()
    if raw.model.freeze_decoder == "all":
        assert counts["trainable"] == counts["mapper"]
    if raw.model.freeze_decoder == 11:
        trainable = {n for n, p in entry.model.named_parameters() if p.requires_grad}
        assert any(n.startswith("decoder.transformer.h.11.") for n in trainable)
        assert not any(n.startswith("decoder.transformer.h.10.") for n in trainable)


def test_config_errors_exit_cleanly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment:\n  name: x\nmodel:\n  prefx_length: 3\ndata:\n  path: d\ntraining:\n  learning_rate: -1\n")
    out = subprocess.run([sys.executable, "-m", "trainer.train", str(bad)], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "did you mean 'model.prefix_length'" in out.stderr and "learning_rate" in out.stderr


def test_non_finite_loss_stops_with_a_clear_message(shapes, tmp_path):
    cfg = load_config(CONFIGS / "demo_shapes_base.yaml",
                      tiny_overrides(shapes, tmp_path, "nan", **{"training.learning_rate": 1e30, "training.max_grad_norm": "null",
                                                                 "evaluation.metrics": "[loss]", "evaluation.best_metric": "val_loss"}))
    from trainer.train import TrainingError

    with pytest.raises(TrainingError, match="loss became"):
        train(cfg, quiet=True)


PRETRAINED = ["model.from_scratch=false", "model.encoder_config=null", "model.decoder_config=null"]


@pytest.mark.parametrize(("overrides", "line"), [
    (["model.mapper.type=transformer", "model.mapper.num_heads=5"],
     "error: model.mapper.num_heads: the decoder width 32 is not divisible by mapper.num_heads=5; "
     "choose from the divisors of 32: 1, 2, 4, 8, 16, 32"),
    (["model.decoder_config.n_head=5"],
     "error: model.decoder_config: the decoder width 32 is not divisible by n_head=5; "
     "choose from the divisors of 32: 1, 2, 4, 8, 16, 32"),
    (["model.freeze_decoder=5"],
     "error: model.freeze_decoder: 5 blocks to freeze but the decoder has only 2 blocks; use 'all' or a smaller N"),
    (["model.tokenizer={tmp}/no-tokenizer"], "error: model.tokenizer: folder '{tmp}/no-tokenizer' does not exist"),
    ([*PRETRAINED, "model.encoder={tmp}/no-encoder"], "error: model.encoder: folder '{tmp}/no-encoder' does not exist"),
    ([*PRETRAINED, "model.encoder=openai/clip-vit-base-patch32"],
     "error: model.encoder: 'openai/clip-vit-base-patch32' is not a local folder, and this machine is offline "
     "(HF_HUB_OFFLINE is set)"),
], ids=["mapper-heads", "decoder-heads", "frozen-blocks", "no-tokenizer", "no-encoder", "hub-offline"])
def test_model_mistakes_stop_before_the_data_with_one_line(shapes, tmp_path, overrides, line):
    # data.path does not exist and no run folder may appear: the model is built and checked first.
    args = [f"model.tokenizer={shapes / 'tokenizer'}", f"data.path={tmp_path / 'no-data'}",
            f"experiment.output_dir={tmp_path / 'runs'}", "model.decoder_config.n_embd=32",
            *[o.format(tmp=tmp_path) for o in overrides]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "trainer.train", str(CONFIGS / "demo_shapes_base.yaml"), *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    errors = [e for e in out.stderr.splitlines() if e.startswith("error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert len(errors) == 1 and errors[0].startswith(line.format(tmp=tmp_path)), out.stderr
    if "offline" in line:
        assert "model.encoder=/path/to/folder" in errors[0] and "config.json + weights" in errors[0]
    assert not (tmp_path / "runs").exists()


def test_demo_recipe_rebuilds_the_committed_zoo_entries():
    """trainer/demo_zoo.py's ENTRIES (and SCST_ENTRIES, built from their committed parent) on the base config
    give each committed entry's experiment.yaml, and the model they build has the committed config.json and
    preprocessing (so the schema change kept the values). Keys the schema gained after an entry was trained
    read back as their defaults (config_from_dict of the recorded config)."""
    from trainer.demo_zoo import BASE_CONFIG, ENTRIES, SCST_ENTRIES, entry_overrides
    from trainer.train import build_components

    for name in [*ENTRIES, *SCST_ENTRIES]:
        committed = ROOT / "model_zoo" / name
        cfg = load_config(BASE_CONFIG, entry_overrides(name, Path("runs/demo"), "model_zoo", 48))
        assert cfg == load_config(committed / EXPERIMENT_FILE), name
        parent = [f"model.init_from={ROOT / 'model_zoo' / SCST_ENTRIES[name][0]}"] if name in SCST_ENTRIES else []
        model, _, processor = build_components(load_config(BASE_CONFIG, entry_overrides(
            name, Path("runs/demo"), "model_zoo", 48, [f"model.tokenizer={committed}", *parent])))
        config = json.loads((committed / CONFIG_FILE).read_text())
        recorded = config_to_dict(config_from_dict(config["training"]["config"]))
        assert json.loads(json.dumps(recorded)) == json.loads(json.dumps(config_to_dict(cfg))), name
        expected = {k: v for k, v in config.items() if k not in ("training", "image_processor", "encoder_fingerprint")}
        assert model.config.to_dict() == expected, name
        assert json.loads(json.dumps(processor.to_dict())) == json.loads((committed / PREPROCESSOR_FILE).read_text())
