"""Other makers' image-to-text models as zoo entries: BLIP, GIT, BLIP-2, InstructBLIP, Florence-2, PaliGemma and
the chat VLMs (LLaVA, Idefics3 / SmolVLM, Qwen2-VL, ...), loaded by transformers' own native classes.

A folder that a model's `save_pretrained` and its processor's `save_pretrained` wrote (safetensors weights, the
processor in either layout: `preprocessor_config.json` + tokenizer files as on the hub, or transformers 5's
`processor_config.json`) is an entry as it is. The family comes from `config.json`'s `model_type`; there is one
adapter per way of asking for a caption, not one per model (`Family.ask`):

    pixels   the image alone (BLIP, GIT, BLIP-2)
    task     a task token as the text (Florence-2: "<CAPTION>")
    prompt   a plain text prompt beside the image (InstructBLIP: an instruction; PaliGemma: "caption en")
    chat     the processor's chat template, one user turn holding the image and an instruction
             (default `DEFAULT_INSTRUCTION`)

What an entry adds beyond the transformers files (its prompt, a display name) sits in the optional sidecar
`captioning.zoo.SIDECAR_FILE`; the folder stays loadable by plain transformers.

Decoding is transformers' own `generate`, with the settings of a caption-zoo preset mapped onto it
(`generate_kwargs`). The checkpoint's `generation_config.json` keeps only its special tokens here: the beams,
repetition penalty or n-gram ban a hub checkpoint ships as defaults would otherwise silently change what a
preset means (they are listed in `TransformersCaptioner.ignored_defaults`). Decoder-only models get their
prompts left-padded so a batch is decoded as each image alone would be, and their prompt is cut off the output.

We never run code that comes with a checkpoint: a config that needs `trust_remote_code` is refused, naming the
native class when transformers has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

DEFAULT_INSTRUCTION = "Describe this image in one sentence."
ASK_PIXELS, ASK_TASK, ASK_PROMPT, ASK_CHAT = "pixels", "task", "prompt", "chat"

# The generation_config keys that are part of how a model works (its special tokens), kept from a checkpoint;
# every other key there is a decoding default that the preset decides instead.
TOKEN_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "forced_bos_token_id",
              "forced_eos_token_id")


@dataclass(frozen=True)
class Family:
    """A kind of model as a user knows it, and how it is asked for a caption."""

    name: str
    ask: str
    default_prompt: str | None = None


# model_type (config.json) -> family. "vision-encoder-decoder" is not here: caption-zoo decodes those itself
# (`captioning.ved.VisionEncoderDecoderCaptioner`).
FAMILIES: dict[str, Family] = {
    "blip": Family("BLIP", ASK_PIXELS),
    "git": Family("GIT", ASK_PIXELS),
    "blip-2": Family("BLIP-2", ASK_PIXELS),
    "instructblip": Family("InstructBLIP", ASK_PROMPT, DEFAULT_INSTRUCTION),
    "florence2": Family("Florence-2", ASK_TASK, "<CAPTION>"),
    "paligemma": Family("PaliGemma", ASK_PROMPT, "caption en"),
    "llava": Family("LLaVA", ASK_CHAT, DEFAULT_INSTRUCTION),
    "llava_next": Family("LLaVA-NeXT", ASK_CHAT, DEFAULT_INSTRUCTION),
    "llava_onevision": Family("LLaVA-OneVision", ASK_CHAT, DEFAULT_INSTRUCTION),
    "idefics2": Family("Idefics2", ASK_CHAT, DEFAULT_INSTRUCTION),
    "idefics3": Family("Idefics3", ASK_CHAT, DEFAULT_INSTRUCTION),
    "smolvlm": Family("SmolVLM", ASK_CHAT, DEFAULT_INSTRUCTION),
    "qwen2_vl": Family("Qwen2-VL", ASK_CHAT, DEFAULT_INSTRUCTION),
    "qwen2_5_vl": Family("Qwen2.5-VL", ASK_CHAT, DEFAULT_INSTRUCTION),
    "gemma3": Family("Gemma 3", ASK_CHAT, DEFAULT_INSTRUCTION),
    "mistral3": Family("Mistral 3", ASK_CHAT, DEFAULT_INSTRUCTION),
}
# Processors that need each image in its own list, one list per prompt.
NESTED_IMAGES = {"idefics2", "idefics3", "smolvlm"}


class ForeignEntryError(ValueError):
    """A transformers folder that cannot be an entry; the message says why and what to do."""


def supported_families() -> str:
    """One line naming what the zoo takes, for refusals."""
    names = ", ".join(dict.fromkeys(f.name for f in FAMILIES.values()))
    return f"caption-zoo prefix captioners, VisionEncoderDecoder, {names}"


def family_of(config: dict[str, Any]) -> Family:
    """The family of a transformers config.json, or ForeignEntryError saying why it cannot be an entry."""
    model_type = config.get("model_type")
    if config.get("auto_map"):
        native = _native_class(model_type)
        hint = (f" transformers has a native {native}: use a checkpoint saved for it (its config has no "
                "auto_map), or convert this one with transformers' conversion script" if native else "")
        raise ForeignEntryError(f"it needs trust_remote_code (its config maps to code shipped with the checkpoint), "
                                f"and Caption Zoo never runs downloaded code.{hint}")
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    native = _native_class(model_type)
    if native:
        raise ForeignEntryError(f"{native} ({model_type!r}) is an image-text model whose way of asking for a caption "
                                f"is not known here; supported: {supported_families()}")
    raise ForeignEntryError(f"a {model_type!r} model cannot caption images; supported: {supported_families()}")


def _native_class(model_type: str | None) -> str | None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES.get(model_type or "")


def generate_kwargs(settings) -> dict[str, Any]:
    """A `captioning.generation.GenerationSettings` as `generate` keyword arguments, every decoding choice set
    explicitly (a value left unset would be filled from the checkpoint's generation_config)."""
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens, "min_new_tokens": settings.min_new_tokens,
        "no_repeat_ngram_size": settings.no_repeat_ngram_size, "num_return_sequences": settings.num_captions,
        "repetition_penalty": 1.0, "length_penalty": settings.length_penalty, "num_beams": 1, "do_sample": False,
    }
    if settings.strategy == "beam":
        kwargs.update(num_beams=settings.num_beams, early_stopping=settings.early_stopping)
    elif settings.strategy == "sample":
        kwargs.update(do_sample=True, temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p)
    return kwargs


