"""Tokenizers: loading a decoder's tokenizer, and training a small GPT-2-style one offline.

A real run uses the decoder's own tokenizer (`gpt2` from the hub, or a local folder). The offline demo zoo
and the tests train a byte-level BPE (the same algorithm as GPT-2's) on their captions with the
`tokenizers` library, so nothing has to be downloaded.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from .hub import load_pretrained

EOS_TOKEN = "<|endoftext|>"  # GPT-2's end-of-text token, also its BOS and (for batching) pad


def prepare_tokenizer(tokenizer) -> PreTrainedTokenizerFast:
    """Give a GPT-2-family tokenizer a pad token (its EOS) so it can batch; labels never rely on the pad id."""
    if tokenizer.eos_token is None:
        raise ValueError("the tokenizer has no eos_token; a captioner needs one to end captions")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerFast:
    """A decoder's tokenizer from a hub name or a local folder (PretrainedLoadError when it cannot be loaded)."""
    return prepare_tokenizer(load_pretrained(lambda: AutoTokenizer.from_pretrained(name_or_path), name_or_path,
                                             "tokenizer"))


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 512, min_frequency: int = 1) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer (GPT-2's scheme) on `texts`; `<|endoftext|>` is id 0-free and is EOS/BOS/pad."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN,
                                   unk_token=EOS_TOKEN, pad_token=EOS_TOKEN)
    return prepare_tokenizer(fast)
