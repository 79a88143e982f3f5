"""Protects CLIPScore and RefCLIPScore (Hessel et al. 2021): w = 2.5 on the clipped image-text cosine, the
"A photo depicts " prefix on every caption, RefCLIPScore the harmonic mean with the best clipped reference
cosine; a hand-computed case, a tiny CLIPModel built from a config (saved as a folder, loaded like a hub model),
and the clear reason given when no CLIP model is available offline."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tokenizers.processors import TemplateProcessing
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from captioning.clipscore import TEXT_PREFIX, clip_scores, load_clip_scorer, scores_from_embeddings
from captioning.hub import PretrainedLoadError
from captioning.tokenization import EOS_TOKEN, train_bpe_tokenizer

CAPTIONS = ["a red circle", "a blue square on the left", "two green triangles", "a photo depicts a cat"]


def test_hand_computed_values():
    image = torch.tensor([[3.0, 0.0]])  # scale is irrelevant: everything is normalised
    candidate = torch.tensor([[0.6, 0.8]])  # cos(image, candidate) = 0.6 -> CLIPScore = 2.5 * 0.6 = 1.5
    references = [torch.tensor([[0.0, 2.0], [1.0, 0.0]])]  # cosines 0.8 and 0.6 -> best 0.8
    got = scores_from_embeddings(image, candidate, references)
    assert got["clipscore"] == pytest.approx([1.5])
    assert got["refclipscore"] == pytest.approx([2 * 1.5 * 0.8 / (1.5 + 0.8)])  # 1.0434782...
    # negative cosines are clipped at 0, and the harmonic mean of zeros is 0
    opposite = scores_from_embeddings(image, -candidate, [-references[0]])
    assert opposite == {"clipscore": [0.0], "refclipscore": [0.0]}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = train_bpe_tokenizer(CAPTIONS * 5 + [TEXT_PREFIX] * 5, vocab_size=300)
    eos = tokenizer.eos_token_id
    # CLIP's text tower pools at the end-of-text token, which CLIP's own tokenizer appends
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(single=f"$A {EOS_TOKEN}",
                                                                    special_tokens=[(EOS_TOKEN, eos)])
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=40, eos_token_id=eos, bos_token_id=eos,
                         pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16)
    CLIPModel(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def images(n):
    rng = np.random.default_rng(1)
    return [Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)) for _ in range(n)]


def test_tiny_clip_model_scores_as_the_definition_says(tiny_clip):
    scorer = load_clip_scorer(str(tiny_clip), device="cpu")
    pics = images(3)
    candidates = CAPTIONS[:3]
    references = [[CAPTIONS[0]], [CAPTIONS[2], CAPTIONS[3]], [CAPTIONS[1]]]
    got = clip_scores(scorer, pics, candidates, references)

    # the same numbers straight from the model's two towers
    model, tok = scorer.model, scorer.tokenizer

    def text(t):
        ids = tok([TEXT_PREFIX + t], return_tensors="pt")
        with torch.no_grad():
            out = model.get_text_features(**ids)
        v = (out if isinstance(out, torch.Tensor) else out.pooler_output)[0].double().numpy()
        return v / np.linalg.norm(v)

    pixels = scorer.image_processor(images=pics, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model.get_image_features(pixel_values=pixels)
    image_emb = (out if isinstance(out, torch.Tensor) else out.pooler_output).double().numpy()
    image_emb /= np.linalg.norm(image_emb, axis=1, keepdims=True)
    expected_clip, expected_ref = [], []
    for i, caption in enumerate(candidates):
        c = 2.5 * max(float(image_emb[i] @ text(caption)), 0.0)
        r = max(max(float(text(caption) @ text(ref)) for ref in references[i]), 0.0)
        expected_clip.append(c)
        expected_ref.append(2 * c * r / (c + r) if c + r else 0.0)
    assert got["per_image"]["clipscore"] == pytest.approx(expected_clip, abs=1e-5)
    assert got["per_image"]["refclipscore"] == pytest.approx(expected_ref, abs=1e-5)
    assert got["clipscore"] == pytest.approx(np.mean(expected_clip), abs=1e-5)
    # a caption equal to its only reference has text similarity 1: RefCLIPScore = 2c / (c + 1)
    c = expected_clip[0]
    assert got["per_image"]["refclipscore"][0] == pytest.approx(2 * c / (c + 1), abs=1e-5)
    assert len({round(v, 6) for v in got["per_image"]["clipscore"]}) > 1  # the captions are told apart
    with pytest.raises(ValueError, match="one caption"):
        clip_scores(scorer, pics, candidates[:2])


def test_no_clip_offline_is_a_clear_reason(monkeypatch, tmp_path):
    from trainer.scoring import load_clip

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedLoadError, match="offline"):
        load_clip_scorer("nobody/no-such-clip-model")
    scorer, info = load_clip("nobody/no-such-clip-model")
    assert scorer is None and info["model"] == "nobody/no-such-clip-model"
    assert info["reason"].startswith("CLIPScore not computed:") and "offline" in info["reason"]
    scorer, info = load_clip(str(tmp_path / "missing-folder"))
    assert scorer is None and "does not exist" in info["reason"]


def test_evaluate_reports_clipscore_with_the_model_used(tiny_clip, tmp_path, capsys):
    from helpers import ROOT
    from trainer.data import write_shapes_dataset
    from trainer.evaluate import main

    write_shapes_dataset(tmp_path / "shapes", n=6, seed=5, splits=(0.0, 0.0, 1.0))
    capsys.readouterr()
    assert main(["--model", str(ROOT / "model_zoo" / "shapes-clip-grid-k9"), "--data", str(tmp_path / "shapes"),
                 "--metrics", "bleu", "--max-new-tokens", "12", "--clipscore", str(tiny_clip), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert 0 <= result["metrics"]["clipscore"] <= 2.5 and 0 <= result["metrics"]["refclipscore"] <= 2.5
    assert result["clipscore"]["model"] == str(tiny_clip) and result["clipscore"]["clipscore_w"] == 2.5
    assert main(["--model", str(ROOT / "model_zoo" / "shapes-clip-grid-k9"), "--data", str(tmp_path / "shapes"),
                 "--metrics", "bleu", "--max-new-tokens", "12", "--clipscore", str(tmp_path / "nope"), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert "clipscore" not in result["metrics"] and "does not exist" in result["clipscore"]["reason"]
    assert "CLIPScore not computed" in captured.err
