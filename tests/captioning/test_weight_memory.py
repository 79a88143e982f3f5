"""Protects issue 22's memory rule: a model that decodes keeps one copy of each decoder weight.

- decoding on the exact path ("fp32", "plain") adds no tensor that holds weights: every tensor alive after
  decoding that was not alive before is small (the tensors are counted by storage, found through the GC);
  the packed copies this replaced were +0.6 GB per GPT-2 124M;
- the parameters, `state_dict` and training see ordinary tensors with the same values before and after decoding
  (the fp32 runner lays the Conv1D weights out as (out, in) in memory once, in place of the old storage);
- the int8 path's copy is int8 (a quarter of the float bytes), made one layer at a time;
- the KV buffer is allocated once at its final size when the caption length is known.
"""

import gc

import pytest
import torch

from captioning.generation import generate, get_settings
from captioning.gpt2_runner import Gpt2Runner, runner_for
from helpers import tiny_captioner


def tensor_storages() -> dict[int, int]:
    """Every tensor storage the GC can reach (parameters, buffers, closures' tensors): data_ptr -> bytes."""
    gc.collect()
    storages = {}
    for obj in gc.get_objects():
        if issubclass(type(obj), torch.Tensor) and obj.device.type == "cpu":
            try:
                storage = obj.untyped_storage()
                storages[storage.data_ptr()] = storage.nbytes()
            except (RuntimeError, NotImplementedError):  # opaque layouts (oneDNN packed, quantised): by id
                storages[id(obj)] = obj.numel() * obj.element_size()
    return storages


def decoder_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.decoder.parameters())


@pytest.mark.parametrize("backend", ["fp32", "plain"])
def test_exact_path_keeps_no_copy_of_the_weights(backend):
    model = tiny_captioner(seed=0)
    features = torch.randn(3, model.embed_dim)
    values = {name: p.detach().clone() for name, p in model.decoder.named_parameters()}
    before = tensor_storages()
    with torch.inference_mode():
        runner = runner_for(model.decoder, backend)
        logits, cache = runner.prefill(model.prefix_embeddings(features))
        runner.step(logits.argmax(-1), cache)
    del logits, cache
    after = tensor_storages()
    largest_matrix = max(p.numel() * p.element_size() for p in model.decoder.parameters())
    # What the runner keeps (nothing of the weights) plus loose ends: far less than one weight matrix. A storage
    # the runner replaced (the (out, in) layout) is freed, so it is counted once.
    assert sum(after.values()) - sum(before.values()) < largest_matrix / 4, (sum(after.values()) - sum(before.values()),
                                                                             decoder_bytes(model))
    for name, p in model.decoder.named_parameters():  # ordinary tensors, the same values
        assert p.layout == torch.strided and not p.is_inference() and torch.equal(p, values[name]), name
    ptrs = {p.data_ptr() for p in model.decoder.parameters()}
    with torch.inference_mode():
        runner = runner_for(model.decoder, backend)
        runner.prefill(model.prefix_embeddings(features))
    assert {p.data_ptr() for p in model.decoder.parameters()} == ptrs  # laid out once, not at every decode


def test_state_dict_and_training_see_the_decoding_weights():
    """state_dict is the parameters (no rebuild needed), and a training step is decoded with at once."""
    model = tiny_captioner(seed=1)
    features, tokens = torch.randn(2, model.embed_dim), torch.randint(0, 90, (2, 5))
    generate(model, features, get_settings("greedy", max_new_tokens=4))  # builds the runner
    state = model.decoder.state_dict()
    for name, p in model.decoder.named_parameters():
        assert state[name].layout == torch.strided and state[name].data_ptr() == p.data_ptr(), name
    c_fc = model.decoder.transformer.h[0].mlp.c_fc.weight  # GPT-2's Conv1D: (in, out), now (out, in) in memory
    assert c_fc.shape == (model.n_embd, 4 * model.n_embd) and c_fc.t().is_contiguous()

    model.train()
    optimizer = torch.optim.SGD(model.decoder.parameters(), lr=0.5)
    mask = torch.ones_like(tokens)
    model(tokens, mask, image_embeds=features)["loss"].backward()
    optimizer.step()
    model.eval()
    with torch.inference_mode():
        logits, cache = model.prefill(features)
        for t in range(tokens.shape[1]):
            logits, cache = model.step(tokens[:, t], cache)
        prefix = model.prefix_embeddings(features)
        embeds = torch.cat((prefix, model.decoder.get_input_embeddings()(tokens)), dim=1)
        expected = model.decoder(inputs_embeds=embeds).logits[:, -1]
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_int8_copy_is_a_quarter_of_the_float_weights():
    model = tiny_captioner(seed=2)
    runner = Gpt2Runner(model.decoder, "int8")
    packed = 0
    for linear in [f for block in runner.blocks for f in (block.attn, block.attn_proj, block.fc, block.mlp_proj)] \
            + [runner.head]:
        weight, _ = linear.__self__._packed_params._weight_bias()  # the quantised nn.Linear behind the call
        assert weight.dtype == torch.qint8
        packed += weight.numel()
    matrices = sum(p.numel() for name, p in model.decoder.named_parameters()
                   if p.dim() == 2 and "wpe" not in name)  # the blocks' matrices and wte (= the LM head)
    assert packed == matrices  # one int8 value per float weight: a quarter of the bytes


def test_kv_buffer_is_allocated_once_at_its_final_size():
    model = tiny_captioner(seed=3, prefix_length=3)
    runner = Gpt2Runner(model.decoder, "fp32")
    new_tokens = 30  # more than the growth step: without the hint the buffer would grow
    with torch.inference_mode():
        logits, cache = runner.prefill(model.prefix_embeddings(torch.randn(2, model.embed_dim)),
                                       max_new_tokens=new_tokens)
        buffer = cache.kv.data_ptr()
        assert cache.prompt.shape[4] == 3  # the prompt's positions, once per image
        assert cache.kv.shape[4] == new_tokens - 1  # the generated ones: the last token chosen is never fed back
        for _ in range(new_tokens - 1):
            logits, cache = runner.step(logits.argmax(-1), cache)
    assert cache.kv.data_ptr() == buffer and cache.length == 3 + new_tokens - 1
