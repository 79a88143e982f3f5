"""Self-critical sequence training (SCST; Rennie et al., 2017): the stage after cross-entropy that optimises
CIDEr-D directly, configured by the ``scst:`` section (trainer/config.py) and run by trainer/train.py.

One SCST step, for a batch of training images:
1. with the model in eval mode and no gradients, the generation engine samples ``samples_per_image``
   captions per image (``captioning.generation``, strategy "sample", seeded per step so a resumed run draws
   the same samples) and, for ``baseline: greedy``, decodes the greedy caption;
2. each caption's reward is its CIDEr-D against the image's references, with document frequencies taken once
   from the *training* captions (as self-critical.pytorch's ``prepro_ngrams.py`` does; cached on disk, keyed by
   the captions' hash) instead of from the batch;
3. the baseline is the greedy caption's reward, or (``baseline: mean``, the "new SCST" of self-critical.pytorch)
   the mean reward of the image's other samples;
4. ONE teacher-forced pass over the samples, in training mode, gives the log-probabilities of the sampled
   tokens (EOS counted when the sample ended with it; padding masked), so memory stays that of a
   cross-entropy batch of samples, and the loss is mean over samples of -(reward - baseline) * sum log p.

The reward is the same function as the CIDEr-D metric (pycocoevalcap's formula, on ``captioning.metrics``
tokens), only with fixed document frequencies; tests/trainer/test_scst.py checks they agree.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from captioning.generation import GenerationSettings, generate
from captioning.metrics import tokenize

from .errors import TrainingError

CIDER_N, CIDER_SIGMA = 4, 6.0  # pycocoevalcap's CIDEr-D: 1..4-grams, Gaussian length penalty sigma = 6
DF_FOLDER = "cider-df"


# ----------------------------------------------------------------------------------------------------------
# The reward: CIDEr-D with document frequencies from the training captions


def _ngrams(words: list[str]) -> dict[tuple[str, ...], int]:
    counts: dict[tuple[str, ...], int] = defaultdict(int)
    for k in range(1, CIDER_N + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return counts


def references_hash(references: dict[str, list[str]]) -> str:
    """A key of the training captions as the reward sees them (normalised words, images in id order)."""
    h = hashlib.sha256()
    for image_id in sorted(references):
        h.update(json.dumps([image_id, [" ".join(tokenize(r)) for r in references[image_id]]]).encode())
    return h.hexdigest()[:24]


def document_frequencies(references: dict[str, list[str]]) -> dict[tuple[str, ...], int]:
    """n-gram -> number of images whose references contain it (pycocoevalcap's compute_doc_freq)."""
    df: dict[tuple[str, ...], int] = defaultdict(int)
    for refs in references.values():
        seen = set()
        for ref in refs:
            seen.update(_ngrams(tokenize(ref)))
        for ngram in seen:
            df[ngram] += 1
    return dict(df)


class CiderReward:
    """CIDEr-D of captions against their image's references, the document frequencies fixed.

    Each image's reference vectors are built once (they never change, since the frequencies do not).
    """

    def __init__(self, references: dict[str, list[str]], df: dict[tuple[str, ...], int], num_images: int):
        self.references = {i: [r for r in refs if tokenize(r)] for i, refs in references.items()}
        self.df = df
        self.ref_len = math.log(float(num_images))  # pycocoevalcap: log of the number of reference sets
        self._ref_vectors: dict[str, list] = {}

    @classmethod
    def from_training(cls, references: dict[str, list[str]], cache_dir: str | os.PathLike | None,
                      log: Callable[[str], None] = lambda _: None) -> CiderReward:
        """The reward for these training references; the document frequencies are read from
        ``<cache_dir>/cider-df/<captions hash>.json`` when there, else computed and written there."""
        key = references_hash(references)
        path = Path(cache_dir) / DF_FOLDER / f"{key}.json" if cache_dir else None
        if path is not None and path.is_file():
            stored = json.loads(path.read_text())
            df = {tuple(k.split(" ")): v for k, v in stored["df"].items()}
            log(f"scst: CIDEr-D document frequencies of {stored['images']} training images read from {path}")
            return cls(references, df, stored["images"])
        started = time.perf_counter()
        df = document_frequencies(references)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"images": len(references), "df": {" ".join(k): v for k, v in df.items()}}))
            os.replace(tmp, path)
        log(f"scst: CIDEr-D document frequencies of {len(references)} training images computed in "
            f"{time.perf_counter() - started:.1f}s" + (f", cached in {path}" if path else ""))
        return cls(references, df, len(references))

    def _vector(self, words: list[str]) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(CIDER_N)]
        norm = [0.0] * CIDER_N
        length = 0
        for ngram, tf in _ngrams(words).items():
            n = len(ngram) - 1
            value = float(tf) * (self.ref_len - np.log(max(1.0, self.df.get(ngram, 0.0))))
            vec[n][ngram] = value
            norm[n] += value * value
            if n == 1:  # pycocoevalcap counts the length this way (bigrams); kept so reward == metric
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def _sim(self, hyp, ref) -> float:
        (vh, nh, lh), (vr, nr, lr) = hyp, ref
        penalty = math.exp(-((lh - lr) ** 2) / (2 * CIDER_SIGMA ** 2))
        total = 0.0
        for n in range(CIDER_N):
            value = sum(min(v, vr[n].get(g, 0.0)) * vr[n].get(g, 0.0) for g, v in vh[n].items())
            if nh[n] != 0 and nr[n] != 0:
                value /= nh[n] * nr[n]
            total += value * penalty
        return total / CIDER_N

    def scores(self, image_ids: list[str], captions: list[str]) -> list[float]:
        """CIDEr-D (x10, as the metric) of each caption against the references of its image."""
        out = []
        for image_id, caption in zip(image_ids, captions):
            refs = self._ref_vectors.get(image_id)
            if refs is None:
                refs = self._ref_vectors[image_id] = [self._vector(tokenize(r)) for r in self.references[image_id]]
            hyp = self._vector(tokenize(caption))
            out.append(10.0 * sum(self._sim(hyp, ref) for ref in refs) / len(refs))
        return out


