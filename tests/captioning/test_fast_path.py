"""Protects the decoding runtime (`captioning.gpt2_runner`) and the opt-in int8 fast path.

- the exact path really runs on the in-place KV buffer, and stays equal to transformers' own forward
  (the equivalence tests in test_generation.py check the tokens; here: logits, training mode, fresh weights);
- quantize="int8" is recorded in the settings and the CSV, returns captions close to the exact path's,
  and is refused with a clear message where it cannot run.
"""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.generation import GenerationSettings, check_supported, generate, get_settings
from captioning.gpt2_runner import Gpt2Runner, KVCache
from captioning.pipeline import caption_images
from captioning.preprocessing import make_image_processor
from captioning.tokenization import train_bpe_tokenizer
from captioning.zoo import ZooModel
from helpers import tiny_captioner, tiny_zoo_entry

ROOT = Path(__file__).resolve().parents[2]


def transformers_logits(model, features, tokens):
    """Reference: transformers' GPT-2 forward over prefix + tokens, next-token logits at the end."""
    prefix = model.prefix_embeddings(features)
    embeds = torch.cat((prefix, model.decoder.get_input_embeddings()(tokens)), dim=1)
    return model.decoder(inputs_embeds=embeds).logits[:, -1]


@torch.inference_mode()
def run_steps(model, features, tokens, quantize=None):
    logits, cache = model.prefill(features, quantize=quantize)
    for t in range(tokens.shape[1]):
        logits, cache = model.step(tokens[:, t], cache)
    return logits, cache


@pytest.mark.parametrize("backend", ["fp32", "plain"])
def test_runner_logits_equal_transformers_forward(backend):
    model = tiny_captioner(seed=4)
    torch.manual_seed(4)
    features, tokens = torch.randn(3, model.embed_dim), torch.randint(0, 90, (3, 25))  # grows the buffer past GROW
    runner = Gpt2Runner(model.decoder, backend)
    with torch.inference_mode():
        logits, cache = runner.prefill(model.prefix_embeddings(features))
        cache = runner.reorder_cache(cache, torch.tensor([2, 0, 1]))  # rows move with their cache
        order = torch.tensor([2, 0, 1])
        for t in range(tokens.shape[1]):
            if t in (5, 20):  # beams swap mid-way (before and after the buffer grows)
                cache = runner.reorder_cache(cache, torch.tensor([1, 2, 0]))
                order = order[[1, 2, 0]]
            logits, cache = runner.step(tokens[order, t], cache)
        expected = transformers_logits(model, features[order], tokens[order])
    assert cache.length == 3 + 25
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_eval_uses_the_runner_and_training_mode_keeps_transformers():
    model = tiny_captioner(seed=1)
    features = torch.randn(2, model.embed_dim)
    _, cache = run_steps(model, features, torch.zeros(2, 1, dtype=torch.long))
    assert isinstance(cache, KVCache) and cache.runner.backend == "fp32"
    model.train()  # dropout on: transformers' forward applies it
    _, cache = run_steps(model, features, torch.zeros(2, 1, dtype=torch.long))
    assert not isinstance(cache, KVCache)


def test_changed_weights_are_never_decoded_stale():
    """A model being trained is captioned between optimiser steps: the packed weights follow the module's."""
    model = tiny_captioner(seed=2)
    features = torch.randn(2, model.embed_dim)
    tokens = torch.randint(0, 90, (2, 4))
    run_steps(model, features, tokens)  # builds and caches the runner
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(1.5)  # in place, as an optimiser step
        expected = transformers_logits(model, features, tokens)
    logits, _ = run_steps(model, features, tokens)
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_int8_is_recorded_and_close_to_exact():
    model = tiny_captioner(seed=3)
    torch.manual_seed(3)
    features, tokens = torch.randn(4, model.embed_dim), torch.randint(0, 90, (4, 6))
    exact, _ = run_steps(model, features, tokens)
    fast, cache = run_steps(model, features, tokens, quantize="int8")
    assert cache.runner.backend == "int8"
    assert not torch.equal(fast, exact)  # it really is another computation
    assert torch.linalg.norm(fast - exact) < 0.1 * torch.linalg.norm(exact)  # ... of the same model

    settings = get_settings("consistent", max_new_tokens=6, quantize="int8")
    assert settings.to_dict()["quantize"] == "int8"
    assert "quantize" not in get_settings("consistent").to_dict()  # the exact path records what it always did
    tokenizer = train_bpe_tokenizer(["a red circle", "a blue square"] * 10, vocab_size=280)
    zoo_model = ZooModel.from_model("tiny", model, tokenizer, make_image_processor("clip", 32))
    images = [Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)) for i in range(3)]
    results = caption_images([zoo_model], images, settings=settings)
    assert len(results) == 3 and all(isinstance(r.caption, str) for r in results)
    assert all(r.settings["quantize"] == "int8" for r in results)


