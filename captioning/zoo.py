"""The model zoo: one folder per model, which rebuilds itself offline. The only module that knows the file names.

A prefix-captioner entry holds:
    config.json               architecture (full encoder/decoder configs, K, mapper, freezing, weight dtype) + training record
    model.safetensors         all weights (the tied LM head is stored once, as GPT-2's token embedding), in the
                              config's dtype (float32; float16 / bfloat16 for `captioning.precision.convert_entry`)
    tokenizer.json, tokenizer_config.json, ...   the decoder's tokenizer
    preprocessor_config.json  the image preprocessing (size, crop, mean/std)
    metrics.json              validation/test metrics, when trained
    curves.png                training curves, when trained
    experiment.yaml           the experiment config that trained it (`python -m trainer.train` reads it back)
    README.md                 the model card (written by `captioning.card.model_card`)

`save_entry` writes all of it into a temporary folder beside the destination and moves it in at the end.

A folder saved by transformers' `VisionEncoderDecoderModel.save_pretrained` (e.g. a saved
`nlpconnect/vit-gpt2-image-captioning`) with safetensors weights is also an entry.

So is a folder that another image-to-text model's `save_pretrained` and its processor's `save_pretrained` wrote
(BLIP, GIT, BLIP-2, Florence-2, chat VLMs: `captioning.foreign`), its weights in `model.safetensors` or in shards
named by `model.safetensors.index.json`. What such an entry adds lives in the optional sidecar:
    caption_zoo.json          {"prompt": "...", "display_name": "..."} (both optional)

No pickles: `.pkl`, `.pt`, `.pth`, `.bin` and `.ckpt` files are never unpickled here (unpickling runs
arbitrary code); the error says how to convert them to safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .card import model_card
from .config import CaptionerConfig, ConfigValueError
from .dtypes import runtime_dtype
from .foreign import ForeignEntryError, TransformersCaptioner, family_of, load_captioner
from .model import PrefixCaptioner, module_fingerprint
from .tokenization import prepare_tokenizer
from .ved import VisionEncoderDecoderCaptioner

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
CARD_FILE = "README.md"
CURVES_FILE = "curves.png"
EXPERIMENT_FILE = "experiment.yaml"
PREPROCESSOR_FILE = "preprocessor_config.json"
PICKLE_SUFFIXES = (".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt")
KIND_PREFIX = "prefix-captioner"
KIND_VED = "vision-encoder-decoder"
KIND_TRANSFORMERS = "transformers"
SHARDS_INDEX = "model.safetensors.index.json"
SIDECAR_FILE = "caption_zoo.json"
PROCESSOR_FILES = ("processor_config.json", PREPROCESSOR_FILE)  # transformers 5's layout, the hub's
SIDECAR_KEYS = ("prompt", "display_name")

CONVERT_HINT = (
    "Convert it once, in an environment you trust: load it with torch.load(path, weights_only=True) or "
    "transformers' from_pretrained, then save it with safetensors (`safetensors.torch.save_file`) or "
    "`save_pretrained(folder, safe_serialization=True)`."
)


class ZooError(ValueError):
    """A zoo entry cannot be loaded or saved; the message names the entry, the problem and what to do."""


def preprocess_key(image_processor) -> str:
    """Images preprocessed by processors with equal settings share one tensor."""
    return json.dumps(image_processor.to_dict(), sort_keys=True, default=str)


def encoder_key(encoder_fingerprint: str, image_processor, uses_patches: bool) -> str:
    """What makes two encoders' features of the same image equal: encoder weights (`module_fingerprint`),
    preprocessing, and which features are taken (patch tokens for the grid mapper, else the pooled embedding).

    The one key for sharing an encoder pass between models (`caption_images`) and for the trainer's
    on-disk embedding cache (`trainer/cache.py`).
    """
    features = "patches" if uses_patches else "pooled"
    text = "|".join((encoder_fingerprint, features, preprocess_key(image_processor)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# ----------------------------------------------------------------------------------------------------------
# Loaded entries


@dataclass
class ZooModel:
    """A loaded zoo entry: the model, its tokenizer and image preprocessing, and what the folder records."""

    name: str
    path: Path
    kind: str
    model: nn.Module
    tokenizer: Any
    image_processor: Any
    config: dict[str, Any]
    metrics: dict[str, Any] | None
    weights_hash: str
    encoder_fingerprint: str
    card: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_model(cls, name: str, model: PrefixCaptioner, tokenizer, image_processor, *,
                   encoder_fingerprint: str | None = None) -> ZooModel:
        """An in-memory model (e.g. the one being trained) as a ZooModel, so `caption_images` can run it.

        encoder_fingerprint defaults to `module_fingerprint(model.encoder)`.
        """
        if encoder_fingerprint is None:
            encoder_fingerprint = module_fingerprint(model.encoder)
        return cls(name=name, path=Path("."), kind=KIND_PREFIX, model=model, tokenizer=tokenizer,
                   image_processor=image_processor, config=model.config.to_dict(), metrics=None, weights_hash="",
                   encoder_fingerprint=encoder_fingerprint)

    @property
    def foreign(self) -> bool:
        """Another maker's model (`captioning.foreign`): transformers' generate decodes it, from its processor's
        inputs, so it shares no preprocessing or encoder pass with other entries."""
        return self.kind == KIND_TRANSFORMERS

    @property
    def preprocess_key(self) -> str:
        """Images preprocessed the same way share one tensor."""
        if self.foreign:
            return f"{KIND_TRANSFORMERS}:{self.path}:{self.weights_hash}"
        return preprocess_key(self.image_processor)

    @property
    def encoder_key(self) -> str:
        """Models with equal keys share one encoder pass per batch (see `encoder_key`)."""
        if self.foreign:
            return self.preprocess_key
        return encoder_key(self.encoder_fingerprint, self.image_processor, getattr(self.model, "uses_patches", False))

    def preprocess(self, images: list) -> Any:
        """A batch's model inputs: pixel values (a foreign model's: its processor's whole output)."""
        if self.foreign:
            return self.model.prepare(images)
        return self.image_processor(images=images, return_tensors="pt")["pixel_values"]

    def encode(self, pixel_values: Any) -> Any:
        """Encoder features of preprocessed images (a foreign model's inputs go to its generate as they are)."""
        if self.foreign:
            return pixel_values.to(self.device)
        with torch.inference_mode():
            return self.model.encode_images(pixel_values.to(self.device, self.dtype))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next((self.model.model if self.foreign else self.model.encoder).parameters()).dtype

    @property
    def family(self) -> str:
        """The kind of model as a user knows it: "prefix captioner", "VisionEncoderDecoder", "BLIP", ..."""
        return family_name(self.config, self.kind)

    @property
    def display_name(self) -> str:
        return self.extra.get("display_name") or self.name

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=True).strip()

    def summary(self) -> dict[str, Any]:
        """What a person choosing models wants to see: base models, K, training data, metrics."""
        training = self.config.get("training") or {}
        return {"name": self.name, "kind": self.kind, "family": self.family, **base_models(self.config, self.kind),
                "training_data": training.get("data"),
                "metrics": self.metrics or {}, "weights_hash": self.weights_hash[:12]}


