"""Half-precision zoo entries: the dtype names, what a stored dtype runs in on each device, and
`convert_entry` (`python -m captioning convert model_zoo/NAME --dtype fp16|bf16 [--out NAME-fp16]`).

A converted entry is a normal entry written by `captioning.zoo.save_entry`: its safetensors hold the weights in
float16 or bfloat16 (about half the bytes), its config.json says `"dtype": "float16"` and its card says what it
runs in. Loading (`captioning.zoo.load_entry`) follows `runtime_dtype`:

- on a GPU the model runs in the stored dtype;
- on CPU a float16 entry is upcast to float32 (exact: every float16 value is a float32 value), because CPU
  float16 kernels are slow and round every intermediate result to 11 bits;
- on CPU a bfloat16 entry runs in bfloat16 when this machine computes it correctly (`cpu_computes`, a small
  check of the ops the captioner uses against float32, made once per process), else in float32.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

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


def default_out(source: Path, target: str) -> Path:
    """Where `convert` writes when --out is not given: NAME-fp16 beside NAME."""
    return source.parent / f"{source.name}-{SHORT_NAMES[target]}"


def convert_entry(source: str | os.PathLike, dtype: str, out: str | os.PathLike | None = None) -> Path:
    """Write a copy of the prefix-captioner entry `source` whose weights are stored in `dtype` ("fp16" or
    "bf16"); returns its folder. `out` is a folder, or a bare name (a sibling of `source`); default NAME-fp16.

    The copy keeps the parent's tokenizer, preprocessing, training record and metrics (marked as the parent's,
    measured before conversion) and records where it came from (`training.converted_from`). Raises ValueError
    (unknown dtype, the entry already in that dtype) or ZooError (not a prefix captioner, `out` exists).
    """
    from .zoo import (
        CONFIG_FILE,
        CURVES_FILE,
        KIND_PREFIX,
        METRICS_FILE,
        ZooError,
        _read_json,
        entry_kind,
        load_entry,
        save_entry,
    )

    source = Path(source)
    target = dtype_name(dtype)
    if SHORT_NAMES[target] not in CONVERT_TARGETS:
        raise ValueError(f"convert writes half-precision copies; got --dtype {dtype!r}, allowed: "
                         f"{', '.join(CONVERT_TARGETS)}")
    if not (source / CONFIG_FILE).is_file():
        load_entry(source)  # raises the zoo's own explanation of what is wrong with the folder
    config = _read_json(source / CONFIG_FILE)
    if entry_kind(config) != KIND_PREFIX:
        raise ZooError(f"Zoo entry {source} is a {entry_kind(config)} folder; convert handles caption-zoo prefix "
                       "captioners (for a transformers model, use its own `.half().save_pretrained(...)`)")
    stored = config.get("dtype", "float32")
    if stored == target:
        raise ValueError(f"Zoo entry {source} is already stored in {target}; nothing to convert")
    if out is None:
        destination = default_out(source, target)
    else:
        destination = Path(out)
        if len(destination.parts) == 1:  # a bare name: a new entry beside its parent
            destination = source.parent / destination
    if destination.exists():
        raise ZooError(f"{destination} already exists; choose another --out (or delete it first)")
    parent = load_entry(source)
    model = parent.model.to(torch_dtype(target))
    model.config.dtype = target
    training = dict(config.get("training") or {})
    training["converted_from"] = {"entry": source.name, "dtype": stored, "weights_hash": parent.weights_hash,
                                  "command": f"python -m captioning convert {source.as_posix()} "
                                             f"--dtype {SHORT_NAMES[target]}"}
    metrics = None
    if (source / METRICS_FILE).is_file():
        metrics = dict(_read_json(source / METRICS_FILE))
        metrics["measured_on"] = f"{source.name} ({stored}), before conversion to {target}"
    curves = source / CURVES_FILE
    return save_entry(model, parent.tokenizer, parent.image_processor, destination, metrics=metrics,
                      training=training, curves=curves if curves.is_file() else None)