def test_int8_refusals_say_why_and_what_to_do():
    with pytest.raises(ValueError, match=r"quantize must be one of \[None, 'int8'\], got 'int4'"):
        GenerationSettings(quantize="int4")
    settings = GenerationSettings(quantize="int8")
    model = tiny_captioner(seed=0).to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"needs a float32 decoder; this one is torch.bfloat16; use quantize=None"):
        generate(model, torch.randn(2, model.embed_dim, dtype=torch.bfloat16), settings)

    class OtherModel:  # any engine model without the fast path (e.g. a VisionEncoderDecoder entry)
        eos_token_id = 0

    with pytest.raises(ValueError, match="not available for a OtherModel"):
        check_supported(OtherModel(), settings)


def test_cli_quantize_writes_the_column(tmp_path):
    tokenizer = train_bpe_tokenizer(["a red circle", "a blue square"] * 10, vocab_size=280)
    tiny_zoo_entry(tmp_path / "zoo", "alpha", tokenizer, seed=0)
    images = tmp_path / "imgs"
    images.mkdir()
    Image.fromarray(np.full((30, 40, 3), 90, dtype=np.uint8)).save(images / "a.png")
    out = tmp_path / "captions.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "captioning", "caption", "--zoo", str(tmp_path / "zoo"), "--images",
                           str(images), "--out", str(out), "--quantize", "int8", "--max-new-tokens", "5", "--quiet"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["quantize"] == "int8" and rows[0]["model_name"] == "alpha"



def test_beams_share_their_image_prompt():
    """The prompt's keys and values are kept once per image: copying rows to beams and reordering beams within
    an image move only the generated positions, and every row still attends over its own image's prompt."""
    model = tiny_captioner(seed=6)
    torch.manual_seed(6)
    features, tokens = torch.randn(2, model.embed_dim), torch.randint(0, 90, (6, 8))
    runner = Gpt2Runner(model.decoder, "fp32")
    with torch.inference_mode():
        logits, cache = runner.prefill(model.prefix_embeddings(features), max_new_tokens=9)
        prompt = cache.prompt.data_ptr()
        cache = runner.reorder_cache(cache, torch.tensor([0, 0, 0, 1, 1, 1]))  # 3 beams per image
        assert cache.group == 3 and cache.prompt.shape[2] == 2 and cache.prompt.data_ptr() == prompt
        sequences = [[] for _ in range(6)]  # each row's tokens so far
        for t in range(tokens.shape[1]):
            if t in (3, 6):  # beams of an image swap and repeat; the rows stay with their image
                swap = [2, 0, 0, 4, 5, 3]
                cache, sequences = runner.reorder_cache(cache, torch.tensor(swap)), [list(sequences[i]) for i in swap]
                assert cache.group == 3
            logits, cache = runner.step(tokens[:, t], cache)
            for row, token in enumerate(tokens[:, t].tolist()):
                sequences[row].append(token)
        assert cache.prompt.data_ptr() == prompt and cache.length == 3 + 8
        expected = transformers_logits(model, features[[0, 0, 0, 1, 1, 1]], torch.tensor(sequences))
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_grouped_and_gathered_attention_agree():
    """Rows in image order take the shared-prompt products; rows in any other order gather each row's prompt:
    both give transformers' logits."""
    model = tiny_captioner(seed=8)
    torch.manual_seed(8)
    features, tokens = torch.randn(3, model.embed_dim), torch.randint(0, 90, (6, 5))
    runner = Gpt2Runner(model.decoder, "fp32")
    for order, group in (([0, 0, 1, 1, 2, 2], 2), ([2, 2, 0, 0, 1, 1], None), ([0, 1, 2], 1)):
        with torch.inference_mode():
            logits, cache = runner.prefill(model.prefix_embeddings(features))
            cache = runner.reorder_cache(cache, torch.tensor(order))  # row i continues image order[i]
            assert cache.group == group
            for t in range(tokens.shape[1]):
                logits, cache = runner.step(tokens[:len(order), t], cache)
            expected = transformers_logits(model, features[order], tokens[:len(order)])
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_prompts_of_finished_images_leave_the_cache():
    """When every row of an image has left the batch, its prompt goes too; the rest stay grouped and correct."""
    model = tiny_captioner(seed=9)
    torch.manual_seed(9)
    features, tokens = torch.randn(3, model.embed_dim), torch.randint(0, 90, (6, 4))
    runner = Gpt2Runner(model.decoder, "fp32")
    with torch.inference_mode():
        logits, cache = runner.prefill(model.prefix_embeddings(features))
        cache = runner.reorder_cache(cache, torch.tensor([0, 0, 1, 1, 2, 2]))
        logits, cache = runner.step(tokens[:, 0], cache)
        cache = runner.reorder_cache(cache, torch.tensor([0, 1, 4, 5]))  # image 1 is done
        assert cache.prompt.shape[2] == 2 and cache.group == 2
        for t in range(1, 4):
            logits, cache = runner.step(tokens[[0, 1, 4, 5], t], cache)
        expected = transformers_logits(model, features[[0, 0, 2, 2]], tokens[[0, 1, 4, 5]])
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
