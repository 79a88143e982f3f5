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
from captioning.zoo import CARD_FILE, CONFIG_FILE, METRICS_FILE, PREPROCESSOR_FILE, WEIGHTS_FILE, ModelCache, ZooError
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
    assert sorted(p.name for p in path.iterdir()) >= sorted([CARD_FILE, CONFIG_FILE, METRICS_FILE, WEIGHTS_FILE,
                                                              PREPROCESSOR_FILE, "tokenizer.json"])
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
    cfg = json.loads((path / CONFIG_FILE).read_text())
    cfg["mapper"]["type"] = "lstm"
    (path / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ZooError, match="Unknown mapper 'lstm'"):
        load_entry(path)
    # shape mismatch: a config that says K=4 with weights for K=3
    cfg["mapper"]["type"] = "mlp"
    cfg["prefix_length"] = 4
    (path / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(ZooError, match="shape mismatches"):
        load_entry(path)
    cfg["prefix_length"] = 3
    (path / CONFIG_FILE).write_text(json.dumps(cfg))
    load_entry(path)
    # missing and corrupt weights
    state = {k: v.clone() for k, v in load_file(path / WEIGHTS_FILE).items()}  # not mmapped: we overwrite the file
    (path / WEIGHTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(ZooError, match="not a readable safetensors"):
        load_entry(path)
    del state["mapper.net.0.weight"]
    save_file(state, path / WEIGHTS_FILE)
    with pytest.raises(ZooError, match="missing"):
        load_entry(path)
    (path / WEIGHTS_FILE).unlink()
    with pytest.raises(ZooError, match=f"missing {WEIGHTS_FILE}"):
        load_entry(path)


class Boom:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ".bin", ".ckpt"])
def test_pickles_are_never_unpickled(tmp_path, tokenizer, monkeypatch, suffix):
    monkeypatch.chdir(tmp_path)
    _, path = make_entry(tmp_path, tokenizer)
    (path / WEIGHTS_FILE).unlink()
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
    (tmp_path / "broken" / CONFIG_FILE).write_text("{not json")
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
    before = (path / WEIGHTS_FILE).read_bytes()
    with pytest.raises(ZooError, match="already exists"):
        save_entry(model, tokenizer, make_image_processor("clip", 32), path)
    assert (path / WEIGHTS_FILE).read_bytes() == before
    save_entry(model, tokenizer, make_image_processor("clip", 32), path, overwrite=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no temp folders left behind"


def test_cache_bounds_models_and_shares_identical_encoders(tmp_path, tokenizer, images):
    paths = [make_entry(tmp_path, tokenizer, name=f"m{i}", seed=i)[1] for i in range(3)]
    # give m1 the encoder weights of m0: the cache should then share one encoder module
    s0, s1 = ({k: v.clone() for k, v in load_file(p / WEIGHTS_FILE).items()} for p in paths[:2])
    s1.update({k: v for k, v in s0.items() if k.startswith("encoder.")})
    save_file(s1, paths[1] / WEIGHTS_FILE)
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
    s0, s1 = ({k: v.clone() for k, v in load_file(p / WEIGHTS_FILE).items()} for p in paths[:2])
    s1.update({k: v for k, v in s0.items() if k.startswith("encoder.")})
    save_file(s1, paths[1] / WEIGHTS_FILE)
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
    s0, s1 = (load_file(p / WEIGHTS_FILE) for p in (p0, p1))
    s1.update({k: v for k, v in s0.items() if k.startswith("encoder.")})
    save_file(s1, p1 / WEIGHTS_FILE)
    a, b = load_entry(p0), load_entry(p1)
    assert a.encoder_fingerprint == b.encoder_fingerprint and a.encoder_key != b.encoder_key
    together = caption_images([a, b], images, settings="greedy")
    alone = caption_images([b], images, settings="greedy")
    assert [r.captions for r in together if r.model_name == "grid"] == [r.captions for r in alone]


# ----------------------------------------------------------------------------------------------------------
# The captioning pipeline: precomputed features and the rule for unreadable images


def test_precomputed_features_skip_preprocessing_and_give_the_same_captions(tmp_path, tokenizer, images, monkeypatch):
    from captioning.zoo import ZooModel

    (_m0, p0), (_m1, p1) = make_entry(tmp_path, tokenizer, name="a"), make_entry(tmp_path, tokenizer, name="b", seed=1)
    models = [load_entry(p0), load_entry(p1)]
    names = [f"im{i}" for i in range(len(images))]
    settings = get_settings("consistent", max_new_tokens=8)
    expected = caption_images(models, images, names=names, settings=settings, batch_size=2)
    stored = {m.encoder_key: dict(zip(names, m.encode(m.preprocess(images)))) for m in models}
    asked = []

    def source(key):
        return lambda batch: asked.append((key, list(batch))) or torch.stack([stored[key][n] for n in batch])

    for m in models:  # neither preprocessing nor the encoder may run
        monkeypatch.setattr(m, "preprocess", lambda *_: pytest.fail("preprocessed although features were given"))
        monkeypatch.setattr(m.model, "encode_images", lambda *_: pytest.fail("encoded although features were given"))
    got = caption_images(models, None, names=names, settings=settings, batch_size=2,
                         features={key: source(key) for key in stored})
    assert [(r.image_name, r.model_name, r.captions) for r in got] == \
        [(r.image_name, r.model_name, r.captions) for r in expected]
    assert [batch for _, batch in asked if _ == models[0].encoder_key] == [names[0:2], names[2:4], names[4:5]]
    with pytest.raises(ValueError, match="none for \\['b'\\]"):
        caption_images(models, None, names=names, features={models[0].encoder_key: source(models[0].encoder_key)})
    # an in-memory model wraps the same way the trainer's validation does, with the same key as when loaded
    wrapped = ZooModel.from_model("a", _m0, tokenizer, make_image_processor("clip", 32))
    assert wrapped.encoder_key == models[0].encoder_key


def test_read_images_leaves_unreadable_images_out_and_names_them(tmp_path, capsys):
    from captioning.pipeline import read_images

    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(good)
    (tmp_path / "broken.jpg").write_text("not a picture")
    read = read_images([("good", good), ("broken", tmp_path / "broken.jpg"), ("gone", tmp_path / "gone.png")])
    assert read.names == ["good"] and [im.size for im in read.images] == [(8, 8)]
    assert sorted(read.problems) == ["broken", "gone"]
    assert "broken.jpg" in read.problems["broken"] and "gone.png" in read.problems["gone"]
    read.report()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("skipped: ") for line in lines)
