"""Batched, KV-cached caption decoding: greedy, beam search and sampling.

The engine knows nothing about images or tokenizers. A model gives it three calls (see
`captioning.model.PrefixCaptioner`):
    prefill(features) -> (logits (B, V), cache)      # the prompt (visual prefix, or a start token)
    step(tokens (B,), cache) -> (logits (B, V), cache)
    reorder_cache(cache, index) -> cache             # select / repeat rows
and its `eos_token_id`. Every sequence in a batch has the same length at every step (no padding inside
the decoder), so no attention mask is needed. A sequence that has ended (greedy / sampling: its EOS; beam
search: every beam of an image, once no running beam can beat its finished ones) leaves the batch through
`reorder_cache`, so the decoder's work follows the captions still being written; transformers' batched
`generate` keeps feeding finished rows until the batch's longest caption ends.

Beam search follows transformers' own algorithm (top 2 x beams candidates per step, finished hypotheses
scored as sum log-prob / length ** length_penalty, the same early-stop heuristic), so for the same model
it returns the same captions; the test suite checks that. The prompt is run once per image and its cache
is then copied to the beams, instead of running it once per beam.

Presets are named settings; every caption records the settings that produced it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

STRATEGIES = ("greedy", "beam", "sample")
QUANTIZE = (None, "int8")  # GenerationSettings.quantize: None = exact, "int8" = the opt-in fast path
NEG_INF = -1.0e9  # transformers' "impossible" score in beam search; kept identical so results agree


@dataclass(frozen=True)
class GenerationSettings:
    """How to decode. `strategy` is "greedy", "beam" or "sample".

    num_beams, length_penalty, early_stopping: beam search (transformers' meanings and defaults).
    temperature, top_k (0 = off), top_p (1.0 = off): sampling, applied in that order.
    no_repeat_ngram_size: forbid repeating any n-gram of this size (0 = off).
    num_captions: captions returned per image (beam: the best N beams; sample: N independent samples).
    max_new_tokens / min_new_tokens: caption length bounds in tokens (EOS is suppressed before the minimum).
    seed: sampling is reproducible for a given seed (None = not seeded).
    preset: the preset name these settings came from, if any (recorded with the captions).
    quantize: None = the exact path; "int8" = the opt-in fast path (int8 dynamic quantisation of the decoder's
        matmuls, CPU, GPT-2 decoders): faster, numerics change, so it is recorded with the captions.
    """

    strategy: str = "beam"
    num_beams: int = 5
    length_penalty: float = 1.0
    early_stopping: bool | str = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    no_repeat_ngram_size: int = 0
    num_captions: int = 1
    max_new_tokens: int = 30
    min_new_tokens: int = 0
    seed: int | None = 0
    preset: str | None = None
    quantize: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.strategy not in STRATEGIES:
            problems.append(f"strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if self.num_beams < 1:
            problems.append(f"num_beams must be >= 1, got {self.num_beams}")
        if self.strategy == "beam" and self.num_captions > self.num_beams:
            problems.append(f"num_captions ({self.num_captions}) cannot exceed num_beams ({self.num_beams})")
        if self.strategy == "greedy" and self.num_captions != 1:
            problems.append("greedy decoding gives one caption per image; use beam or sample for several")
        if self.temperature <= 0:
            problems.append(f"temperature must be > 0, got {self.temperature}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not 0 <= self.min_new_tokens <= self.max_new_tokens:
            problems.append(f"min_new_tokens must be in [0, max_new_tokens], got {self.min_new_tokens}")
        if self.no_repeat_ngram_size < 0 or self.num_captions < 1:
            problems.append("no_repeat_ngram_size must be >= 0 and num_captions >= 1")
        if self.quantize not in QUANTIZE:
            problems.append(f"quantize must be one of {list(QUANTIZE)}, got {self.quantize!r}")
        if problems:
            raise ValueError("Invalid generation settings: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Only the settings that matter for this strategy, plus the preset name: what gets recorded."""
        keep = {"strategy", "max_new_tokens", "min_new_tokens", "no_repeat_ngram_size", "num_captions", "preset"}
        if self.strategy == "beam":
            keep |= {"num_beams", "length_penalty", "early_stopping"}
        if self.strategy == "sample":
            keep |= {"temperature", "top_k", "top_p", "seed"}
        if self.quantize is not None:  # the exact path records what it always did
            keep.add("quantize")
        return {k: v for k, v in dataclasses.asdict(self).items() if k in keep}

    def replace(self, **changes: Any) -> GenerationSettings:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, GenerationSettings] = {
    "consistent": GenerationSettings(strategy="beam", num_beams=5, preset="consistent"),
    "safe_diverse": GenerationSettings(strategy="sample", temperature=0.55, top_k=20, preset="safe_diverse"),
    "balanced_diverse": GenerationSettings(strategy="sample", temperature=0.8, top_k=40, preset="balanced_diverse"),
    "creative_diverse": GenerationSettings(strategy="sample", temperature=1.05, top_k=80, preset="creative_diverse"),
    "greedy": GenerationSettings(strategy="greedy", num_beams=1, preset="greedy"),
}