# ----------------------------------------------------------------------------------------------------------
# Saving


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _untied_state_dict(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The state dict with each shared tensor stored once; returns the dropped (tied) names too."""
    state, seen, tied = {}, {}, []
    for name, tensor in model.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            tied.append(name)
            continue
        seen[key] = name
        state[name] = tensor.detach().cpu().contiguous()
    return state, tied


def save_entry(model: PrefixCaptioner, tokenizer, image_processor, path: str | os.PathLike, *,
               metrics: dict[str, Any] | None = None, training: dict[str, Any] | None = None,
               experiment: str | dict[str, Any] | None = None, curves: str | os.PathLike | bytes | None = None,
               overwrite: bool = False) -> Path:
    """Write a zoo entry: weights, config (with the training record), tokenizer, preprocessing, metrics, the
    experiment config (YAML text, or a dict written as YAML), the training curves (a PNG's path or bytes) and
    the model card (`captioning.card.model_card`; its Reproduce command names the saved experiment file).

    Everything is written into a folder beside the destination and moved in at the end, so an interrupted
    save never leaves a half entry, and an existing entry is replaced only when overwrite=True.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ZooError(f"Zoo entry {path} already exists; pass overwrite=True (or choose another name) to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state, tied = _untied_state_dict(model)
        save_file(state, tmp / WEIGHTS_FILE, metadata={"format": "caption-zoo", "tied": json.dumps(tied)})
        config = model.config.to_dict()
        config["image_processor"] = image_processor.to_dict()
        if training:
            config["training"] = training
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, default=str) + "\n")
        tokenizer.save_pretrained(tmp)
        image_processor.save_pretrained(tmp)
        if metrics is not None:
            (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=2, default=str) + "\n")
        if experiment is not None:
            if not isinstance(experiment, str):
                import yaml

                experiment = yaml.safe_dump(experiment, sort_keys=False)
            (tmp / EXPERIMENT_FILE).write_text(experiment)
        if curves is not None:
            if isinstance(curves, bytes):
                (tmp / CURVES_FILE).write_bytes(curves)
            else:
                shutil.copyfile(curves, tmp / CURVES_FILE)
        (tmp / CARD_FILE).write_text(entry_card(path, model.config, metrics, training,
                                                parameters=model.parameter_counts(),
                                                has_experiment=experiment is not None, has_curves=curves is not None))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def reproduce_command(path: str | os.PathLike) -> str:
    """The command that retrains the entry at `path` from its experiment file, as typed in the current
    folder (the repository root): a path relative to it when the entry lies below it, else absolute."""
    experiment = Path(path).absolute() / EXPERIMENT_FILE
    try:
        shown = experiment.relative_to(Path.cwd())
    except ValueError:
        shown = experiment
    return f"python -m trainer.train {shown.as_posix()}"


