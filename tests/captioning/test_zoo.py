"""Protects the zoo format: entries rebuild offline, strictly, without pickles, and caption identically.

Also: transformers VisionEncoderDecoderModel folders are entries too; listing works without loading weights
and survives broken entries; the cache bounds memory and shares identical encoders.
"""

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from captioning import caption_images, get_settings, list_zoo, load_entry, save_entry
from captioning.preprocessing import make_image_processor
from captioning.tokenization import train_bpe_tokenizer
from captioning.zoo import ModelCache, ZooError
from helpers import tiny_captioner

CAPTIONS = ["a red circle", "a large blue square on the left", "two green triangles", "a small yellow star"] * 5


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(CAPTIONS, vocab_size=300)


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40 + 3 * i, 50, 3), dtype=np.uint8)) for i in range(5)]


def make_entry(tmp_path, tokenizer, name="m", seed=0, **kw):
    model = tiny_captioner(vocab_size=len(tokenizer), seed=seed, **kw)
    model.decoder.config.eos_token_id = tokenizer.eos_token_id
    return model, save_entry(model, tokenizer, make_image_processor(model.config.encoder_type, 32), tmp_path / name,
                             metrics={"bleu4": 0.5}, training={"data": "unit-test"})


@pytest.mark.parametrize("encoder_type,mapper,k", [("clip", "mlp", 3), ("vit", "transformer", 3), ("clip", "grid", 4),
                                                    ("vit", "grid", 4)])
def test_save_then_load_gives_identical_captions(tmp_path, tokenizer, images, encoder_type, mapper, k):
    model, path = make_entry(tmp_path, tokenizer, encoder_type=encoder_type, mapper=mapper, prefix_length=k)
    assert sorted(p.name for p in path.iterdir()) >= ["README.md", "config.json", "metrics.json", "model.safetensors",
                                                       "preprocessor_config.json", "tokenizer.json"]
    assert not [p for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pkl")]
    loaded = load_entry(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    # the tied LM head is stored once and comes back tied
    assert loaded.model.decoder.lm_head.weight.data_ptr() == loaded.model.decoder.get_input_embeddings().weight.data_ptr()
    first = caption_images([loaded], images, settings=get_settings("consistent", max_new_tokens=8))
    again = caption_images([load_entry(path)], images, settings=get_settings("consistent", max_new_tokens=8))
    assert [r.captions for r in first] == [r.captions for r in again]
    assert loaded.metrics == {"bleu4": 0.5}
    assert loaded.summary()["prefix_length"] == k


def test_loading_is_strict_and_explains(tmp_path, tokenizer):
    _, path = make_entry(tmp_path, tokenizer)
    with pytest.raises(ZooError, match="does not exist"):
        load_entry(tmp_path / "nope")
    # unknown mapper
    cfg = json.loads((path / "config.json").read_text())
    cfg["mapper"]["type"] = "lstm"
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ZooError, match="Unknown mapper 'lstm'"):
        load_entry(path)
    # shape mismatch: a config that says K=4 with weights for K=3
    cfg["mapper"]["type"] = "mlp"
    cfg["prefix_length"] = 4
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ZooError, match="shape mismatches"):
        load_entry(path)
    cfg["prefix_length"] = 3
    (path / "config.json").write_text(json.dumps(cfg))
    load_entry(path)
    # missing and corrupt weights
    state = {k: v.clone() for k, v in load_file(path / "model.safetensors").items()}  # not mmapped: we overwrite the file
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ZooError, match="not a readable safetensors"):
        load_entry(path)
    del state["mapper.net.0.weight"]
    save_file(state, path / "model.safetensors")
    with pytest.raises(ZooError, match="missing"):
        load_entry(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(ZooError, match="missing model.safetensors"):
        load_entry(path)


class Boom:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ".bin", ".ckpt"])
def test_pickles_are_never_unpickled(tmp_path, tokenizer, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    _, path = make_entry(tmp_path, tokenizer)
    (path / "model.safetensors").unlink()
    (path / f"weights{suffix}").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ZooError, match="never unpickles") as err:
        load_entry(path)
    assert "safetensors" in str(err.value)
    assert not (tmp_path / "PWNED").exists()
    # a pickle-only folder without config is explained the same way
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / f"model{suffix}").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ZooError, match="never unpickles"):
        load_entry(bare)
    assert not (tmp_path / "PWNED").exists()


def test_list_zoo_reports_entries_and_survives_broken_ones(tmp_path, tokenizer):
    model, _ = make_entry(tmp_path, tokenizer, name="good")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    rows = {r["name"]: r for r in list_zoo(tmp_path)}
    good = rows["good"]
    counts = model.parameter_counts()
    assert good["parameters"] == counts["total"]
    assert good["prefix_length"] == 3 and good["kind"] == "prefix-captioner" and good["size_mb"] > 0
    assert good["metrics"] == {"bleu4": 0.5}
    assert "not valid JSON" in rows["broken"]["error"]
    with pytest.raises(ZooError, match="does not exist"):
        list_zoo(tmp_path / "missing")


