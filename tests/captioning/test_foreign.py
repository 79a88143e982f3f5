"""Other makers' image-to-text models as zoo entries (captioning.foreign): each family's tiny random model, saved
as save_pretrained writes it, captions exactly as transformers' own generate does on the inputs its model card
builds, batched or one by one; the presets decide over a checkpoint's generation defaults; folders that cannot
be entries are refused in one line without stopping the others."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from captioning.foreign import DEFAULT_INSTRUCTION
from captioning.generation import check_supported, get_settings
from captioning.pipeline import caption_images
from captioning.zoo import KIND_TRANSFORMERS, ZooError, list_zoo, load_entry, select_entries
from foreign_models import BUILDERS, build_blip, build_llava, reference_inputs
from helpers import tiny_zoo_entry

TOKENS = 12


@pytest.fixture(scope="module")
def images():
    return [Image.fromarray((np.random.RandomState(i).rand(40 + 3 * i, 50, 3) * 255).astype("uint8"))
            for i in range(5)]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("foreign-zoo")
    return {family: build(root / family.lower()) for family, build in BUILDERS.items()}


def plain_transformers(folder, family):
    """The folder loaded by plain transformers, as a user of the model would."""
    from transformers import (
        AutoImageProcessor,
        AutoModelForImageTextToText,
        AutoProcessor,
        AutoTokenizer,
        VisionEncoderDecoderModel,
    )

    if family == "VisionEncoderDecoder":
        return (VisionEncoderDecoderModel.from_pretrained(folder).eval(), AutoImageProcessor.from_pretrained(folder),
                AutoTokenizer.from_pretrained(folder))
    processor = AutoProcessor.from_pretrained(folder)
    return AutoModelForImageTextToText.from_pretrained(folder).eval(), processor, processor.tokenizer


def reference_captions(folder, family, images, prompt, **generate_kwargs):
    model, processor, tokenizer = plain_transformers(folder, family)
    captions = []
    for image in images:
        inputs = reference_inputs(family, processor, image, prompt)
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=TOKENS, **generate_kwargs)
        if not model.config.is_encoder_decoder and "input_ids" in inputs:
            out = out[:, inputs["input_ids"].shape[1]:]  # a decoder-only model returns its prompt first
        captions.append(tokenizer.decode(out[0], skip_special_tokens=True).strip())
    return captions


@pytest.mark.parametrize("family", list(BUILDERS))
def test_greedy_captions_equal_transformers_generate_batched_and_one_by_one(folders, images, family):
    entry = load_entry(folders[family])
    assert entry.family == family
    settings = get_settings("greedy", max_new_tokens=TOKENS)
    batched = [r.caption for r in caption_images([entry], images, settings=settings, batch_size=len(images))]
    one_by_one = [r.caption for r in caption_images([entry], images, settings=settings, batch_size=1)]
    expected = reference_captions(folders[family], family, images, entry.extra.get("prompt"), do_sample=False)
    assert batched == expected
    assert one_by_one == expected
    assert len(set(expected)) > 1, "the tiny model should caption different images differently"


@pytest.mark.parametrize("family", ["BLIP", "GIT", "Florence-2", "LLaVA"])
def test_beam_preset_equals_transformers_beam_search(folders, images, family):
    entry = load_entry(folders[family])
    settings = get_settings("consistent", max_new_tokens=TOKENS, num_captions=2)
    results = caption_images([entry], images[:3], settings=settings, batch_size=3)
    expected = reference_captions(folders[family], family, images[:3], entry.extra.get("prompt"), num_beams=5,
                                  do_sample=False, length_penalty=1.0, early_stopping=False)
    assert [r.captions[0] for r in results] == expected
    assert all(len(r.captions) == 2 and r.scores[0] >= r.scores[1] for r in results)
    assert results[0].settings["num_beams"] == 5


def test_sampling_is_reproducible_for_a_seed(folders, images):
    entry = load_entry(folders["GIT"])
    first = caption_images([entry], images, settings=get_settings("creative_diverse", seed=3))
    again = caption_images([entry], images, settings=get_settings("creative_diverse", seed=3))
    assert [r.captions for r in first] == [r.captions for r in again]


def test_the_preset_decides_over_the_checkpoints_generation_defaults(folders, images, tmp_path):
    folder = shutil.copytree(folders["GIT"], tmp_path / "git-hub-defaults")
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(num_beams=3, repetition_penalty=2.5, no_repeat_ngram_size=2, max_length=5)
    (folder / "generation_config.json").write_text(json.dumps(config))
    entry = load_entry(folder)
    assert entry.extra["ignored_generation_defaults"] == {"num_beams": 3, "repetition_penalty": 2.5,
                                                          "no_repeat_ngram_size": 2, "max_length": 5}
    ours = [r.caption for r in caption_images([entry], images, settings=get_settings("greedy", max_new_tokens=TOKENS))]
    plain_greedy = reference_captions(folders["GIT"], "GIT", images, None, do_sample=False)
    assert ours == plain_greedy
    with_hub_defaults = reference_captions(folder, "GIT", images, None)  # what generate() alone would do
    assert with_hub_defaults != plain_greedy


def test_hub_processor_layout_and_sidecar_prompt(tmp_path, images):
    from transformers import AutoProcessor

    folder = build_llava(tmp_path / "llava")
    (folder / "caption_zoo.json").write_text(json.dumps({"prompt": "a photo of", "display_name": "Tiny LLaVA"}))
    entry = load_entry(folder)
    assert entry.extra["prompt"] == "a photo of" and entry.display_name == "Tiny LLaVA"
    ours = [r.caption for r in caption_images([entry], images[:3], settings=get_settings("greedy", max_new_tokens=TOKENS))]
    assert ours == reference_captions(folder, "LLaVA", images[:3], "a photo of", do_sample=False)

    # The hub's layout: the image processor's preprocessor_config.json and the tokenizer's files, no
    # processor_config.json.
    hub = build_blip(tmp_path / "blip-hub")
    processor = AutoProcessor.from_pretrained(hub)
    (hub / "processor_config.json").unlink()
    processor.image_processor.save_pretrained(hub)
    processor.tokenizer.save_pretrained(hub)
    assert (hub / "preprocessor_config.json").is_file()
    hub_entry = load_entry(hub)
    greedy = get_settings("greedy", max_new_tokens=TOKENS)
    assert ([r.caption for r in caption_images([hub_entry], images, settings=greedy)]
            == reference_captions(hub, "BLIP", images, None, do_sample=False))


def test_chat_family_default_instruction(folders):
    entry = load_entry(folders["LLaVA"])
    assert entry.extra["prompt"] == DEFAULT_INSTRUCTION
    assert DEFAULT_INSTRUCTION in entry.model.text()


def test_own_and_foreign_entries_caption_together(folders, images, tmp_path):
    from captioning.tokenization import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(["a red circle", "a blue square"] * 10, vocab_size=270)
    own = load_entry(tiny_zoo_entry(tmp_path, "own", tokenizer))
    blip = load_entry(folders["BLIP"])
    settings = get_settings("greedy", max_new_tokens=TOKENS)
    together = caption_images([own, blip], images, settings=settings, batch_size=2)
    alone = {m.name: [r.caption for r in caption_images([m], images, settings=settings)] for m in (own, blip)}
    assert [r.caption for r in together if r.model_name == own.name] == alone[own.name]
    assert [r.caption for r in together if r.model_name == blip.name] == alone[blip.name]


def test_listing_shows_family_and_parameters(folders):
    rows = {r["name"]: r for r in list_zoo(folders["BLIP"].parent)}
    assert rows["blip"]["kind"] == KIND_TRANSFORMERS and rows["blip"]["family"] == "BLIP"
    assert rows["llava"]["prompt"] == DEFAULT_INSTRUCTION
    assert rows["git"]["parameters"] == sum(p.numel() for p in load_entry(folders["GIT"]).model.parameters())


def test_the_int8_fast_path_is_refused_naming_the_setting(folders):
    entry = load_entry(folders["GIT"])
    with pytest.raises(ValueError, match="quantize='int8'"):
        check_supported(entry.model, get_settings("greedy", quantize="int8"))


def _gpt2_folder(folder):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2)).save_pretrained(folder)
    return folder


def _clip_folder(folder):
    from transformers import CLIPConfig, CLIPModel

    text = dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    vision = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    return folder


def test_folders_that_cannot_be_entries_are_refused_in_one_line(folders, tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(folders["GIT"], zoo / "git")
    _gpt2_folder(zoo / "text-only-gpt2")
    _clip_folder(zoo / "clip")
    remote = shutil.copytree(folders["BLIP"], zoo / "remote-code")
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_blip_custom.BlipCustom"}
    (remote / "config.json").write_text(json.dumps(config))
    no_weights = shutil.copytree(folders["GIT"], zoo / "no-weights")
    (no_weights / "model.safetensors").unlink()
    no_processor = shutil.copytree(folders["BLIP"], zoo / "no-processor")
    (no_processor / "processor_config.json").unlink()
    pickled = shutil.copytree(folders["GIT"], zoo / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")

    def refusal(name: str) -> str:
        with pytest.raises(ZooError) as caught:
            load_entry(zoo / name)
        message = str(caught.value)
        assert "\n" not in message and "Traceback" not in message
        return message

    for name in ("text-only-gpt2", "clip"):
        message = refusal(name)
        assert "cannot caption images" in message and "BLIP" in message and "Florence-2" in message
    message = refusal("remote-code")
    assert "trust_remote_code" in message and "BlipForConditionalGeneration" in message
    assert "model.safetensors" in refusal("no-weights")
    assert "processor" in refusal("no-processor")
    assert "never unpickles" in refusal("pickled")

    # None of them stops the listing or the good entry.
    rows = {r["name"]: r for r in list_zoo(zoo)}
    assert "error" not in rows["git"] and all("error" in rows[n] for n in rows if n != "git")
    assert [p.name for p in select_entries(zoo)] == ["git"]


def test_pixel_count_sizes_are_not_read_as_sides():
    """Qwen2-VL's processor keeps min/max pixel counts in `size`; the side images are decoded at comes from them."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from captioning.preprocessing import input_side

    processor = Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=448 * 448)
    assert input_side(processor) == 449