def entry_card(path: str | os.PathLike, config: CaptionerConfig, metrics: dict[str, Any] | None,
               training: dict[str, Any] | None, *, parameters: dict[str, int] | None = None,
               has_experiment: bool = False, has_curves: bool = False) -> str:
    """The model card of the entry at `path`, linking the files the entry holds."""
    return model_card(Path(path).name, config, metrics, training, parameters=parameters,
                      reproduce=reproduce_command(path) if has_experiment else None,
                      curves_file=CURVES_FILE if has_curves else None)


def rewrite_card(path: str | os.PathLike) -> Path:
    """Write an existing entry's card again from its own config.json, metrics.json and experiment file
    (e.g. after the card writer changed); nothing else in the folder changes."""
    path = Path(path)
    _check_folder(path)
    config_dict = _read_json(path / CONFIG_FILE)
    if entry_kind(config_dict) != KIND_PREFIX:
        raise ZooError(f"Zoo entry {path} is not a caption-zoo prefix captioner; its card is its own")
    try:
        config = CaptionerConfig.from_dict(config_dict)
    except ConfigValueError as e:
        raise ZooError(f"Zoo entry {path}: {e}") from None
    metrics = _read_metrics(path)
    training = config_dict.get("training")
    parameters = None if training and training.get("parameters") else PrefixCaptioner(config).parameter_counts()
    card = entry_card(path, config, metrics, training, parameters=parameters,
                      has_experiment=(path / EXPERIMENT_FILE).is_file(), has_curves=(path / CURVES_FILE).is_file())
    tmp = path / f".{CARD_FILE}.tmp"
    tmp.write_text(card)
    os.replace(tmp, path / CARD_FILE)
    return path / CARD_FILE


# ----------------------------------------------------------------------------------------------------------
# Loading


