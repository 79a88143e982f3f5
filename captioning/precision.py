"""Half-precision zoo entries: `convert_entry` (`python -m captioning convert model_zoo/NAME --dtype fp16|bf16
[--out NAME-fp16]`).

A converted entry is a normal entry written by `captioning.zoo.save_entry`: its safetensors hold the weights in
float16 or bfloat16 (about half the bytes), its config.json says `"dtype": "float16"` and its card says what it
runs in. What each stored dtype runs in on CPU and GPU is `captioning.dtypes.runtime_dtype`, below the zoo, which
loading follows.
"""

from __future__ import annotations

import os
from pathlib import Path

from .dtypes import CONVERT_TARGETS, SHORT_NAMES, dtype_name, torch_dtype
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
