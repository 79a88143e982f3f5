"""A GPT-2 decoder run for generation: KV buffers updated in place, matmuls on the CPU's fastest kernels.

`Gpt2Runner` implements the generation engine's model calls (prefill / step / reorder_cache, see
`captioning.generation`) for a transformers GPT-2 (`GPT2LMHeadModel`) from the model's own weights:

- the KV cache is two preallocated tensors written in place, instead of transformers' growing per-layer caches
  (a torch.cat per layer per step): the prompt's keys and values, once per prompt (image), and the generated
  positions', one row per sequence. The beams (or samples) of an image share its prompt's keys and values:
  they are never copied to the beams nor moved by a beam reorder (which copies only the generated positions),
  and a step's attention over the prompt is one product per image for all its beams. Rows that leave the
  batch (captions that ended) leave the buffers at the next reorder, and a prompt no row continues goes too;
- the matmuls use a `backend`:
    "fp32"  (CPU, float32): oneDNN's matmul kernels (`torch.ops.mkldnn._linear_pointwise`), which use the
            CPU's widest vector units (AVX2, AVX-512) on AMD and Intel alike; MKL's sgemm, which `nn.Linear` /
            GPT-2's Conv1D call, does not use AVX-512 on AMD CPUs. oneDNN is handed the module's own weight:
            no packed copy is kept, so an inference-only model holds one copy of each weight (the packed
            copies were +0.6 GB per GPT-2 124M). oneDNN is as fast on a plain (out, in) row-major weight as on
            its packed one, and 1.5-2x slower on GPT-2's Conv1D layout (in, out) (it repacks that at every
            call), so the runner stores each Conv1D weight column-major, once (`_store_out_in`): the same
            tensor, shape (in, out) and values, laid out as (out, in) in memory; transformers' forward,
            training and `state_dict` read it as before. Same model, same arithmetic up to float rounding:
            captions are those of transformers' GPT-2.
    "int8"  (CPU, opt-in, changes numerics): every decoder matmul (attention, MLP and the LM head) with int8
            weights (per output channel) and int8 activations quantised per call (PyTorch's dynamic
            quantisation, `torch.ao.quantization.quantize_dynamic`, fbgemm kernels). The int8 weights are a
            second copy, a quarter of the fp32 size, made only when this backend is asked for.
    "plain" (any device and dtype): GPT-2's own products (torch.addmm), so on a GPU this is cuBLAS.
- the c_fc product and GPT-2's tanh GELU are one oneDNN call on the "fp32" backend.

The "fp32" and "plain" backends read the modules' weights at every call, so they never decode with stale
weights and keep nothing alive. The int8 weights are copies: `runner_for` keeps one runner per (decoder,
backend) and rebuilds it when any decoder weight changed (in-place updates bump a tensor's version), so a
model being trained never decodes with stale weights.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

BACKENDS = ("fp32", "int8", "plain")
GROW = 16  # cache positions added when the buffer is full

Linear = Callable[[torch.Tensor], torch.Tensor]


def unsupported_reason(decoder: nn.Module, backend: str) -> str | None:
    """Why `Gpt2Runner(decoder, backend)` cannot run this decoder, or None when it can."""
    config = getattr(decoder, "config", None)
    if getattr(config, "model_type", None) != "gpt2" or not hasattr(decoder, "transformer"):
        return f"the decoder is {type(decoder).__name__}, not a transformers GPT-2 (GPT2LMHeadModel)"
    if getattr(config, "scale_attn_by_inverse_layer_idx", False) or getattr(config, "reorder_and_upcast_attn", False) \
            or not getattr(config, "scale_attn_weights", True) or getattr(config, "add_cross_attention", False):
        return "the decoder uses a non-default GPT-2 attention option"
    weight = decoder.transformer.wte.weight
    if backend in ("fp32", "int8"):
        if weight.device.type != "cpu":
            return f"backend {backend!r} runs on the CPU; the decoder is on {weight.device}"
        if weight.dtype != torch.float32:
            return f"backend {backend!r} needs a float32 decoder; this one is {weight.dtype}"
        if backend == "fp32" and not torch.backends.mkldnn.is_available():
            return "this PyTorch build has no oneDNN (mkldnn)"
        if backend == "int8" and "fbgemm" not in torch.backends.quantized.supported_engines \
                and "x86" not in torch.backends.quantized.supported_engines:
            return "this PyTorch build has no fbgemm/x86 quantised kernels"
    return None


# ----------------------------------------------------------------------------------------------------------
# Matmul backends. A GPT-2 Conv1D holds weight (in, out) and computes x @ weight + bias.


def _plain(module: nn.Module) -> Linear:
    """module: a GPT-2 Conv1D (weight (in, out), bias) or the LM head (weight (V, d), no bias)."""
    if isinstance(module, nn.Linear):
        return lambda x: x @ module.weight.detach().t()
    return lambda x: torch.addmm(module.bias.detach(), x, module.weight.detach())


def _store_out_in(module: nn.Module) -> None:
    """Lay a Conv1D weight (in, out) out as (out, in) in memory, in place of the old storage (one matrix at a time
    is copied). The Parameter object, its shape and its values stay: optimisers, state_dict and GPT-2's own
    forward (torch.addmm, which takes either layout) see no difference."""
    weight = module.weight
    if weight.stride() == (1, weight.shape[0]):
        return
    with torch.inference_mode(False), torch.no_grad():  # a normal tensor, even when decoding starts it
        weight.data = weight.data.t().contiguous().t()  # (in, out), strides (1, in)


def _return_freed_memory() -> None:
    """Give the heap's free pages back to the OS (glibc's malloc_trim; a no-op elsewhere). The storages replaced by
    `_store_out_in` and the float temporaries of int8 quantisation are freed one matrix at a time; glibc keeps
    such frees on its heap (its mmap threshold rises to the size of the first one), which showed as +140 MiB of
    resident memory for 3 models."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass


def _onednn(module: nn.Module, gelu: bool = False) -> Linear:
    """oneDNN on the module's own weight, read at each call (a view, no copy): (out, in) is what it expects;
    a Conv1D weight stored by `_store_out_in` is a contiguous (out, in) matrix once transposed."""
    attr, algorithm = ("gelu", "tanh") if gelu else ("none", "")
    if isinstance(module, nn.Linear):  # the LM head: weight (V, d) = (out, in) already, tied to wte
        return lambda x: torch.ops.mkldnn._linear_pointwise(x, module.weight.detach(), None, attr, [], algorithm)
    return lambda x: torch.ops.mkldnn._linear_pointwise(x, module.weight.detach().t(), module.bias.detach(), attr,
                                                        [], algorithm)  # Conv1D weight (in, out) -> view (out, in)


def _int8_all(modules: list[nn.Module]) -> list[Linear]:
    """Dynamic int8 quantisation of Conv1D / LM-head weights, one layer at a time through quantize_dynamic
    (so the float copy nn.Linear needs exists for one layer at once, never for the whole decoder)."""
    out = []
    for module in modules:
        weight = module.weight.detach()
        weight = weight if isinstance(module, nn.Linear) else weight.t()  # (out, in)
        bias = getattr(module, "bias", None)
        linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        linear.weight = nn.Parameter(weight, requires_grad=False)  # a view: quantisation reads it
        if bias is not None:
            linear.bias = nn.Parameter(bias.detach(), requires_grad=False)
        with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao; still the API here
            warnings.simplefilter("ignore")
            quantized = torch.ao.quantization.quantize_dynamic(nn.Sequential(linear), {nn.Linear}, dtype=torch.qint8)
        out.append(quantized[0].forward)
    return out


@dataclass
class _Block:
    ln_1: nn.LayerNorm
    attn: Linear
    attn_proj: Linear
    ln_2: nn.LayerNorm
    fc: Linear  # c_fc, with the activation when fused
    mlp_proj: Linear


@dataclass
class KVCache:
    """The keys and values of positions [0, length): the prompt's [0, prompt_length) once per prompt, the
    generated ones per row.

    prompt: (layers, 2, prompts, heads, prompt_length, head_dim), filled by the prefill.
    source: (rows,) the prompt row each row continues.
    group:  g when rows are each prompt's g continuations in order (source = [0]*g + [1]*g + ...), which is what
            beam search and several samples per image make; None after any other reorder (attention then
            gathers each row's prompt).
    kv:     (layers, 2, rows, heads, capacity, head_dim) the generated positions, [0, length - prompt_length)
            filled. Layers outermost: a layer's keys are one (rows * heads) batch of matrices, which the
            attention products read in place.
    """

    prompt: torch.Tensor
    source: torch.Tensor
    group: int | None
    kv: torch.Tensor
    length: int
    runner: Gpt2Runner
    spare: torch.Tensor | None = None  # a buffer of kv's shape that reorder_cache writes into, then swaps

    @property
    def prompt_length(self) -> int:
        return self.prompt.shape[4]

    @property
    def generated(self) -> int:
        """Generated positions filled in `kv`."""
        return self.length - self.prompt_length