def _check_folder(path: Path) -> None:
    if not path.exists():
        raise ZooError(f"Zoo entry {path} does not exist; list the zoo with `python -m captioning list --zoo DIR`")
    if not path.is_dir():
        raise ZooError(f"Zoo entry {path} is not a folder; a zoo entry is a folder with {CONFIG_FILE} and {WEIGHTS_FILE}")
    if not (path / CONFIG_FILE).is_file():
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        hint = f" It holds pickled files {pickles}, which the zoo never unpickles. {CONVERT_HINT}" if pickles else ""
        raise ZooError(f"Zoo entry {path} has no {CONFIG_FILE}.{hint}")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ZooError(f"{path} is not valid JSON ({e}); restore it from the run that produced the entry") from None


def _weights_path(path: Path) -> Path:
    """The weights file (the shards' index for a sharded transformers folder); ZooError when there is none."""
    weights = path / WEIGHTS_FILE
    if weights.is_file():
        return weights
    if (path / SHARDS_INDEX).is_file():
        return path / SHARDS_INDEX
    pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise ZooError(
            f"Zoo entry {path} has no {WEIGHTS_FILE}, only pickled weights {pickles}. Pickled files can run code "
            f"when loaded, so the zoo never unpickles them. {CONVERT_HINT}")
    raise ZooError(f"Zoo entry {path} is missing {WEIGHTS_FILE}; re-save the model with caption-zoo's save_entry")


def _load_state(weights: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(weights)
    except (SafetensorError, OSError, ValueError) as e:
        raise ZooError(f"{weights} is not a readable safetensors file ({e}); the file may be truncated — re-save it") from None


def _load_tokenizer_and_processor(path: Path):
    from transformers import AutoImageProcessor, AutoTokenizer

    try:
        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path))
    except Exception as e:  # transformers raises many types here; all mean the same to a user
        raise ZooError(f"Zoo entry {path}: cannot load its tokenizer ({type(e).__name__}: {e}); "
                       "the folder needs the tokenizer files written by tokenizer.save_pretrained") from None
    if not (path / PREPROCESSOR_FILE).is_file():
        raise ZooError(f"Zoo entry {path} is missing {PREPROCESSOR_FILE} (its image preprocessing)")
    try:
        processor = AutoImageProcessor.from_pretrained(path)
    except Exception as e:
        raise ZooError(f"Zoo entry {path}: cannot load {PREPROCESSOR_FILE} ({type(e).__name__}: {e})") from None
    return tokenizer, processor


def _load_prefix_model(path: Path, config_dict: dict[str, Any]) -> PrefixCaptioner:
    try:
        config = CaptionerConfig.from_dict(config_dict)
        model = PrefixCaptioner(config)
    except ConfigValueError as e:
        raise ZooError(f"Zoo entry {path}: {e}") from None
    state = _load_state(_weights_path(path))
    expected = model.state_dict()
    mismatched = [f"{k}: file {tuple(v.shape)} vs config {tuple(expected[k].shape)}"
                  for k, v in state.items() if k in expected and tuple(v.shape) != tuple(expected[k].shape)]
    if mismatched:
        raise ZooError(f"Zoo entry {path}: weights do not match its {CONFIG_FILE} ({len(mismatched)} shape "
                       f"mismatches, e.g. {mismatched[:3]}); the config and weights come from different models")
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = set(_untied_state_dict(model)[1])
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise ZooError(f"Zoo entry {path}: weights do not match its {CONFIG_FILE}: missing {missing[:5]} "
                       f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})")
    return model.eval()


def weight_files(path: Path) -> list[Path]:
    """Every safetensors file holding the entry's weights (one, or the shards its index names)."""
    weights = _weights_path(path)
    if weights.name != SHARDS_INDEX:
        return [weights]
    shards = sorted(set((_read_json(weights).get("weight_map") or {}).values()))
    missing = [name for name in shards if not (path / name).is_file()]
    if missing or not shards:
        raise ZooError(f"Zoo entry {path} is missing weight shards {missing[:3]} named by {SHARDS_INDEX}; copy the "
                       "whole folder again")
    return [path / name for name in shards]