def test_save_refuses_to_overwrite_by_default(tmp_path, tokenizer):
    model, path = make_entry(tmp_path, tokenizer)
    before = (path / "model.safetensors").read_bytes()
    with pytest.raises(ZooError, match="already exists"):
        save_entry(model, tokenizer, make_image_processor("clip", 32), path)
    assert (path / "model.safetensors").read_bytes() == before
    save_entry(model, tokenizer, make_image_processor("clip", 32), path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp folders left behind"


def test_cache_bounds_models_and_shares_identical_encoders(tmp_path, tokenizer, images):
    paths = [make_entry(tmp_path, tokenizer, name=f"m{i}", seed=i)[1] for i in range(3)]
    # give m1 the encoder weights of m0: the cache should then share one encoder module
    s0, s1 = ({k: v.clone() for k, v in load_file(p / "model.safetensors").items()} for p in paths[:2])
    s1.update({k: v for k, v in s0.items() if k.startswith("encoder.")})
    save_file(s1, paths[1] / "model.safetensors")
    cache = ModelCache(max_models=2)
    a, b = cache.get(paths[0]), cache.get(paths[1])
    assert a.encoder_key == b.encoder_key and a.model.encoder is b.model.encoder
    assert cache.get(paths[0]) is a
    cache.get(paths[2])
    assert len(cache) == 2
    assert cache.get(paths[1]) is not b, "least recently used entry was evicted and reloaded"
    results = caption_images([a, b], images[:2], settings="greedy")
    assert [r.model_name for r in results] == ["m0", "m1", "m0", "m1"]


def test_encoder_runs_once_per_batch_for_shared_encoders(tmp_path, tokenizer, images, monkeypatch):
    paths = [make_entry(tmp_path, tokenizer, name=f"m{i}", seed=i)[1] for i in range(2)]
    s0, s1 = ({k: v.clone() for k, v in load_file(p / "model.safetensors").items()} for p in paths[:2])
    s1.update({k: v for k, v in s0.items() if k.startswith("encoder.")})
    save_file(s1, paths[1] / "model.safetensors")
    models = [load_entry(p) for p in paths]
    calls = []
    for m in models:
        original = m.model.encode_images
        monkeypatch.setattr(m.model, "encode_images", lambda pv, f=original: calls.append(pv.shape[0]) or f(pv))
    caption_images(models, images, settings="greedy", batch_size=4)
    assert calls == [4, 1], "one encoder pass per batch of images, shared by both models"


def test_vision_encoder_decoder_folder_is_an_entry(tmp_path, tokenizer, images):
    from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

    torch.manual_seed(0)
    enc = ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                    image_size=32, patch_size=8)
    dec = GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                     add_cross_attention=True, is_decoder=True, bos_token_id=tokenizer.eos_token_id,
                     eos_token_id=tokenizer.eos_token_id, initializer_range=0.3)
    ved = VisionEncoderDecoderModel(config=VisionEncoderDecoderConfig.from_encoder_decoder_configs(enc, dec)).eval()
    ved.config.decoder_start_token_id = tokenizer.eos_token_id
    ved.config.pad_token_id = tokenizer.eos_token_id
    ved.config.eos_token_id = tokenizer.eos_token_id
    path = tmp_path / "vit-gpt2"
    ved.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    processor = make_image_processor("vit", 32)
    processor.save_pretrained(path)
    entry = load_entry(path)
    assert entry.kind == "vision-encoder-decoder"
    results = caption_images([entry], images, settings=get_settings("consistent", max_new_tokens=8))
    pixel_values = processor(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = ved.generate(pixel_values=pixel_values, num_beams=5, max_new_tokens=8, do_sample=False)
    expected = [tokenizer.decode(r[1:], skip_special_tokens=True).strip() for r in ref.tolist()]
    assert [r.caption for r in results] == expected
    assert [r["kind"] for r in list_zoo(tmp_path)] == ["vision-encoder-decoder"]


def test_pooled_and_grid_models_never_share_encoder_features(tmp_path, tokenizer, images):
    # Same encoder weights, but the grid mapper reads patch tokens: features computed for one must not feed the other.
    (_pooled, p0), (_grid, p1) = make_entry(tmp_path, tokenizer, name="pooled"), make_entry(
        tmp_path, tokenizer, name="grid", mapper="grid", prefix_length=4)
    s0, s1 = (load_file(p / "model.safetensors") for p in (p0, p1))
    s1.update({k: v for k, v in s0.items() if k.startswith("encoder.")})
    save_file(s1, p1 / "model.safetensors")
    a, b = load_entry(p0), load_entry(p1)
    assert a.encoder_fingerprint == b.encoder_fingerprint and a.encoder_key != b.encoder_key
    together = caption_images([a, b], images, settings="greedy")
    alone = caption_images([b], images, settings="greedy")
    assert [r.captions for r in together if r.model_name == "grid"] == [r.captions for r in alone]
