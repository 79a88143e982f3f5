"""Protects half-precision entries (`python -m captioning convert`): the copy stores its weights in the asked
dtype (about half the bytes), equal to the parent's weights cast; it loads, captions, and runs in the dtype
`captioning.dtypes.runtime_dtype` promises; wrong requests are refused with one clear line."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from captioning import caption_images, dtypes, get_settings, load_entry
from captioning.commands.cli import main
from captioning.dtypes import runtime_dtype
from captioning.precision import convert_entry
from captioning.zoo import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, ZooError, list_zoo
from helpers import build_tiny_zoo


@pytest.fixture()
def zoo(tmp_path):
    return build_tiny_zoo(tmp_path / "zoo", ["alpha"])


def images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(3)]


@pytest.mark.parametrize("short,dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_convert_round_trip(zoo, short, dtype):
    parent = load_entry(zoo / "alpha")
    out = convert_entry(zoo / "alpha", short)
    assert out == zoo / f"alpha-{short}"
    stored = load_file(out / WEIGHTS_FILE)
    expected = load_file(zoo / "alpha" / WEIGHTS_FILE)
    assert stored.keys() == expected.keys()
    for name, tensor in stored.items():
        assert tensor.dtype == dtype, name
        assert torch.equal(tensor, expected[name].to(dtype)), name
    config = json.loads((out / CONFIG_FILE).read_text())
    assert config["dtype"] == str(dtype).removeprefix("torch.")
    assert config["training"]["converted_from"]["entry"] == "alpha"
    card = (out / CARD_FILE).read_text()
    assert "## Precision" in card and "On CPU" in card and f"--dtype {short}" in card

    loaded = load_entry(out)
    run_in = runtime_dtype(config["dtype"], "cpu")
    assert {p.dtype for p in loaded.model.parameters()} == {run_in}
    for name, tensor in loaded.model.state_dict().items():  # the parent's weights, cast, then run on CPU
        assert torch.equal(tensor, parent.model.state_dict()[name].to(dtype).to(run_in)), name
    results = caption_images([loaded], images(), settings=get_settings("consistent", max_new_tokens=6))
    assert len(results) == 3 and all(isinstance(r.caption, str) for r in results)
    # the metrics it carries are the parent's, and say so
    assert loaded.metrics["bleu4"] == parent.metrics["bleu4"] and "before conversion" in loaded.metrics["measured_on"]


def test_half_entry_is_about_half_the_size(zoo):
    out = convert_entry(zoo / "alpha", "fp16")
    ratio = (out / WEIGHTS_FILE).stat().st_size / (zoo / "alpha" / WEIGHTS_FILE).stat().st_size
    assert 0.45 < ratio < 0.56
    assert [r["name"] for r in list_zoo(zoo) if "error" not in r] == ["alpha", "alpha-fp16"]


def test_fp16_on_cpu_runs_in_float32_and_on_gpu_in_float16():
    assert runtime_dtype("float16", "cpu") == torch.float32
    assert runtime_dtype("float16", "cuda:0") == torch.float16
    assert runtime_dtype("bfloat16", "cuda") == torch.bfloat16
    assert runtime_dtype("float32", "cpu") == torch.float32
    assert dtypes.cpu_computes("float32")


def test_bf16_on_cpu_falls_back_to_float32_when_the_cpu_gets_it_wrong(monkeypatch):
    monkeypatch.setattr(dtypes, "cpu_computes", lambda name: False)
    assert runtime_dtype("bfloat16", "cpu") == torch.float32
    monkeypatch.setattr(dtypes, "cpu_computes", lambda name: True)
    assert runtime_dtype("bfloat16", "cpu") == torch.bfloat16


def test_convert_refuses_same_dtype_unknown_dtype_and_existing_out(zoo, capsys):
    convert_entry(zoo / "alpha", "fp16")
    with pytest.raises(ValueError, match="already stored in float16"):
        convert_entry(zoo / "alpha-fp16", "fp16")
    with pytest.raises(ValueError, match="unknown dtype 'int8'"):
        convert_entry(zoo / "alpha", "int8")
    with pytest.raises(ValueError, match="half-precision"):
        convert_entry(zoo / "alpha", "fp32")
    with pytest.raises(ZooError, match="already exists"):
        convert_entry(zoo / "alpha", "bf16", "alpha-fp16")
    assert not (zoo / "alpha-bf16").exists()
    # the CLI says it in one line and exits 2
    capsys.readouterr()
    assert main(["convert", str(zoo / "alpha"), "--dtype", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "already exists" in err[0]
    assert main(["convert", str(zoo / "missing"), "--dtype", "fp16"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["convert", str(zoo / "alpha"), "--dtype", "bf16", "--out", "alpha-half"]) == 0
    assert "0.5" in capsys.readouterr().err and (zoo / "alpha-half" / WEIGHTS_FILE).is_file()