def weights_sha256(path: Path) -> str:
    """The entry's weights hash: its weights file's SHA-256 (for shards: of their hashes in order)."""
    files = weight_files(path)
    if len(files) == 1:
        return file_sha256(files[0])
    return hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()


def read_sidecar(path: Path) -> dict[str, Any]:
    """An entry's optional `SIDECAR_FILE` ({} when absent); ZooError for anything but string values of its keys."""
    sidecar = path / SIDECAR_FILE
    if not sidecar.is_file():
        return {}
    data = _read_json(sidecar)
    problems = [k for k in data if k not in SIDECAR_KEYS] if isinstance(data, dict) else ["(not an object)"]
    problems += [k for k in SIDECAR_KEYS if isinstance(data, dict) and k in data and not isinstance(data[k], str)]
    if problems:
        raise ZooError(f"{sidecar}: unexpected or non-text keys {problems}; it holds an object with the optional "
                       f"text keys {list(SIDECAR_KEYS)}")
    return data


def _check_processor_files(path: Path) -> None:
    if not any((path / name).is_file() for name in PROCESSOR_FILES):
        raise ZooError(f"Zoo entry {path} is missing its processor ({' or '.join(PROCESSOR_FILES)}); save the "
                       "model's processor into the folder with AutoProcessor...save_pretrained")


def _load_foreign_model(path: Path, config: dict[str, Any], sidecar: dict[str, Any], device) -> TransformersCaptioner:
    weight_files(path)  # refuses pickle-only folders and missing shards with the explanation
    _check_processor_files(path)
    saved = config.get("dtype") or config.get("torch_dtype")
    dtype = runtime_dtype(saved, device) if saved in ("float16", "bfloat16") else torch.float32
    try:
        return load_captioner(path, config, prompt=sidecar.get("prompt"), device=device, dtype=dtype)
    except ForeignEntryError as e:
        raise ZooError(f"Zoo entry {path}: {e}") from None


def _load_ved_model(path: Path) -> VisionEncoderDecoderCaptioner:
    from transformers import VisionEncoderDecoderModel

    _weights_path(path)  # refuses pickle-only folders with the explanation
    try:
        model = VisionEncoderDecoderModel.from_pretrained(path, use_safetensors=True)
    except Exception as e:
        raise ZooError(f"Zoo entry {path}: cannot load the VisionEncoderDecoderModel ({type(e).__name__}: {e})") from None
    return VisionEncoderDecoderCaptioner(model)


def entry_kind(config: dict[str, Any], path: str | os.PathLike | None = None) -> str:
    """KIND_PREFIX, KIND_VED or KIND_TRANSFORMERS; ZooError saying why for a model that cannot caption images
    (a text-only GPT-2, a CLIP) or needs code shipped with the checkpoint."""
    if config.get("format") == "caption-zoo/prefix-captioner" or "encoder_type" in config:
        return KIND_PREFIX
    if config.get("model_type") == "vision-encoder-decoder" and not config.get("auto_map"):
        return KIND_VED
    try:
        family_of(config)
    except ForeignEntryError as e:
        where = f"Zoo entry {path}" if path is not None else "This folder"
        raise ZooError(f"{where} cannot be a zoo entry: {e}") from None
    return KIND_TRANSFORMERS


def family_name(config: dict[str, Any], kind: str) -> str:
    """What a user calls the entry's kind of model: "prefix captioner", "VisionEncoderDecoder", "BLIP", ..."""
    if kind == KIND_PREFIX:
        return "prefix captioner"
    if kind == KIND_VED:
        return "VisionEncoderDecoder"
    return family_of(config).name


