"""Tiny, randomly initialised image-to-text models of other makers' families, built offline from their configs
with a vocabulary written here, and saved as `save_pretrained` writes them (model + processor): what a user
drops into the zoo. Each builder returns the folder. Used by tests/captioning/test_foreign.py and the
page/CLI tests that put a foreign entry beside our own.

`reference_inputs(family, processor, image, prompt)` is how each family's model card asks for a caption of one
image with plain transformers; the tests compare our batched captions with `generate` on those inputs.
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ("a red blue green yellow circle square triangle star two three on of and the left right above below "
         "small big photo picture shapes").split()
SIDE = 32
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=SIDE,
              patch_size=8, initializer_range=0.5)
TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, initializer_range=0.5)


def _bert_tokenizer(folder: Path, extra: tuple[str, ...] = ()):
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *extra, *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer(str(folder / "vocab.txt"))


def _word_tokenizer(special: tuple[str, ...] = (), chat_template: str | None = None, **named):
    """A byte-level word tokenizer (GPT-2 style spaces) over WORDS, with <pad> <s> </s> <unk> and `special`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base = ["<pad>", "<s>", "</s>", "<unk>", *special]
    vocab = {w: i for i, w in enumerate(base + [f"Ġ{w}" for w in WORDS] + list(WORDS) + ["Ċ", ":", "Ġ:", "?"])}
    inner = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    inner.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=inner, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", **named)
    if special:
        tokenizer.add_special_tokens({"additional_special_tokens": list(special)})
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def _save(model, processor, folder: Path) -> Path:
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_blip(folder: Path, seed: int = 0) -> Path:
    from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tokenizer = _bert_tokenizer(folder / "vocab", extra=("[DEC]",))
    tokenizer.bos_token = "[DEC]"
    config = BlipConfig(vision_config=VISION, projection_dim=32,
                        text_config=dict(TEXT, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                         pad_token_id=0, sep_token_id=3, eos_token_id=3))
    torch.manual_seed(seed)
    processor = BlipProcessor(image_processor=BlipImageProcessorPil(size={"height": SIDE, "width": SIDE}),
                              tokenizer=tokenizer)
    return _save(BlipForConditionalGeneration(config), processor, folder)


def build_git(folder: Path, seed: int = 0) -> Path:
    from transformers import GitConfig, GitForCausalLM, GitProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = _bert_tokenizer(folder / "vocab")
    config = GitConfig(vision_config=VISION, vocab_size=len(tokenizer), bos_token_id=2, eos_token_id=3,
                       pad_token_id=0, **TEXT)
    torch.manual_seed(seed)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    return _save(GitForCausalLM(config), GitProcessor(image_processor=image_processor, tokenizer=tokenizer), folder)