def get_settings(preset: str = "consistent", **overrides: Any) -> GenerationSettings:
    """A preset by name, with optional overrides (e.g. max_new_tokens=20)."""
    if preset not in PRESETS:
        raise ValueError(f"Preset {preset!r} not found; available presets = {sorted(PRESETS)}")
    return PRESETS[preset].replace(**overrides) if overrides else PRESETS[preset]


# ----------------------------------------------------------------------------------------------------------
# Logit processing


def _ban_repeated_ngrams(scores: torch.Tensor, sequences: torch.Tensor, n: int) -> None:
    """In place: forbid the tokens that would complete an n-gram already present in each row."""
    length = sequences.shape[1]
    if n <= 0 or length + 1 < n:
        return
    rows = sequences.tolist()
    for i, row in enumerate(rows):
        prefix = tuple(row[length - n + 1:]) if n > 1 else ()
        banned = [row[j + n - 1] for j in range(length - n + 1) if tuple(row[j:j + n - 1]) == prefix]
        if banned:
            scores[i, banned] = -float("inf")


def _process(scores: torch.Tensor, sequences: torch.Tensor, step: int, settings: GenerationSettings,
             eos_token_id: int) -> torch.Tensor:
    """The processors transformers applies for these settings: no-repeat n-grams, then the minimum length."""
    if settings.no_repeat_ngram_size:
        _ban_repeated_ngrams(scores, sequences, settings.no_repeat_ngram_size)
    if step < settings.min_new_tokens:
        scores[:, eos_token_id] = -float("inf")
    return scores


