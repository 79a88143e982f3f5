"""Protects the generation engine: batched KV-cached decoding must equal the slow reference paths.

- greedy with the cache == a naive full re-run of the decoder at every step, for several batch sizes;
- beam search == transformers' own `generate(num_beams=...)` on the same model (tokens and scores);
- sampling really samples, and a seed reproduces it; presets validate and record their settings.
"""

import pytest
import torch

from captioning.generation import PRESETS, GenerationSettings, generate, get_settings
from helpers import tiny_captioner


def make_eos_likely(model, scale: float = 3.0):
    """Push EOS up so that captions of different lengths (and finished beams) actually occur."""
    with torch.no_grad():
        wte = model.decoder.get_input_embeddings().weight
        wte[model.eos_token_id] = wte[model.eos_token_id] * scale + 0.3
    return model


def naive_greedy(model, features, max_new_tokens):
    """Reference: no cache, the whole sequence re-run through GPT-2 at every step."""
    prefix = model.prefix_embeddings(features)
    eos = model.eos_token_id
    out = []
    for row in range(features.shape[0]):
        tokens = []
        for _ in range(max_new_tokens):
            ids = torch.tensor([tokens], dtype=torch.long)
            embeds = torch.cat((prefix[row:row + 1], model.decoder.get_input_embeddings()(ids)), dim=1)
            logits = model.decoder(inputs_embeds=embeds).logits[0, -1]
            nxt = int(logits.argmax())
            if nxt == eos:
                break
            tokens.append(nxt)
        out.append(tokens)
    return out


@pytest.mark.parametrize("batch_size", [1, 3, 8])
@pytest.mark.parametrize("mapper", ["mlp", "transformer", "grid"])
def test_batched_cached_greedy_equals_naive_rerun(batch_size, mapper):
    model = make_eos_likely(tiny_captioner(mapper=mapper, seed=batch_size, prefix_length=4 if mapper == "grid" else 3))
    torch.manual_seed(100 + batch_size)
    # pooled embeddings (B, D), or for the grid mapper the tiny encoder's 4 x 4 patch tokens (B, 16, D)
    features = torch.randn(batch_size, 16, model.embed_dim) if mapper == "grid" else torch.randn(batch_size, model.embed_dim)
    with torch.no_grad():
        expected = naive_greedy(model, features, max_new_tokens=12)
    got = generate(model, features, get_settings("greedy", max_new_tokens=12))
    assert [t[0] for t in got.tokens] == expected
    lengths = {len(t) for t in expected}
    assert len(lengths) > 1 or batch_size == 1 or 12 not in lengths, "test should exercise early EOS"


def hf_beam(model, features, num_beams, max_new_tokens, length_penalty=1.0, num_return=1, no_repeat=0,
            early_stopping=False):
    with torch.no_grad():
        prefix = model.prefix_embeddings(features)
        out = model.decoder.generate(
            inputs_embeds=prefix, attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long),
            num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False, length_penalty=length_penalty,
            num_return_sequences=num_return, no_repeat_ngram_size=no_repeat, early_stopping=early_stopping,
            pad_token_id=model.eos_token_id, eos_token_id=model.eos_token_id, output_scores=True,
            return_dict_in_generate=True)
    eos = model.eos_token_id
    seqs = [s[: s.index(eos)] if eos in s else s for s in out.sequences.tolist()]
    return seqs, out.sequences_scores.tolist()


@pytest.mark.parametrize("seed,num_beams,length_penalty,no_repeat", [
    (0, 5, 1.0, 0), (1, 3, 1.0, 0), (2, 4, 0.6, 0), (3, 5, 2.0, 0), (4, 5, 1.0, 2)])
def test_beam_search_agrees_with_transformers(seed, num_beams, length_penalty, no_repeat):
    model = make_eos_likely(tiny_captioner(seed=seed))
    torch.manual_seed(seed)
    features = torch.randn(6, model.embed_dim)
    settings = GenerationSettings(strategy="beam", num_beams=num_beams, length_penalty=length_penalty,
                                  max_new_tokens=10, num_captions=2, no_repeat_ngram_size=no_repeat)
    got = generate(model, features, settings)
    expected, expected_scores = hf_beam(model, features, num_beams, 10, length_penalty, num_return=2,
                                        no_repeat=no_repeat)
    assert [t for caps in got.tokens for t in caps] == expected
    assert [s for caps in got.scores for s in caps] == pytest.approx(expected_scores, abs=1e-4)


def test_beam_search_finds_higher_likelihood_than_greedy():
    model = make_eos_likely(tiny_captioner(seed=7))
    features = torch.randn(8, model.embed_dim)
    greedy = generate(model, features, get_settings("greedy", max_new_tokens=10))
    beam = generate(model, features, GenerationSettings(strategy="beam", num_beams=5, length_penalty=0.0,
                                                        max_new_tokens=10))
    # With length_penalty=0 beam scores are plain sums of log-probs: never worse than greedy's path.
    for g, b in zip(greedy.scores, beam.scores):
        assert b[0] >= g[0] - 1e-4


def test_sampling_is_seeded_and_really_samples():
    model = tiny_captioner(seed=3)
    features = torch.randn(4, model.embed_dim)
    settings = get_settings("creative_diverse", max_new_tokens=8, num_captions=4, seed=11)
    first = generate(model, features, settings)
    again = generate(model, features, settings)
    other = generate(model, features, settings.replace(seed=12))
    assert first.tokens == again.tokens
    assert first.tokens != other.tokens
    greedy = generate(model, features, get_settings("greedy", max_new_tokens=8))
    distinct = {tuple(c) for caps in first.tokens for c in caps}
    assert len(distinct) > 4, "samples of 4 images x 4 captions should not collapse to a few sequences"
    assert any(caps[0] != g[0] for caps, g in zip(first.tokens, greedy.tokens))