def load_entry(path: str | os.PathLike, *, device: str | torch.device = "cpu",
               shared_encoders: dict[str, nn.Module] | None = None) -> ZooModel:
    """Load one zoo entry, strictly: every problem raises ZooError with what is wrong and what to do.

    shared_encoders: fingerprint -> encoder module; an entry whose encoder weights are identical to one
    already loaded reuses that module instead of keeping a second copy in memory.
    """
    path = Path(path)
    _check_folder(path)
    config = _read_json(path / CONFIG_FILE)
    kind = entry_kind(config, path)
    sidecar = read_sidecar(path)
    if kind == KIND_TRANSFORMERS:
        return _foreign_entry(path, config, sidecar, device)
    model = _load_prefix_model(path, config) if kind == KIND_PREFIX else _load_ved_model(path)
    if kind == KIND_PREFIX and config.get("dtype", "float32") != "float32":
        model = model.to(runtime_dtype(config["dtype"], device))  # half on GPU; see captioning.dtypes for CPU
    tokenizer, processor = _load_tokenizer_and_processor(path)
    fingerprint = module_fingerprint(model.encoder)
    if shared_encoders is not None:
        if fingerprint in shared_encoders:
            shared = shared_encoders[fingerprint]
            model.encoder = shared
            if kind == KIND_VED:
                model.model.encoder = shared
        else:
            shared_encoders[fingerprint] = model.encoder
    return ZooModel(name=path.name, path=path, kind=kind, model=model.to(device).eval(), tokenizer=tokenizer,
                    image_processor=processor, config=config, metrics=_read_metrics(path),
                    weights_hash=weights_sha256(path), encoder_fingerprint=fingerprint, card=_read_card(path),
                    extra=sidecar)


def _foreign_entry(path: Path, config: dict[str, Any], sidecar: dict[str, Any], device) -> ZooModel:
    model = _load_foreign_model(path, config, sidecar, device)
    weights_hash = weights_sha256(path)
    extra = {**sidecar, "prompt": model.prompt, "ignored_generation_defaults": model.ignored_defaults}
    return ZooModel(name=path.name, path=path, kind=KIND_TRANSFORMERS, model=model,
                    tokenizer=model.processor.tokenizer, image_processor=model.processor.image_processor,
                    config=config, metrics=_read_metrics(path), weights_hash=weights_hash,
                    encoder_fingerprint=f"{KIND_TRANSFORMERS}:{weights_hash}", card=_read_card(path), extra=extra)


def _read_metrics(path: Path) -> dict[str, Any] | None:
    return _read_json(path / METRICS_FILE) if (path / METRICS_FILE).is_file() else None


def _read_card(path: Path) -> str:
    return (path / CARD_FILE).read_text() if (path / CARD_FILE).is_file() else ""


def base_models(config: dict[str, Any], kind: str) -> dict[str, Any]:
    """encoder, decoder, prefix_length and mapper of an entry, read from its config.json."""
    if kind == KIND_PREFIX:
        return {"encoder": config.get("encoder_name") or config["encoder_config"].get("model_type"),
                "decoder": config.get("decoder_name") or config["decoder_config"].get("model_type"),
                "prefix_length": config.get("prefix_length"), "mapper": (config.get("mapper") or {}).get("type")}
    if kind == KIND_TRANSFORMERS:
        vision = config.get("vision_config") or {}
        text = config.get("text_config") or {}
        return {"encoder": vision.get("model_type") or config.get("model_type"),
                "decoder": text.get("model_type") or config.get("model_type"), "prefix_length": None,
                "mapper": family_of(config).name}
    return {"encoder": config.get("encoder", {}).get("model_type"), "decoder": config.get("decoder", {}).get("model_type"),
            "prefix_length": None, "mapper": "cross-attention"}


def is_entry(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".") and (path / CONFIG_FILE).is_file()