class Gpt2Runner:
    """Prefill / step / reorder_cache for one GPT-2 decoder on one matmul backend (see the module docstring)."""

    def __init__(self, decoder: nn.Module, backend: str = "fp32"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {backend!r}")
        reason = unsupported_reason(decoder, backend)
        if reason:
            raise ValueError(f"cannot run this decoder on backend {backend!r}: {reason}")
        config, base = decoder.config, decoder.transformer
        from transformers.activations import ACT2FN

        self.backend = backend
        self.heads, self.width = config.n_head, config.n_embd
        self.head_dim = self.width // self.heads
        self.wte, self.wpe, self.ln_f = base.wte, base.wpe, base.ln_f  # modules: their weights are read live
        fuse_gelu = backend == "fp32" and config.activation_function in ("gelu_new", "gelu_pytorch_tanh")
        self.act = (lambda x: x) if fuse_gelu else ACT2FN[config.activation_function]
        mats = []  # per block: c_attn, attn c_proj, c_fc, mlp c_proj (GPT-2 Conv1D modules)
        for block in base.h:
            mats += [block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj]
        head = decoder.get_output_embeddings()  # nn.Linear, weight (V, d) tied to wte
        if backend == "int8":
            linears = _int8_all(mats + [head])
            _return_freed_memory()
        elif backend == "fp32":
            if any(m.weight.stride() != (1, m.weight.shape[0]) for m in mats):
                for module in mats:
                    _store_out_in(module)
                _return_freed_memory()
            linears = [_onednn(m, gelu=fuse_gelu and i % 4 == 2) for i, m in enumerate(mats)] + [_onednn(head)]
        else:
            linears = [_plain(m) for m in mats] + [_plain(head)]
        self.blocks = [_Block(block.ln_1, *linears[4 * i:4 * i + 2], block.ln_2, *linears[4 * i + 2:4 * i + 4])
                       for i, block in enumerate(base.h)]
        self.head = linears[-1]

    # -- the engine's calls ---------------------------------------------------------------------------------

    def _qkv(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """x: (rows, T, d) after ln_1 -> q, k, v as (3, rows, heads, T, head_dim)."""
        rows, length = x.shape[:2]
        qkv = self.blocks[layer].attn(x.reshape(rows * length, self.width))
        return qkv.view(rows, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)

    def _prompt_attention(self, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
        """The prefill: x (prompts, K, d); writes the prompt's K/V and attends causally over it."""
        qkv = self._qkv(x, layer)
        cache.prompt[layer] = qkv[1:]
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], is_causal=True)  # (prompts, H, K, hd)
        return out.transpose(1, 2).reshape(-1, self.width)

    def _step_attention(self, x: torch.Tensor, cache: KVCache, layer: int) -> torch.Tensor:
        """A step: x (rows, 1, d); writes the new K/V at generated position t and attends over the row's prompt
        and its generated positions [0, t]."""
        rows = x.shape[0]
        qkv = self._qkv(x, layer)  # (3, rows, H, 1, hd)
        t = cache.generated
        cache.kv[layer, :, :, :, t:t + 1] = qkv[1:]
        q = qkv[0]  # (rows, H, 1, hd)
        keys, values = cache.kv[layer, 0, :, :, :t + 1], cache.kv[layer, 1, :, :, :t + 1]  # (rows, H, t+1, hd)
        prompt_k, prompt_v = cache.prompt[layer, 0], cache.prompt[layer, 1]  # (prompts, H, K, hd)
        if cache.group is None:  # rows in no particular order: each row's prompt, gathered
            keys = torch.cat((prompt_k[cache.source], keys), 2)
            values = torch.cat((prompt_v[cache.source], values), 2)
            return F.scaled_dot_product_attention(q, keys, values).transpose(1, 2).reshape(rows, self.width)
        # Rows are each prompt's g continuations in order: one product per prompt for its g queries.
        prompts, g, k = prompt_k.shape[0], cache.group, cache.prompt_length
        heads, hd = self.heads, self.head_dim
        grouped = q.view(prompts, g, heads, hd).transpose(1, 2)  # (prompts, H, g, hd)
        on_prompt = grouped @ prompt_k.transpose(2, 3)  # (prompts, H, g, K)
        on_generated = (q @ keys.transpose(2, 3)).view(prompts, g, heads, t + 1).transpose(1, 2)  # (prompts, H, g, t+1)
        scores = torch.cat((on_prompt, on_generated), 3).float()  # softmax in float32 for half-precision models
        weights = scores.mul_(1.0 / math.sqrt(hd)).softmax(-1).to(q.dtype)  # (prompts, H, g, K + t + 1)
        from_prompt = (weights[..., :k] @ prompt_v).transpose(1, 2)  # (prompts, g, H, hd)
        from_generated = weights[..., k:].transpose(1, 2).reshape(rows, heads, 1, t + 1) @ values  # (rows, H, 1, hd)
        return (from_generated.view(prompts, g, heads, hd) + from_prompt).view(rows, self.width)

    def _forward(self, hidden: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """hidden: (rows, T, d) input embeddings at positions [cache.length, + T): the prompt (T = K, at the
        prefill) or one token per row (T = 1); returns next-token logits (rows, V)."""
        rows, length, _ = hidden.shape
        start = cache.length
        prefill = start == 0
        if not prefill and cache.generated + length > cache.kv.shape[4]:
            cache.spare = None  # freed before the larger buffer is made: the two never coexist with the spare
            cache.kv = torch.cat((cache.kv, cache.kv.new_empty(cache.kv.shape[:4] + (GROW, self.head_dim))), 4)
        h = (hidden + self.wpe.weight[start:start + length]).reshape(rows * length, self.width)
        attention = self._prompt_attention if prefill else self._step_attention
        for i, block in enumerate(self.blocks):
            attn = attention(block.ln_1(h).view(rows, length, self.width), cache, i)
            h = h + block.attn_proj(attn)
            h = h + block.mlp_proj(self.act(block.fc(block.ln_2(h))))
        cache.length = start + length
        last = h.view(rows, length, self.width)[:, -1]  # the LM head only where a next token is chosen
        return self.head(self.ln_f(last)).float()

    def prefill(self, embeds: torch.Tensor, max_new_tokens: int | None = None) -> tuple[torch.Tensor, KVCache]:
        """embeds: (B, K, d) the visual prefix; returns next-token logits (B, V) and the cache.

        max_new_tokens, when known, sizes the generated positions' buffer once: max_new_tokens - 1 positions
        (the last token chosen is never fed back), so it never grows; without it the buffer grows by GROW
        positions at a time.
        """
        prompts, length, _ = embeds.shape
        capacity = max(max_new_tokens - 1, 1) if max_new_tokens else GROW
        cache = KVCache(prompt=embeds.new_empty((len(self.blocks), 2, prompts, self.heads, length, self.head_dim)),
                        source=torch.arange(prompts, device=embeds.device), group=1,
                        kv=embeds.new_empty((len(self.blocks), 2, prompts, self.heads, capacity, self.head_dim)),
                        length=0, runner=self)
        return self._forward(embeds, cache), cache

    def step(self, tokens: torch.Tensor, cache: KVCache) -> tuple[torch.Tensor, KVCache]:
        """tokens: (rows,) one new token per sequence; returns next-token logits (rows, V)."""
        return self._forward(self.wte.weight[tokens][:, None], cache), cache

    @staticmethod
    def reorder_cache(cache: KVCache, index: torch.Tensor) -> KVCache:
        """Select / repeat rows (beams and several captions per image)."""
        # Into a buffer kept from the step before: a fresh allocation of this size is returned to the OS when
        # freed, so every step would fault in new pages, which costs several times the copy. Only the filled
        # positions are copied.
        # The prompt's keys and values stay where they are (a row only changes which prompt row it continues),
        # unless no row continues a prompt any more: it is then dropped.
        rows = index.numel()
        shape = cache.kv.shape[:2] + (rows,) + cache.kv.shape[3:]
        if cache.spare is None or cache.spare.shape != shape:
            cache.spare = cache.kv.new_empty(shape)
        filled = cache.generated
        if filled > 0:
            torch.index_select(cache.kv[:, :, :, :, :filled], 2, index, out=cache.spare[:, :, :, :, :filled])
        old = cache.kv
        cache.kv, cache.spare = cache.spare, (old if old.shape == shape else None)
        cache.source = cache.source[index]
        used = torch.unique(cache.source)  # sorted
        if used.numel() < cache.prompt.shape[2]:  # captions that ended left the batch: so do their prompts
            cache.prompt = cache.prompt.index_select(2, used)
            cache.source = torch.searchsorted(used, cache.source)
        prompts = cache.prompt.shape[2]
        group = rows // prompts if rows % prompts == 0 else 0
        in_order = group > 0 and torch.equal(
            cache.source, torch.arange(prompts, device=index.device).repeat_interleave(group))
        cache.group = group if in_order else None
        return cache


def _weights_version(decoder: nn.Module) -> tuple[Any, ...]:
    return tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in decoder.parameters())


_RUNNERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # decoder -> {backend: (version, runner)}


def runner_for(decoder: nn.Module, backend: str) -> Gpt2Runner:
    """The decoder's runner for `backend`, built once and rebuilt when any of its weights changed."""
    runners = _RUNNERS.setdefault(decoder, {})
    version = _weights_version(decoder)
    cached = runners.get(backend)
    if cached is None or cached[0] != version:
        runners[backend] = (version, Gpt2Runner(decoder, backend))
    return runners[backend][1]