def test_top_k_one_sampling_equals_greedy():
    model = tiny_captioner(seed=5)
    features = torch.randn(3, model.embed_dim)
    greedy = generate(model, features, get_settings("greedy", max_new_tokens=8))
    sampled = generate(model, features, GenerationSettings(strategy="sample", top_k=1, max_new_tokens=8, seed=0))
    assert sampled.tokens == greedy.tokens


def test_min_new_tokens_suppresses_eos_and_max_bounds_length():
    model = make_eos_likely(tiny_captioner(seed=2), scale=6.0)
    features = torch.randn(4, model.embed_dim)
    out = generate(model, features, get_settings("consistent", max_new_tokens=7, min_new_tokens=7))
    assert all(len(c[0]) == 7 for c in out.tokens)
    out = generate(model, features, get_settings("greedy", max_new_tokens=5))
    assert all(len(c[0]) <= 5 for c in out.tokens)


def test_no_repeat_ngram_is_respected():
    model = tiny_captioner(seed=9)
    features = torch.randn(4, model.embed_dim)
    out = generate(model, features, get_settings("greedy", max_new_tokens=20, no_repeat_ngram_size=2))
    for caps in out.tokens:
        bigrams = list(zip(caps[0], caps[0][1:]))
        assert len(bigrams) == len(set(bigrams))


def test_presets_and_settings_validation():
    assert PRESETS["consistent"].num_beams == 5 and PRESETS["consistent"].strategy == "beam"
    assert (PRESETS["safe_diverse"].temperature, PRESETS["safe_diverse"].top_k) == (0.55, 20)
    assert (PRESETS["balanced_diverse"].temperature, PRESETS["balanced_diverse"].top_k) == (0.8, 40)
    assert (PRESETS["creative_diverse"].temperature, PRESETS["creative_diverse"].top_k) == (1.05, 80)
    recorded = get_settings("safe_diverse").to_dict()
    assert recorded["preset"] == "safe_diverse" and recorded["temperature"] == 0.55 and "num_beams" not in recorded
    with pytest.raises(ValueError, match="available presets"):
        get_settings("fancy")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        GenerationSettings(strategy="sample", temperature=0)
    with pytest.raises(ValueError, match="cannot exceed num_beams"):
        GenerationSettings(strategy="beam", num_beams=2, num_captions=3)


class RowCounter:
    """A captioner whose steps are counted: how many rows the decoder is fed at each step."""

    def __init__(self, model):
        self.model, self.rows = model, []
        self.eos_token_id = model.eos_token_id

    def prefill(self, features, **kwargs):
        return self.model.prefill(features, **kwargs)

    def step(self, tokens, cache):
        self.rows.append(tokens.shape[0])
        return self.model.step(tokens, cache)

    def reorder_cache(self, cache, index):
        return self.model.reorder_cache(cache, index)


@pytest.mark.parametrize("settings", [get_settings("greedy", max_new_tokens=12),
                                      GenerationSettings(strategy="beam", num_beams=3, max_new_tokens=12),
                                      get_settings("safe_diverse", max_new_tokens=12, num_captions=2)])
def test_finished_captions_leave_the_batch(settings):
    """The decoder is fed only the rows still writing a caption; the captions are those of the full batch."""
    model = make_eos_likely(tiny_captioner(seed=11))
    torch.manual_seed(11)
    features = torch.randn(8, model.embed_dim)
    counter = RowCounter(model)
    got = generate(counter, features, settings)
    per_image = settings.num_beams if settings.strategy == "beam" else settings.num_captions
    lengths = [len(t) for caps in got.tokens for t in caps]
    assert len(set(lengths)) > 1  # captions of several lengths: rows did end at different steps
    assert counter.rows == sorted(counter.rows, reverse=True) and counter.rows[-1] < 8 * per_image
    if settings.strategy != "beam":  # step k feeds token k of the captions longer than k tokens
        expected_rows = [sum(length > k for length in lengths) for k in range(11)]
        assert counter.rows == [rows for rows in expected_rows if rows]
    if settings.strategy == "greedy":
        assert [t[0] for t in got.tokens] == naive_greedy(model, features, max_new_tokens=12)
    if settings.strategy == "beam":
        expected, scores = hf_beam(model, features, 3, 12)
        assert [caps[0] for caps in got.tokens] == expected
        assert [caps[0] for caps in got.scores] == pytest.approx(scores, abs=1e-4)


@pytest.mark.parametrize("early_stopping", [True, "never"])
def test_beam_search_early_stopping_agrees_with_transformers(early_stopping):
    """Images leave the batch when done under every early_stopping rule; the captions stay transformers'."""
    for seed in (2, 5):
        model = make_eos_likely(tiny_captioner(seed=seed))
        torch.manual_seed(seed)
        features = torch.randn(6, model.embed_dim)
        settings = GenerationSettings(strategy="beam", num_beams=4, length_penalty=0.8, max_new_tokens=10,
                                      num_captions=2, early_stopping=early_stopping)
        got = generate(model, features, settings)
        expected, scores = hf_beam(model, features, 4, 10, length_penalty=0.8, num_return=2,
                                   early_stopping=early_stopping)
        assert [t for caps in got.tokens for t in caps] == expected
        assert [s for caps in got.scores for s in caps] == pytest.approx(scores, abs=1e-4)
