"""Protects the prefix captioner's training contract: the loss covers caption tokens only (EOS included,
prefix and padding excluded), freezing does what the config says, and parameter counts are truthful."""

import pytest
import torch
import torch.nn.functional as F

from captioning.config import CaptionerConfig, ConfigValueError
from captioning.model import IGNORE_INDEX, encode_captions
from captioning.tokenization import train_bpe_tokenizer
from helpers import tiny_captioner


@pytest.fixture(scope="module")
def tokenizer():
    return train_bpe_tokenizer(["a red circle", "a blue square on the left", "two green triangles"] * 5, vocab_size=280)


def test_captions_end_with_eos_and_pad_is_masked(tokenizer):
    batch = encode_captions(tokenizer, ["a red circle", "two green triangles on the left side"], max_tokens=6)
    eos = tokenizer.eos_token_id
    ids, mask = batch["input_ids"], batch["attention_mask"]
    for row, m in zip(ids.tolist(), mask.tolist()):
        real = [t for t, keep in zip(row, m) if keep]
        assert real[-1] == eos and eos not in real[:-1]
    assert ids.shape[1] == 6 and mask[1].sum() == 6, "long caption truncated to max_tokens, EOS kept"
    assert tokenizer.pad_token_id == eos, "GPT-2 pads with EOS; labels must come from the mask"


def test_loss_covers_caption_tokens_only(tokenizer):
    model = tiny_captioner(vocab_size=len(tokenizer))
    batch = encode_captions(tokenizer, ["a red circle", "two green triangles on the left"])
    feats = torch.randn(2, model.embed_dim)
    out = model(batch["input_ids"], batch["attention_mask"], image_embeds=feats)
    k = model.config.prefix_length
    logits = out["logits"]  # (B, K + T, V)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, IGNORE_INDEX)
    # position K-1+t predicts caption token t (the last prefix position predicts the first word)
    manual = F.cross_entropy(logits[:, k - 1:-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                             ignore_index=IGNORE_INDEX)
    assert torch.allclose(out["loss"], manual, atol=1e-5)
    # The padded EOS positions of the short caption must not count, but its own final EOS must.
    n_targets = int(batch["attention_mask"].sum())
    assert (labels != IGNORE_INDEX).sum() == n_targets
    short_len = int(batch["attention_mask"][0].sum())
    assert labels[0, short_len - 1] == tokenizer.eos_token_id
    assert (labels[0, short_len:] == IGNORE_INDEX).all()


def test_gradients_follow_freezing():
    model = tiny_captioner(freeze_decoder=1)
    counts = model.parameter_counts()
    assert counts["frozen"] == counts["encoder"] + sum(p.numel() for p in model.decoder_blocks()[0].parameters()) \
        + model.decoder.transformer.wte.weight.numel() + model.decoder.transformer.wpe.weight.numel()
    assert counts["trainable"] + counts["frozen"] == counts["total"] == counts["encoder"] + counts["mapper"] + counts["decoder"]
    assert not model.decoder.lm_head.weight.requires_grad, "the tied LM head freezes with the embeddings"
    model.train()
    assert not model.encoder.training, "a frozen encoder stays in eval mode"
    pixel_values = torch.randn(2, 3, 32, 32)
    ids = torch.randint(0, 90, (2, 5))
    out = model(ids, torch.ones_like(ids), pixel_values=pixel_values)
    out["loss"].backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(p.grad is None for p in model.decoder_blocks()[0].parameters())
    assert all(p.grad is not None for p in model.decoder_blocks()[1].parameters())
    assert all(p.grad is not None for p in model.mapper.parameters())


def test_freeze_all_trains_only_the_mapper_and_unfrozen_encoder_trains():
    model = tiny_captioner(freeze_decoder="all")
    counts = model.parameter_counts()
    assert counts["trainable"] == counts["mapper"]
    model = tiny_captioner(freeze_decoder="none", freeze_encoder=False)
    assert model.parameter_counts()["frozen"] == 0
    tied = model.decoder.lm_head.weight.numel()
    assert model.parameter_counts()["decoder"] == sum(p.numel() for p in model.decoder.parameters()), \
        f"tied head ({tied}) counted once"


def test_config_errors_are_explicit():
    model = tiny_captioner()
    cfg = model.config.to_dict()
    with pytest.raises(ConfigValueError, match="freeze_decoder"):
        CaptionerConfig.from_dict({**cfg, "freeze_decoder": "half"})
    with pytest.raises(ConfigValueError, match="only 2 blocks"):
        tiny_captioner(freeze_decoder=5)
    with pytest.raises(ConfigValueError, match="Unknown encoder type"):
        CaptionerConfig.from_dict({**cfg, "encoder_type": "resnet"})
    with pytest.raises(ConfigValueError, match="not divisible"):
        from captioning.model import PrefixCaptioner

        PrefixCaptioner(CaptionerConfig.from_dict({**cfg, "mapper": {"type": "transformer", "num_heads": 5}}))


@pytest.mark.parametrize("encoder_type", ["clip", "vit"])
def test_grid_mapper_gives_one_prefix_embedding_per_image_region(encoder_type):
    model = tiny_captioner(encoder_type=encoder_type, mapper="grid", prefix_length=4)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        patches = model.encode_images(pixels)
        assert patches.shape == (2, 16, 32)  # 32 px / patch 8 = 4 x 4 patch tokens of width 32, class token left out
        prefix = model.prefix_embeddings(patches)
        assert prefix.shape == (2, 4, model.n_embd)  # 2 x 2 cells
        # change only the patches of the bottom-right cell (rows 2-3, columns 2-3 of the 4 x 4 grid)
        changed = patches.clone().view(2, 4, 4, 32)
        changed[:, 2:, 2:] += torch.randn_like(changed[:, 2:, 2:])  # (a constant shift would vanish in the LayerNorm)
        moved = (model.prefix_embeddings(changed.view(2, 16, 32)) - prefix).abs().amax(dim=(0, 2))
    assert moved[3] > 1e-3 and torch.all(moved[:3] == 0), moved


def test_grid_mapper_needs_a_square_prefix_length():
    with pytest.raises(ConfigValueError, match="prefix_length must be a square"):
        tiny_captioner(mapper="grid", prefix_length=3)
    with pytest.raises(ValueError, match="at least that many patches"):
        tiny_captioner(mapper="grid", prefix_length=25).prefix_embeddings(torch.randn(1, 16, 32))