def _warp(logits: torch.Tensor, settings: GenerationSettings) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus), as transformers orders its warpers."""
    logits = logits / settings.temperature
    if settings.top_k and settings.top_k < logits.shape[-1]:
        kth = torch.topk(logits, settings.top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, -float("inf"))
    if settings.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative - sorted_logits.softmax(dim=-1) >= settings.top_p  # keep the token crossing top_p
        logits = logits.masked_fill(remove.scatter(1, order, remove), -float("inf"))
    return logits


# ----------------------------------------------------------------------------------------------------------
# Decoding loops


@dataclass
class Generated:
    """Token ids per image (a list of num_captions lists, EOS removed) and one score per caption."""

    tokens: list[list[list[int]]]
    scores: list[list[float]]


def _strip(row: list[int], eos: int) -> list[int]:
    return row[: row.index(eos)] if eos in row else row


def check_supported(model: Any, settings: GenerationSettings) -> None:
    """Raise ValueError, saying why and what to do, when `model` cannot decode with `settings` (the fast path)."""
    if settings.quantize is None:
        return
    if settings.quantize not in getattr(model, "quantize_options", ()):
        raise ValueError(f"quantize={settings.quantize!r} is not available for a {type(model).__name__} "
                         "(it runs on prefix captioners with a GPT-2 decoder); use quantize=None")
    problem = model.quantize_problem(settings.quantize)
    if problem:
        raise ValueError(f"quantize={settings.quantize!r} cannot run on this model: {problem}; "
                         "use quantize=None (the exact path)")


def _prefill(model: Any, features: torch.Tensor, settings: GenerationSettings) -> tuple[torch.Tensor, Any]:
    """model.prefill, asking for the fast path when the settings do (a model that cannot refuses clearly), and
    telling a model that can use it (`prefill_takes_max_new_tokens`) how long captions may get, so that its
    cache is allocated once at its final size."""
    kwargs: dict[str, Any] = {}
    if getattr(model, "prefill_takes_max_new_tokens", False):
        kwargs["max_new_tokens"] = settings.max_new_tokens
    if settings.quantize is not None:
        check_supported(model, settings)
        kwargs["quantize"] = settings.quantize
    return model.prefill(features, **kwargs)


@torch.inference_mode()
def generate(model: Any, features: torch.Tensor, settings: GenerationSettings) -> Generated:
    """Decode captions for a batch of encoder features (one row per image)."""
    if settings.strategy == "beam":
        return _beam_search(model, features, settings)
    return _greedy_or_sample(model, features, settings)


def _greedy_or_sample(model: Any, features: torch.Tensor, settings: GenerationSettings) -> Generated:
    eos = model.eos_token_id
    logits, cache = _prefill(model, features, settings)  # (B, V)
    batch = logits.shape[0]
    n = settings.num_captions
    if n > 1:  # several samples per image: run the prompt once, copy its cache
        index = torch.arange(batch, device=logits.device).repeat_interleave(n)
        cache = model.reorder_cache(cache, index)
        logits = logits[index]
    generator = None
    if settings.strategy == "sample" and settings.seed is not None:
        generator = torch.Generator(device=logits.device).manual_seed(settings.seed)
    out: list[list[int]] = [[] for _ in range(logits.shape[0])]
    out_scores = [0.0] * logits.shape[0]
    alive = list(range(logits.shape[0]))  # the caption each row of the batch writes
    sequences = torch.empty((len(alive), 0), dtype=torch.long, device=logits.device)
    log_prob_sum = torch.zeros(len(alive), device=logits.device)
    for step in range(settings.max_new_tokens):
        scores = _process(logits, sequences, step, settings, eos)
        if settings.strategy == "sample":
            probs = _warp(scores, settings).softmax(dim=-1)
            next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(1)  # (rows,)
        else:
            next_tokens = scores.argmax(dim=-1)  # (rows,)
        log_prob_sum += scores.log_softmax(-1).gather(1, next_tokens[:, None]).squeeze(1)
        sequences = torch.cat((sequences, next_tokens[:, None]), dim=1)
        ended = next_tokens == eos
        if step + 1 == settings.max_new_tokens:
            ended[:] = True
        if bool(ended.any()):  # finished captions leave the batch (and the cache)
            for row in ended.nonzero().flatten().tolist():
                out[alive[row]] = _strip(sequences[row].tolist(), eos)
                out_scores[alive[row]] = float(log_prob_sum[row])
            keep = (~ended).nonzero().flatten()
            if keep.numel() == 0:
                break
            alive = [alive[row] for row in keep.tolist()]
            sequences, log_prob_sum, next_tokens = sequences[keep], log_prob_sum[keep], next_tokens[keep]
            cache = model.reorder_cache(cache, keep)
        logits, cache = model.step(next_tokens, cache)
    return Generated(tokens=[out[i * n:(i + 1) * n] for i in range(batch)],
                     scores=[out_scores[i * n:(i + 1) * n] for i in range(batch)])


def _beam_search(model: Any, features: torch.Tensor, settings: GenerationSettings) -> Generated:
    """transformers' beam search (vectorised over images), with the prompt run once per image."""
    eos = model.eos_token_id
    nb, lp, max_new = settings.num_beams, settings.length_penalty, settings.max_new_tokens
    logits, cache = _prefill(model, features, settings)  # (B, V)
    batch, vocab = logits.shape
    device = logits.device
    keep = 2 * nb  # candidates per step: enough that nb survive even if nb of them end with EOS
    # Copy each image's prompt cache to its beams; only beam 0 starts "alive" (the others at -1e9), so the
    # first step's candidates are distinct tokens of the same prompt.
    expand = torch.arange(batch, device=device).repeat_interleave(nb)  # (B * nb,)
    cache = model.reorder_cache(cache, expand)
    logits = logits[expand]  # (B * nb, V)
    running_scores = torch.full((batch, nb), NEG_INF, device=device)
    running_scores[:, 0] = 0.0
    running = torch.full((batch, nb, max_new), eos, dtype=torch.long, device=device)  # (B, nb, T)
    finished_seqs = running.clone()
    finished_scores = torch.full((batch, nb), NEG_INF, device=device)
    finished_done = torch.zeros((batch, nb), dtype=torch.bool, device=device)
    improvable = torch.ones((batch, 1), dtype=torch.bool, device=device)
    top_nb_mask = torch.arange(keep, device=device) < nb  # (keep,)
    batch_offset = (torch.arange(batch, device=device) * nb)[:, None]  # (B, 1)
    n = settings.num_captions
    images = list(range(batch))  # the image each row of the per-image tensors belongs to
    results: list[Any] = [None] * batch  # per image: (its n best token rows, their scores)
    for step in range(max_new):
        log_probs = logits.float().log_softmax(dim=-1)  # (B * nb, V)
        log_probs = _process(log_probs, running[:, :, :step].reshape(batch * nb, step), step, settings, eos)
        accumulated = (log_probs.view(batch, nb, vocab) + running_scores[:, :, None]).view(batch, nb * vocab)
        top_scores, top_index = torch.topk(accumulated, keep, dim=1)  # (B, keep)
        source_beam = top_index // vocab  # (B, keep)
        top_tokens = top_index % vocab  # (B, keep)
        candidates = running.gather(1, source_beam[:, :, None].expand(-1, -1, max_new)).clone()  # (B, keep, T)
        candidates[:, :, step] = top_tokens
        hits_stop = (top_tokens == eos) | (step + 1 >= max_new)  # EOS or the length limit  (B, keep)

        # Running beams for the next step: the best nb candidates that did not stop.
        alive_scores = top_scores + hits_stop.float() * NEG_INF
        pick = torch.topk(alive_scores, nb, dim=1).indices  # (B, nb)
        running = candidates.gather(1, pick[:, :, None].expand(-1, -1, max_new))
        running_scores = alive_scores.gather(1, pick)
        running_source = source_beam.gather(1, pick)  # (B, nb)

        # Finished hypotheses: only the top nb candidates may finish; keep the best nb so far.
        final_scores = top_scores / ((step + 1) ** lp)
        if settings.early_stopping is True:
            final_scores = final_scores + (finished_done.all(dim=1, keepdim=True)).float() * NEG_INF
        final_scores = final_scores + (~improvable).float() * NEG_INF
        just_done = hits_stop & top_nb_mask[None, :]
        final_scores = final_scores + (~just_done).float() * NEG_INF
        merged_scores = torch.cat((finished_scores, final_scores), dim=1)  # (B, nb + keep)
        merged_seqs = torch.cat((finished_seqs, candidates), dim=1)
        merged_done = torch.cat((finished_done, just_done), dim=1)
        best = torch.topk(merged_scores, nb, dim=1).indices
        finished_scores = merged_scores.gather(1, best)
        finished_seqs = merged_seqs.gather(1, best[:, :, None].expand(-1, -1, max_new))
        finished_done = merged_done.gather(1, best)

        # transformers' early-stop heuristic (early_stopping=False): can a running beam still win?
        if settings.early_stopping == "never" and lp > 0.0:
            best_length = max_new
        else:
            best_length = step + 1
        best_possible = running_scores[:, :1] / (best_length ** lp)  # (B, 1)
        worst_finished = torch.where(finished_done, finished_scores.min(dim=1, keepdim=True).values, NEG_INF)
        improvable = improvable & (best_possible > worst_finished).any(dim=1, keepdim=True)

        # An image is done when no running beam can still win (or, early_stopping=True, it has nb finished
        # hypotheses): its finished hypotheses can no longer change, so they are its result and its beams
        # leave the batch.
        done = ~improvable[:, 0]
        if settings.early_stopping is True:
            done |= finished_done.all(dim=1)
        if step + 1 >= max_new:
            done[:] = True
        source_rows = running_source + batch_offset  # (B, nb): the rows the next step's beams continue
        if bool(done.any()):
            for i in done.nonzero().flatten().tolist():
                results[images[i]] = (finished_seqs[i, :n].tolist(), finished_scores[i, :n].tolist())
            staying = (~done).nonzero().flatten()
            if staying.numel() == 0:
                break
            images = [images[i] for i in staying.tolist()]
            source_rows = source_rows[staying]
            running, running_scores, improvable = running[staying], running_scores[staying], improvable[staying]
            finished_seqs, finished_scores = finished_seqs[staying], finished_scores[staying]
            finished_done = finished_done[staying]
            batch = staying.numel()
            batch_offset = (torch.arange(batch, device=device) * nb)[:, None]
        cache = model.reorder_cache(cache, source_rows.view(-1))
        logits, cache = model.step(running[:, :, step].reshape(-1), cache)
    tokens = [[_strip(row, eos) for row in seqs] for seqs, _ in results]
    return Generated(tokens=tokens, scores=[scores for _, scores in results])