def baselines(rewards: torch.Tensor, greedy: torch.Tensor | None) -> torch.Tensor:
    """(images, samples) rewards -> the baseline of each sample: the greedy caption's reward (images,), or the
    mean of the image's other samples."""
    if greedy is not None:
        return greedy[:, None].expand_as(rewards)
    s = rewards.shape[1]
    return (rewards.sum(dim=1, keepdim=True) - rewards) / (s - 1)


def sequence_log_probs(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                       prefix_length: int) -> torch.Tensor:
    """Sum of log p(token) over each caption (N,), from the model's teacher-forced logits (N, K + T, V):
    position K - 1 + t predicts caption token t; padding (mask 0) contributes nothing."""
    t = input_ids.shape[1]
    step_logits = logits[:, prefix_length - 1:prefix_length - 1 + t].float()
    token_logp = step_logits.log_softmax(-1).gather(2, input_ids[:, :, None]).squeeze(2)
    return (token_logp * attention_mask).sum(dim=1)


def sample_batch(sequences: list[list[int]], eos: int, max_new_tokens: int, pad: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled token lists (EOS stripped by the engine) -> (input_ids, attention_mask) for the teacher-forced
    pass. A sample shorter than max_new_tokens stopped on EOS, which is put back (its log-prob counts); one of
    max_new_tokens tokens was cut and gets none."""
    rows = [s + [eos] if len(s) < max_new_tokens else list(s) for s in sequences]
    length = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return input_ids, mask


# ----------------------------------------------------------------------------------------------------------
# The stage


@dataclass
class Stats:
    """Sums since the last log line (and over the epoch)."""

    reward: float = 0.0
    baseline: float = 0.0
    beat: float = 0.0
    loss: float = 0.0
    samples: int = 0
    batches: int = 0
    history: list[float] = field(default_factory=list)

    def add(self, rewards: torch.Tensor, base: torch.Tensor, loss: float) -> None:
        self.reward += float(rewards.sum())
        self.baseline += float(base.sum())
        self.beat += float((rewards > base).sum())
        self.samples += rewards.numel()
        self.loss += loss
        self.batches += 1

    def means(self) -> dict[str, float]:
        n = max(self.samples, 1)
        return {"reward": self.reward / n, "baseline": self.baseline / n, "beat_baseline": self.beat / n,
                "loss": self.loss / max(self.batches, 1)}


class ScstStage:
    """The SCST epochs of a run: its own AdamW (constant learning rate), the image order, and one step."""

    def __init__(self, cfg, model, params: list[torch.nn.Parameter], train_split, dataset, tokenizer, *,
                 log: Callable[[str], None]):
        s, t = cfg.scst, cfg.training
        self.cfg, self.settings_cfg = cfg, s
        self.start_epoch = s.after_epoch
        self.tokenizer = tokenizer
        self.dataset = dataset
        self.params = params
        self.log = log
        # One item per training image: the first record of each image (its pixels or cached embedding).
        first: dict[str, int] = {}
        for index, record in enumerate(train_split.records):
            first.setdefault(record.image_id, index)
        self.image_ids = sorted(first)
        self.first_index = first
        self.reward = CiderReward.from_training({i: train_split.references[i] for i in self.image_ids},
                                                cfg.data.cache_dir, log)
        self.batch_size = s.batch_size or t.batch_size
        self.max_new_tokens = s.max_new_tokens or cfg.evaluation.max_new_tokens
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=s.learning_rate)
        self.accelerator = None
        self.model = model
        self.epoch_stats = Stats()
        self._orders: dict[tuple[int, int], list[int]] = {}

    def bind(self, accelerator, model, optimizer) -> None:
        """The prepared (wrapped) model and optimiser, after `accelerator.prepare`."""
        self.accelerator, self.model, self.optimizer = accelerator, model, optimizer

    def is_scst_epoch(self, epoch: int) -> bool:
        return epoch >= self.start_epoch

    def micro_batches_per_epoch(self) -> int:
        a = self.accelerator
        per_pass = math.ceil(len(self.image_ids) / (self.batch_size * a.num_processes))
        accumulation = self.cfg.training.gradient_accumulation_steps
        if self.settings_cfg.steps_per_epoch:
            return self.settings_cfg.steps_per_epoch * accumulation
        return per_pass

    def batch_ids(self, epoch: int, index: int) -> list[str]:
        """The images of micro-batch `index` of `epoch` for this process: a seeded permutation per epoch (and
        per further pass when steps_per_epoch asks for more than one), so a resumed run draws the same images."""
        a = self.accelerator
        n, width = len(self.image_ids), self.batch_size * a.num_processes
        chosen = []
        for position in range(index * width, (index + 1) * width):
            passes, within = divmod(position, n)
            if (epoch, passes) not in self._orders:
                g = torch.Generator().manual_seed(self.cfg.experiment.seed * 7919 + epoch * 104729 + passes)
                self._orders = {(epoch, passes): torch.randperm(n, generator=g).tolist()}  # keep one pass
            chosen.append(self._orders[(epoch, passes)][within])
            if self.settings_cfg.steps_per_epoch is None and position + 1 == n:
                break  # a full pass ends the epoch; its last batch may be smaller
        return [self.image_ids[i] for i in chosen[a.process_index::a.num_processes]]

    def _inputs(self, ids: list[str]) -> dict[str, torch.Tensor]:
        items = [self.dataset[self.first_index[i]] for i in ids]
        key = "image_embeds" if "image_embeds" in items[0] else "pixel_values"
        return {key: torch.stack([it[key] for it in items]).to(self.accelerator.device)}

    def run_epoch(self, epoch: int, state, *, writer=None, stop_after_steps: int | None = None) -> list[float]:
        """The SCST micro-batches of `epoch` from state.batches_done on; returns their losses."""
        a, t, s = self.accelerator, self.cfg.training, self.settings_cfg
        unwrapped = a.unwrap_model(self.model)
        total = self.micro_batches_per_epoch()
        interval, losses = Stats(), []
        self.epoch_stats = Stats()
        tick, tick_step = time.perf_counter(), state.global_step
        for index in range(state.batches_done, total):
            ids = self.batch_ids(epoch, index)
            if not ids:
                continue
            inputs = self._inputs(ids)
            seed = (self.cfg.experiment.seed * 1_000_003 + epoch * 10_007 + index) * a.num_processes + a.process_index
            with a.accumulate(self.model):
                rewards, base, loss = self.step(unwrapped, ids, inputs, seed)
                if not torch.isfinite(loss):
                    raise TrainingError(f"the SCST loss became {loss.item()} at step {state.global_step} (epoch "
                                        f"{epoch + 1}); lower scst.learning_rate (now {s.learning_rate}) and resume "
                                        f"from the last saved state with --resume")
                a.backward(loss)
                if a.sync_gradients and t.max_grad_norm:
                    a.clip_grad_norm_(self.params, t.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            state.batches_done += 1
            losses.append(loss.item())
            interval.add(rewards, base, loss.item())
            self.epoch_stats.add(rewards, base, loss.item())
            if not a.sync_gradients:
                continue
            state.global_step += 1
            if state.global_step % t.log_every == 0:
                means = self._gathered(interval)
                ms = (time.perf_counter() - tick) * 1000 / max(state.global_step - tick_step, 1)
                tick, tick_step, interval = time.perf_counter(), state.global_step, Stats()
                self.log(f"scst step {state.global_step} (epoch {epoch + 1}) | reward {means['reward']:.3f} | "
                         f"baseline {means['baseline']:.3f} | beat baseline {means['beat_baseline']:.0%} | "
                         f"loss {means['loss']:.3f} | lr {s.learning_rate:.1e} | {ms:.0f} ms/step")
                if writer:
                    for key, value in means.items():
                        writer.add_scalar(f"scst/{key}", value, state.global_step)
            if stop_after_steps is not None and state.global_step >= stop_after_steps:
                raise KeyboardInterrupt
            if t.max_steps and state.global_step >= t.max_steps:
                break
        return losses

    def _gathered(self, stats: Stats) -> dict[str, float]:
        """Interval means over every process."""
        a = self.accelerator
        sums = torch.tensor([stats.reward, stats.baseline, stats.beat, stats.samples, stats.loss, stats.batches],
                            dtype=torch.float64, device=a.device)
        if a.num_processes > 1:
            sums = a.reduce(sums, reduction="sum")
        r, b, beat, n, loss, batches = sums.tolist()
        n = max(n, 1)
        return {"reward": r / n, "baseline": b / n, "beat_baseline": beat / n, "loss": loss / max(batches, 1)}

    def epoch_record(self) -> dict[str, Any]:
        """What the epoch's history record adds: the stage and its training reward statistics."""
        means = self._gathered(self.epoch_stats)
        return {"stage": "scst", "train_reward": means["reward"], "train_baseline": means["baseline"],
                "train_beat_baseline": means["beat_baseline"]}

    def step(self, unwrapped, ids: list[str], inputs: dict[str, torch.Tensor], seed: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample, score, and the policy-gradient loss of one micro-batch: (rewards, baselines, loss)."""
        s, a = self.settings_cfg, self.accelerator
        k = s.samples_per_image
        was_training = unwrapped.training
        unwrapped.eval()
        with torch.no_grad(), a.autocast():
            if "image_embeds" in inputs:
                features = inputs["image_embeds"]
            else:
                features = unwrapped.encode_images(inputs["pixel_values"])
            features = unwrapped.encoder_inputs(features)
            sampled = generate(unwrapped, features, GenerationSettings(
                strategy="sample", temperature=s.temperature, top_k=s.top_k, num_captions=k,
                max_new_tokens=self.max_new_tokens, seed=seed))
            greedy = None
            if s.baseline == "greedy":
                greedy = generate(unwrapped, features, GenerationSettings(strategy="greedy", num_beams=1,
                                                                          max_new_tokens=self.max_new_tokens))
        unwrapped.train(was_training)
        sequences = [seq for image in sampled.tokens for seq in image]  # image-major: image 0's k samples first
        decode = lambda tokens: self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        rewards = torch.tensor(self.reward.scores([i for i in ids for _ in range(k)], [decode(q) for q in sequences]),
                               dtype=torch.float32).view(len(ids), k)
        greedy_rewards = None
        if greedy is not None:
            greedy_rewards = torch.tensor(self.reward.scores(ids, [decode(g[0]) for g in greedy.tokens]),
                                          dtype=torch.float32)
        base = baselines(rewards, greedy_rewards)
        eos = unwrapped.eos_token_id
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos
        input_ids, mask = sample_batch(sequences, eos, self.max_new_tokens, pad)
        input_ids, mask = input_ids.to(a.device), mask.to(a.device)
        repeated = {key: value.repeat_interleave(k, dim=0) for key, value in inputs.items()}
        out = self.model(input_ids, mask, **repeated)
        log_probs = sequence_log_probs(out["logits"], input_ids, mask, unwrapped.config.prefix_length)
        advantage = (rewards - base).view(-1).to(log_probs.device)
        loss = -(advantage * log_probs).mean()
        return rewards, base, loss


def scst_record(cfg) -> dict[str, Any]:
    """The SCST settings the zoo entry's config.json and card record."""
    s = cfg.scst
    return {"after_epoch": s.after_epoch, "epochs": cfg.training.epochs - s.after_epoch,
            "steps_per_epoch": s.steps_per_epoch, "baseline": s.baseline, "samples_per_image": s.samples_per_image,
            "temperature": s.temperature, "top_k": s.top_k, "learning_rate": s.learning_rate,
            "reward": "CIDEr-D (pycocoevalcap's formula), document frequencies from the training captions"}
