"""The peers of `bench/generation.py`: what a user would pick instead of Caption Zoo for fast CPU decoding of the
same GPT-2 with prefix embeddings — ONNX Runtime (fp32, and its dynamic int8 quantisation) and OpenVINO.

Each is given the same decoder, exported once to ONNX with past key/values (`export_decoder`), and decodes through
the same engine (`captioning.generation.generate`: the same beam search, greedy loop, settings and token count),
so the rows compare the decoder runtimes, nothing else. The exported graph is GPT-2 as transformers computes it
(the equivalence is checked by tests/bench/test_peers.py):

    inputs   inputs_embeds (B, T, d)   the visual prefix (T = K at the prefill; T = 0 at a step)
             input_ids     (B, S)      the new token (S = 1 at a step; S = 0 at the prefill)
             past          (B, L, 2, H, P, hd)   keys and values of the P positions before (P = 0 at the prefill)
    outputs  logits        (B, V)      next-token logits at the last position
             present       (B, L, 2, H, P + T + S, hd)

The cache goes in and out of the graph at every step (a Concat per layer), as transformers' ONNX exports do;
beam reordering selects rows of it with numpy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PEERS = ("onnxruntime", "onnxruntime-int8", "openvino")


class _Gpt2WithPast(nn.Module):
    """GPT-2 (transformers' GPT2LMHeadModel weights) with the past as one tensor: the graph that is exported."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder
        config = decoder.config
        self.heads, self.head_dim = config.n_head, config.n_embd // config.n_head

    def forward(self, inputs_embeds: torch.Tensor, input_ids: torch.Tensor, past: torch.Tensor):
        base = self.decoder.transformer
        hidden = torch.cat((inputs_embeds, base.wte(input_ids)), dim=1)  # (B, T, d)
        rows, length, width = hidden.shape
        start = past.shape[4]
        positions = torch.arange(length, device=hidden.device) + start
        h = hidden + base.wpe(positions)  # (B, T, d)
        # query t (at start + t) sees keys 0 .. start + t
        allowed = torch.arange(start + length)[None, :] <= positions[:, None]  # (T, P + T)
        presents = []
        for i, block in enumerate(base.h):
            qkv = block.attn.c_attn(block.ln_1(h)).view(rows, length, 3, self.heads, self.head_dim)
            qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, B, H, T, hd)
            keys = torch.cat((past[:, i, 0], qkv[1]), dim=2)  # (B, H, P + T, hd)
            values = torch.cat((past[:, i, 1], qkv[2]), dim=2)
            presents.append(torch.stack((keys, values), dim=1))  # (B, 2, H, P + T, hd)
            scores = qkv[0] @ keys.transpose(2, 3) / math.sqrt(self.head_dim)  # (B, H, T, P + T)
            scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
            attn = (F.softmax(scores, dim=-1) @ values).transpose(1, 2).reshape(rows, length, width)
            h = h + block.attn.c_proj(attn)
            h = h + block.mlp.c_proj(block.mlp.act(block.mlp.c_fc(block.ln_2(h))))
        logits = self.decoder.lm_head(base.ln_f(h[:, -1]))  # (B, V)
        return logits, torch.stack(presents, dim=1)  # (B, L, 2, H, P + T, hd)


def export_decoder(decoder: nn.Module, path: Path) -> Path:
    """Write the decoder as one ONNX graph with past key/values (see the module docstring); returns `path`."""
    config = decoder.config
    wrapper = _Gpt2WithPast(decoder).eval()
    embeds = torch.zeros(2, 3, config.n_embd)
    ids = torch.zeros(2, 0, dtype=torch.long)
    past = torch.zeros(2, config.n_layer, 2, config.n_head, 0, config.n_embd // config.n_head)
    with torch.no_grad():
        torch.onnx.export(wrapper, (embeds, ids, past), str(path), dynamo=False, opset_version=17,
                          input_names=["inputs_embeds", "input_ids", "past"], output_names=["logits", "present"],
                          dynamic_axes={"inputs_embeds": {0: "rows", 1: "prefix"}, "input_ids": {0: "rows", 1: "new"},
                                        "past": {0: "rows", 4: "past"}, "logits": {0: "rows"},
                                        "present": {0: "rows", 4: "total"}})
    return path


def quantize_int8(source: Path, target: Path) -> Path:
    """ONNX Runtime's dynamic int8 quantisation of the exported graph (int8 weights, activations per call)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    return target


class PeerCaptioner:
    """The generation engine's model interface (prefill / step / reorder_cache) on an exported decoder run by
    ONNX Runtime or OpenVINO; the visual prefix comes from the zoo model's own encoder and mapper."""

    def __init__(self, captioner: Any, onnx_path: Path, runtime: str, threads: int):
        config = captioner.decoder.config
        self.captioner = captioner
        self.eos_token_id = config.eos_token_id
        self.width = config.n_embd
        self.past_shape = (config.n_layer, 2, config.n_head, 0, config.n_embd // config.n_head)
        if runtime == "openvino":
            import openvino as ov

            # f32: OpenVINO would otherwise run bf16 on CPUs that have it, which changes the numerics
            compiled = ov.Core().compile_model(str(onnx_path), "CPU", {"INFERENCE_NUM_THREADS": threads,
                                                                      "INFERENCE_PRECISION_HINT": "f32"})
            request = compiled.create_infer_request()

            def run(feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
                out = request.infer(feeds, share_inputs=True)
                return out[compiled.output("logits")], out[compiled.output("present")].copy()
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

            def run(feeds: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
                logits, present = session.run(None, feeds)
                return logits, present
        self._run = run

    def prefill(self, features: torch.Tensor) -> tuple[torch.Tensor, np.ndarray]:
        prefix = self.captioner.prefix_embeddings(features).detach().numpy()  # (B, K, d)
        rows = prefix.shape[0]
        logits, present = self._run({"inputs_embeds": prefix, "input_ids": np.zeros((rows, 0), np.int64),
                                     "past": np.zeros((rows,) + self.past_shape, np.float32)})
        return torch.from_numpy(logits), present

    def step(self, tokens: torch.Tensor, cache: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        rows = tokens.shape[0]
        logits, present = self._run({"inputs_embeds": np.zeros((rows, 0, self.width), np.float32),
                                     "input_ids": tokens.numpy()[:, None].astype(np.int64), "past": cache})
        return torch.from_numpy(logits), present

    @staticmethod
    def reorder_cache(cache: np.ndarray, index: torch.Tensor) -> np.ndarray:
        return cache[index.numpy()]
