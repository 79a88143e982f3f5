"""Dtype names and the rule for what a stored dtype runs in on each device (`runtime_dtype`).

Below the zoo: `captioning.zoo.load_entry` follows `runtime_dtype` when it loads an entry whose weights are stored
in float16 or bfloat16 (written by `captioning.precision.convert_entry`):

- on a GPU the model runs in the stored dtype;
- on CPU a float16 entry is upcast to float32 (exact: every float16 value is a float32 value), because CPU
  float16 kernels are slow and round every intermediate result to 11 bits;
- on CPU a bfloat16 entry runs in bfloat16 when this machine computes it correctly (`cpu_computes`, a small
  check of the ops the captioner uses against float32, made once per process), else in float32.
"""

from __future__ import annotations

import functools

import torch

# Every name a user may type -> the dtype name stored in config.json.
DTYPE_NAMES = {"fp16": "float16", "float16": "float16", "half": "float16",
               "bf16": "bfloat16", "bfloat16": "bfloat16",
               "fp32": "float32", "float32": "float32", "float": "float32"}
SHORT_NAMES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
CONVERT_TARGETS = ("fp16", "bf16")  # what `convert` writes; float32 entries are what the trainer writes


def dtype_name(text: str) -> str:
    """"fp16" / "float16" / "half" -> "float16" (and the same for bf16, fp32); ValueError for anything else."""
    name = DTYPE_NAMES.get(str(text).strip().lower())
    if name is None:
        raise ValueError(f"unknown dtype {text!r}; allowed: {', '.join(CONVERT_TARGETS)} (or float16, bfloat16)")
    return name


def torch_dtype(name: str) -> torch.dtype:
    """"float16" -> torch.float16 (names as stored in config.json, or any alias of `dtype_name`)."""
    return getattr(torch, dtype_name(name))


@functools.cache
def cpu_computes(name: str) -> bool:
    """Whether this machine's torch computes the captioner's ops (linear, layer norm, GELU, softmax, attention
    matmuls) in dtype `name` on CPU to within that dtype's rounding of the float32 result. False when an op
    is not implemented for it (older torch builds have no CPU float16 kernels) or gives wrong numbers."""
    dtype = torch_dtype(name)
    if dtype == torch.float32:
        return True
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, 64, generator=generator)
    weight, bias = torch.randn(64, 64, generator=generator) / 8, torch.randn(64, generator=generator)

    def run(t: torch.dtype) -> torch.Tensor:
        h = torch.nn.functional.linear(x.to(t), weight.to(t), bias.to(t))
        h = torch.nn.functional.gelu(torch.nn.functional.layer_norm(h, (64,)))
        attention = (h @ h.transpose(1, 2) / 8).softmax(dim=-1)
        return (attention @ h).float()

    try:
        expected, got = run(torch.float32), run(dtype)
    except (RuntimeError, NotImplementedError):
        return False
    # bfloat16 keeps 8 significant bits (relative step 2**-8), float16 11; allow a few steps of error
    tolerance = 4 * torch.finfo(dtype).eps
    return bool(torch.isfinite(got).all()) and bool(((got - expected).abs() <= tolerance * (1 + expected.abs())).all())


def runtime_dtype(stored: str, device: str | torch.device = "cpu") -> torch.dtype:
    """The dtype an entry whose weights are stored as `stored` runs in on `device` (see the module docstring)."""
    dtype = torch_dtype(stored)
    if torch.device(device).type != "cpu" or dtype == torch.float32:
        return dtype
    if dtype == torch.bfloat16 and cpu_computes("bfloat16"):
        return torch.bfloat16
    return torch.float32