class ForeignInputs:
    """Turns a batch of RGB images into a model's inputs: its processor, with the prompt its family asks with.
    Apart from the model, so that it can be sent to other processes (the Ray engine's preprocessing tasks)."""

    def __init__(self, processor, text: str | None, nested: bool):
        self.processor, self.text, self.nested = processor, text, nested

    def __call__(self, images: list) -> Any:
        """A BatchFeature: pixel values, and the prompt's token ids and mask (left-padded) when there is one."""
        if self.text is None:
            return self.processor(images=images, return_tensors="pt")
        if self.nested:
            images = [[image] for image in images]
        return self.processor(images=images, text=[self.text] * len(images), padding=True, return_tensors="pt")


class TransformersCaptioner(nn.Module):
    """A transformers image-to-text model and its processor, asked for captions the way its family is."""

    quantize_options: tuple[str, ...] = ()  # the int8 fast path is caption-zoo's own decoders' only

    def __init__(self, model, processor, model_type: str, prompt: str | None = None):
        super().__init__()
        from transformers import GenerationConfig

        self.model = model.eval()
        self.processor = processor
        self.model_type = model_type
        self.family = FAMILIES[model_type]
        self.prompt = prompt if prompt is not None else self.family.default_prompt
        if self.family.ask != ASK_PIXELS and not self.prompt:
            raise ForeignEntryError(f"a {self.family.name} model needs a prompt; set one in the entry's sidecar")
        self.decoder_only = not getattr(model.config, "is_encoder_decoder", False)
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None and self.decoder_only and self.family.ask != ASK_PIXELS:
            tokenizer.padding_side = "left"  # prompts end where generation starts
        own = model.generation_config
        self.ignored_defaults = {k: v for k, v in own.to_diff_dict().items()
                                 if k not in TOKEN_KEYS and k not in ("transformers_version", "_from_model_config",
                                                                      "use_cache", "output_attentions",
                                                                      "output_hidden_states")}
        model.generation_config = GenerationConfig(**{k: getattr(own, k) for k in TOKEN_KEYS
                                                      if getattr(own, k, None) is not None})
        self.inputs = ForeignInputs(processor, self.text(), model_type in NESTED_IMAGES)

    @property
    def eos_token_id(self):
        return self.model.generation_config.eos_token_id

    def text(self) -> str | None:
        """The text given beside each image (None for pixels-only families)."""
        if self.family.ask == ASK_CHAT:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        return None if self.family.ask == ASK_PIXELS else self.prompt

    def prepare(self, images: list) -> Any:
        """The processor's inputs for a batch of RGB images (a BatchFeature: pixel values, prompt tokens)."""
        return self.inputs(images)

    @staticmethod
    def rows(inputs) -> int:
        """How many images a prepared batch holds."""
        if "input_ids" in inputs:
            return int(inputs["input_ids"].shape[0])
        return int(inputs["pixel_values"].shape[0])

    @torch.inference_mode()
    def generate(self, inputs, settings) -> tuple[list[list[list[int]]], list[list[float]]]:
        """Token ids per image (num_captions lists, the prompt cut off) and one score per caption: the log-prob
        sum for greedy and sampling, transformers' length-normalised beam score for beam search."""
        kwargs = generate_kwargs(settings)
        with torch.random.fork_rng(devices=[]):
            if settings.strategy == "sample" and settings.seed is not None:
                torch.manual_seed(settings.seed)
            out = self.model.generate(**inputs, **kwargs, return_dict_in_generate=True, output_scores=True)
        sequences = out.sequences
        prompt = inputs["input_ids"].shape[1] if self.decoder_only and "input_ids" in inputs else 0
        if prompt and sequences.shape[1] >= prompt and torch.equal(
                sequences[:, :prompt], inputs["input_ids"].repeat_interleave(settings.num_captions, dim=0)):
            sequences = sequences[:, prompt:]
        if settings.strategy == "beam":
            scores = out.sequences_scores.float().tolist()
        else:
            steps = self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
            new = out.sequences[:, -steps.shape[1]:]
            live = _before_end(new, self.eos_token_id)
            scores = torch.where(live, steps.float(), 0.0).sum(dim=1).tolist()
        n = settings.num_captions
        tokens = [[row.tolist() for row in sequences[i * n:(i + 1) * n]] for i in range(sequences.shape[0] // n)]
        return tokens, [scores[i * n:(i + 1) * n] for i in range(len(tokens))]


def _before_end(tokens: torch.Tensor, eos) -> torch.Tensor:
    """True for each generated token up to and including the first end token of its row."""
    ends = torch.as_tensor(eos if isinstance(eos, list) else [eos], device=tokens.device)
    is_end = torch.isin(tokens, ends)
    after = is_end.long().cumsum(dim=1) - is_end.long()  # end tokens strictly before this position
    return after == 0


def load_captioner(path, config: dict[str, Any], *, prompt: str | None, device, dtype: torch.dtype | None = None
                   ) -> TransformersCaptioner:
    """Load a transformers folder as a captioner (ForeignEntryError with the reason when it cannot be)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    family_of(config)
    try:
        processor = AutoProcessor.from_pretrained(path, trust_remote_code=False)
    except ImportError as e:
        raise ForeignEntryError(f"its processor needs a library that is not installed ({e}); Caption Zoo's torch "
                                "pin has no torchvision, so SmolVLM / Qwen2-VL processors cannot load here") from None
    except Exception as e:  # transformers raises many types for a bad folder; all mean the same to a user
        first = (str(e).strip().splitlines() or [""])[0]
        raise ForeignEntryError(f"cannot load its processor ({type(e).__name__}: {first}); the folder needs what "
                                "the processor's save_pretrained writes (processor_config.json or "
                                "preprocessor_config.json, and the tokenizer files)") from None
    if isinstance(processor, type(None)) or not hasattr(processor, "image_processor"):
        raise ForeignEntryError("its processor has no image processor (a text-only tokenizer was found); save the "
                                "model's processor (AutoProcessor.save_pretrained) into the folder")
    try:
        model = AutoModelForImageTextToText.from_pretrained(path, use_safetensors=True, trust_remote_code=False,
                                                            dtype=dtype or torch.float32)
    except Exception as e:
        raise ForeignEntryError(f"cannot load the model ({type(e).__name__}: {str(e).splitlines()[0]})") from None
    return TransformersCaptioner(model.to(device), processor, config["model_type"], prompt)