def select_entries(zoo_dir: str | os.PathLike, wanted: str | Sequence[str] | None = None) -> list[Path]:
    """The loadable entries of a zoo named in `wanted` ("a,b" or a list; None or empty: all of them), in the
    order given. ZooError, saying what is available, for an unknown or broken name or a zoo with none."""
    zoo_dir = Path(zoo_dir)
    listing = list_zoo(zoo_dir)
    available = {Path(r["path"]).name: Path(r["path"]) for r in listing if "error" not in r}
    if not available:
        broken = [r["name"] for r in listing]
        raise ZooError(f"no loadable models in zoo {zoo_dir}" + (f" (broken entries: {broken})" if broken else ""))
    names = wanted.split(",") if isinstance(wanted, str) else list(wanted or [])
    names = [n.strip() for n in names if n.strip()]
    if not names:
        return list(available.values())
    chosen = []
    for name in names:
        if name not in available:
            hint = " (it exists but cannot be loaded; run `python -m captioning list`)" if is_entry(zoo_dir / name) else ""
            raise ZooError(f"Model {name!r} not found in {zoo_dir}{hint}; available models = {sorted(available)}")
        chosen.append(available[name])
    return chosen


def list_zoo(zoo_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Per entry: name, kind, base models, K, parameters, size on disk, metrics (without loading weights).

    A broken entry is listed with an `error` instead of stopping the listing.
    """
    zoo_dir = Path(zoo_dir)
    if not zoo_dir.is_dir():
        raise ZooError(f"Zoo folder {zoo_dir} does not exist; create it or pass --zoo with the right folder")
    rows = []
    for path in sorted(p for p in zoo_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        row: dict[str, Any] = {"name": path.name, "path": str(path), "size_mb": round(size / 1e6, 2)}
        try:
            _check_folder(path)
            config = _read_json(path / CONFIG_FILE)
            row["kind"] = kind = entry_kind(config, path)
            row["family"] = family_name(config, kind)
            row["parameters"] = count_parameters(path)
            row.update(base_models(config, kind))
            if kind == KIND_TRANSFORMERS:
                _check_processor_files(path)
                sidecar = read_sidecar(path)
                row["prompt"] = sidecar.get("prompt") or family_of(config).default_prompt
                if sidecar.get("display_name"):
                    row["display_name"] = sidecar["display_name"]
            row["training_data"] = (config.get("training") or {}).get("data")
            row["metrics"] = _read_metrics(path)
        except (ZooError, SafetensorError, OSError) as e:
            row["error"] = str(e)
        rows.append(row)
    return rows


def count_parameters(path: Path) -> int:
    """The number of weights stored in an entry's safetensors files (read from their headers, nothing loaded)."""
    from safetensors import safe_open

    total = 0
    for weights in weight_files(path):
        with safe_open(weights, framework="pt") as f:
            total += sum(_numel(f.get_slice(k).get_shape()) for k in f.keys())
    return total


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


class ModelCache:
    """Loaded entries, at most `max_models` in memory (least recently used goes first); thread-safe.

    Entries with identical encoder weights share one encoder module.
    """

    def __init__(self, max_models: int = 4, device: str | torch.device = "cpu"):
        if max_models < 1:
            raise ValueError(f"max_models must be >= 1, got {max_models}")
        self.max_models = max_models
        self.device = device
        self._models: OrderedDict[tuple, ZooModel] = OrderedDict()
        self._encoders: dict[str, nn.Module] = {}
        self._lock = threading.Lock()

    def get(self, path: str | os.PathLike) -> ZooModel:
        path = Path(path).resolve()
        weights = path / WEIGHTS_FILE if (path / WEIGHTS_FILE).exists() else path / SHARDS_INDEX
        stamp = weights.stat().st_mtime_ns if weights.exists() else 0
        key = (str(path), stamp)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load_entry(path, device=self.device, shared_encoders=self._encoders)
            self._models[key] = model
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            live = {m.encoder_fingerprint for m in self._models.values()}
            self._encoders = {k: v for k, v in self._encoders.items() if k in live}
            return model

    def __len__(self) -> int:
        return len(self._models)
