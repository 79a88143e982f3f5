"""Protects `bench/peers.py`: the ONNX export of GPT-2 with past key/values is transformers' GPT-2, so the peer
rows of the benchmark time the same work: ONNX Runtime and OpenVINO (fp32) return the captions of the exact path
(greedy and beam, tokens equal, scores within 1e-4), and ONNX Runtime's int8 stays close to them."""

import numpy as np
import pytest
import torch

from captioning.generation import GenerationSettings, generate, get_settings
from helpers import load_bench, tiny_captioner

onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is pinned in requirements-test.txt; make setup")


def eos_likely(model):
    with torch.no_grad():  # captions of several lengths, as in test_generation.py
        wte = model.decoder.get_input_embeddings().weight
        wte[model.eos_token_id] = wte[model.eos_token_id] * 3.0 + 0.3
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    peers = load_bench("peers")
    model = eos_likely(tiny_captioner(seed=5))
    folder = tmp_path_factory.mktemp("onnx")
    fp32 = peers.export_decoder(model.decoder, folder / "decoder.onnx")
    return peers, model, fp32, peers.quantize_int8(fp32, folder / "decoder-int8.onnx")


SETTINGS = [GenerationSettings(strategy="beam", num_beams=4, max_new_tokens=10, num_captions=2),
            get_settings("greedy", max_new_tokens=10)]


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("settings", SETTINGS, ids=["beam", "greedy"])
def test_fp32_peers_give_the_exact_captions(exported, runtime, settings):
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="openvino is pinned in requirements-test.txt; make setup")
    peers, model, fp32, _ = exported
    features = torch.randn(5, model.embed_dim, generator=torch.Generator().manual_seed(1))
    expected = generate(model, features, settings)
    got = generate(peers.PeerCaptioner(model, fp32, runtime, threads=1), features, settings)
    assert got.tokens == expected.tokens
    if settings.strategy == "beam":  # finished hypotheses of several lengths: EOS inside the exported graph's work
        assert len({len(c) for caps in got.tokens for c in caps}) > 1
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-4)


def test_onnxruntime_int8_is_another_computation_of_the_same_model(exported):
    peers, model, fp32, int8 = exported
    features = torch.randn(4, model.embed_dim, generator=torch.Generator().manual_seed(2))
    exact, _ = peers.PeerCaptioner(model, fp32, "onnxruntime", 1).prefill(features)
    fast, _ = peers.PeerCaptioner(model, int8, "onnxruntime", 1).prefill(features)
    assert not torch.equal(fast, exact)
    assert torch.linalg.norm(fast - exact) < 0.1 * torch.linalg.norm(exact)
    assert int8.stat().st_size < 0.7 * fp32.stat().st_size  # int8 weights (the graph itself is much of a tiny file)