def build_blip2(folder: Path, seed: int = 0) -> Path:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tokenizer = _word_tokenizer(special=("<image>",))
    queries = 4
    config = Blip2Config(
        vision_config=VISION, num_query_tokens=queries, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        qformer_config=dict(TEXT, encoder_hidden_size=32, vocab_size=30),
        text_config=dict(model_type="opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                         num_attention_heads=4, word_embed_proj_dim=32, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, init_std=0.5))
    torch.manual_seed(seed)
    processor = Blip2Processor(image_processor=BlipImageProcessorPil(size={"height": SIDE, "width": SIDE}),
                               tokenizer=tokenizer, num_query_tokens=queries)
    return _save(Blip2ForConditionalGeneration(config), processor, folder)


def build_ved(folder: Path, seed: int = 0) -> Path:
    """A ViT + GPT-2 VisionEncoderDecoderModel with its image processor and tokenizer (the hub's layout:
    preprocessor_config.json and tokenizer files, no processor_config.json)."""
    from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    tokenizer = _word_tokenizer()
    encoder = ViTConfig(**{k: v for k, v in VISION.items()})
    decoder = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, add_cross_attention=True, is_decoder=True, initializer_range=0.5)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id, config.pad_token_id, config.eos_token_id = 1, 0, 2
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config).eval()
    model.generation_config.decoder_start_token_id, model.generation_config.eos_token_id = 1, 2
    model.generation_config.pad_token_id = 0
    model.save_pretrained(folder)
    ViTImageProcessorPil(size={"height": SIDE, "width": SIDE}).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_florence2(folder: Path, seed: int = 0) -> Path:
    from transformers import Florence2Config, Florence2ForConditionalGeneration, Florence2Processor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = _word_tokenizer(special=("<image>",), extra_special_tokens={"image_token": "<image>"})
    vision = dict(depths=(1, 1), patch_size=(7, 3), patch_stride=(4, 2), patch_padding=(3, 1),
                  patch_prenorm=(False, True), embed_dim=(16, 32), num_heads=(2, 4), num_groups=(2, 4), window_size=2,
                  projection_dim=32, drop_path_rate=0.0, initializer_range=0.5)
    text = dict(model_type="bart", vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
                encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                max_position_embeddings=128, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                decoder_start_token_id=2, forced_bos_token_id=None, init_std=0.5)
    config = Florence2Config(vision_config=vision, text_config=text, image_token_id=tokenizer.image_token_id)
    torch.manual_seed(seed)
    image_processor = CLIPImageProcessorPil(size={"height": SIDE, "width": SIDE}, crop_size={"height": SIDE, "width": SIDE},
                                            do_center_crop=False)
    image_processor.image_seq_length = (SIDE // 8) ** 2 + 1
    processor = Florence2Processor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(Florence2ForConditionalGeneration(config), processor, folder)


LLAVA_TEMPLATE = ("{% for message in messages %}{{ message['role'] }}:{% for part in message['content'] %}"
                  "{% if part['type'] == 'image' %} <image>{% else %} {{ part['text'] }}{% endif %}{% endfor %}"
                  "\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")


def build_llava(folder: Path, seed: int = 0) -> Path:
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tokenizer = _word_tokenizer(special=("<image>",), chat_template=LLAVA_TEMPLATE)
    vision = dict(VISION, model_type="clip_vision_model", projection_dim=32)
    text = dict(TEXT, model_type="llama", vocab_size=len(tokenizer), num_key_value_heads=4, bos_token_id=1,
                eos_token_id=2, pad_token_id=0, max_position_embeddings=256)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                               num_additional_image_tokens=1,
                               vision_feature_select_strategy="default", chat_template=LLAVA_TEMPLATE)
    return _save(LlavaForConditionalGeneration(config), processor, folder)


def build_instructblip(folder: Path, seed: int = 0) -> Path:
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration, InstructBlipProcessor
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    tokenizer = _word_tokenizer(special=("<image>",))
    qformer_tokenizer = _bert_tokenizer(folder / "qformer-vocab")
    config = InstructBlipConfig(
        vision_config=VISION, num_query_tokens=4, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        qformer_config=dict(TEXT, encoder_hidden_size=32, vocab_size=len(qformer_tokenizer)),
        text_config=dict(model_type="opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                         num_attention_heads=4, word_embed_proj_dim=32, bos_token_id=1, eos_token_id=2,
                         pad_token_id=0, init_std=0.5))
    torch.manual_seed(seed)
    processor = InstructBlipProcessor(image_processor=BlipImageProcessorPil(size={"height": SIDE, "width": SIDE}),
                                      tokenizer=tokenizer, qformer_tokenizer=qformer_tokenizer, num_query_tokens=4)
    return _save(InstructBlipForConditionalGeneration(config), processor, folder)


def build_paligemma(folder: Path, seed: int = 0) -> Path:
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tokenizer = _word_tokenizer(special=("<image>",))
    vision = dict(VISION, model_type="siglip_vision_model", projection_dim=32)
    text = dict(TEXT, model_type="gemma", vocab_size=len(tokenizer), num_key_value_heads=4, head_dim=8,
                bos_token_id=1, eos_token_id=2, pad_token_id=0)
    config = PaliGemmaConfig(vision_config=vision, text_config=text, projection_dim=32, hidden_size=32,
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(seed)
    image_processor = SiglipImageProcessorPil(size={"height": SIDE, "width": SIDE})
    image_processor.image_seq_length = (SIDE // 8) ** 2
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    return _save(PaliGemmaForConditionalGeneration(config), processor, folder)


BUILDERS = {"BLIP": build_blip, "GIT": build_git, "BLIP-2": build_blip2, "VisionEncoderDecoder": build_ved,
            "Florence-2": build_florence2, "LLaVA": build_llava, "InstructBLIP": build_instructblip,
            "PaliGemma": build_paligemma}


def reference_inputs(family: str, processor, image, prompt: str | None):
    """One image's inputs as each family's model card builds them with plain transformers."""
    if family in ("Florence-2", "PaliGemma", "InstructBLIP"):
        return processor(text=prompt, images=image, return_tensors="pt")
    if family == "LLaVA":
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        return processor(images=image, text=text, return_tensors="pt")
    if family == "VisionEncoderDecoder":
        return {"pixel_values": processor(images=image, return_tensors="pt")["pixel_values"]}
    return processor(images=image, return_tensors="pt")
