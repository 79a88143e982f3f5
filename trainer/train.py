"""Train a prefix captioner from one YAML experiment config and write the best epoch into the model zoo.

    python -m trainer.train trainer/configs/NAME.yaml [key.sub=value ...] [--resume]

One run = one folder `<output_dir>/<name>/` holding the resolved config, TensorBoard logs, the training
state for `--resume` (written every `save_every_epochs`, and on Ctrl-C), and the best epoch as a zoo
entry; at the end that entry is scored on the test split and saved into `<zoo_dir>/<name>/` with its
metrics, curves, experiment config and model card (`captioning.zoo.save_entry`, one atomic save).

Devices and precision come from Accelerate: CPU, one GPU, or several processes
(`accelerate launch --multi_gpu --num_processes N -m trainer.train ...`, or `torchrun --nproc_per_node N`
on CPU; what is sharded and what only the main process does: `trainer/distributed.py`); bf16/fp16 mixed
precision, gradient accumulation and clipping. With a frozen encoder, image
embeddings are computed once per unique image and cached on disk as safetensors (`trainer/cache.py`).
An encoder that reads pixels can get augmented training images (`data.augment`, `trainer/augment.py`), and
each part its own learning rate (`training.lr`, `trainer/optim.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from captioning.config import ConfigValueError
from captioning.generation import get_settings
from captioning.model import PrefixCaptioner
from captioning.zoo import ZooModel, save_entry

from .augment import active_augmentations, cache_problem, flip_problem, make_augmenter
from .config import ConfigError, ExperimentConfig, config_to_dict, load_config, save_config
from .data import CaptionDataset, DatasetError, Split, SubsetSampler, drop_unreadable, load_dataset, make_collate
from .distributed import RankLog, caption_metrics, mean_over_processes, shared_embeddings, validation_loss
from .errors import TrainingError
from .optim import parameter_groups, part_lrs
from .scoring import caption_split, evaluate_split, score_captions

STATE_DIR = "state"
BEST_DIR = "best"
TRAINER_STATE = "trainer_state.json"
LOWER_IS_BETTER = {"val_loss"}


# ----------------------------------------------------------------------------------------------------------
# Model, tokenizer and preprocessing from the config


# The config key a library loading error belongs to, by the part that failed (captioning.hub).
PART_KEYS = {"vision encoder": "model.encoder", "image processor": "model.encoder", "decoder": "model.decoder"}


def _model_error(error: ConfigValueError, key: str) -> TrainingError:
    """The library's problems as config mistakes, one line each: field-keyed ones ("mapper.num_heads: ...")
    under model., the others (a folder, a hub name) under ``key``."""
    from captioning.config import CaptionerConfig

    fields = {f.name for f in dataclasses.fields(CaptionerConfig)}
    key = PART_KEYS.get(getattr(error, "what", ""), key)
    lines = []
    for problem in error.problems:
        head = problem.split(":", 1)[0].split(".", 1)[0]
        lines.append(f"model.{problem}" if head in fields and ":" in problem else f"{key}: {problem}")
    if getattr(error, "offline", False):
        lines[-1] += f" ({key}=/path/to/folder)"
    return TrainingError("\n".join(lines))


def build_components(cfg: ExperimentConfig):
    """(model, tokenizer, image_processor) as the config describes: pretrained parts, or from scratch.

    Runs before any data is read. Every user mistake here (a folder that does not exist, a hub model that is
    not available offline, heads that do not divide the width, more frozen blocks than the decoder has)
    raises TrainingError with one line per problem naming its config key.
    """
    from transformers import AutoConfig

    from captioning.config import CaptionerConfig
    from captioning.hub import load_pretrained
    from captioning.model import detect_encoder_type, vision_config_from_dict
    from captioning.preprocessing import load_image_processor, make_image_processor
    from captioning.tokenization import load_tokenizer

    m = cfg.model
    if m.init_from:  # weights, architecture, tokenizer and preprocessing from a zoo entry (trainer/init_from.py)
        from .init_from import load_parent

        parent = load_parent(cfg)
        return parent.model, parent.tokenizer, parent.image_processor
    mapper = dataclasses.replace(m.mapper)  # the model's own copy, not shared with the config
    try:
        tokenizer = load_tokenizer(m.tokenizer or m.decoder)
    except ConfigValueError as e:
        raise _model_error(e, "model.tokenizer" if m.tokenizer else "model.decoder") from None
    try:
        if not m.from_scratch:
            model = PrefixCaptioner.from_pretrained_parts(
                m.encoder, m.decoder, prefix_length=m.prefix_length, mapper=mapper, encoder_type=m.encoder_type,
                encoder_revision=m.encoder_revision, freeze_encoder=m.freeze_encoder, freeze_decoder=m.freeze_decoder)
            if len(tokenizer) > model.vocab_size:
                raise TrainingError(f"tokenizer {m.tokenizer or m.decoder!r} has {len(tokenizer)} tokens but decoder "
                                    f"{m.decoder!r} only {model.vocab_size} embeddings; use the decoder's own tokenizer")
            processor = load_pretrained(lambda: load_image_processor(m.encoder, m.image_size), m.encoder,
                                        "image processor")
            return model, tokenizer, processor

        encoder_config = dict(m.encoder_config or load_pretrained(
            lambda: AutoConfig.from_pretrained(m.encoder), m.encoder, "vision encoder").to_dict())
        encoder_type = m.encoder_type
        if encoder_type == "auto":
            encoder_type = detect_encoder_type(encoder_config.get("model_type", "clip_vision_model"))
        if m.image_size is not None:
            encoder_config["image_size"] = m.image_size  # the one image-size key sets the encoder's input size
        decoder_config = dict(m.decoder_config or load_pretrained(
            lambda: AutoConfig.from_pretrained(m.decoder), m.decoder, "decoder").to_dict())
        decoder_config.setdefault("model_type", "gpt2")
        # A decoder trained from scratch takes its vocabulary and special tokens from the tokenizer.
        decoder_config.update(vocab_size=len(tokenizer), bos_token_id=tokenizer.eos_token_id,
                              eos_token_id=tokenizer.eos_token_id)
        encoder_config.setdefault("model_type", "clip_vision_model" if encoder_type == "clip" else "vit")
        config = CaptionerConfig(encoder_type=encoder_type, encoder_config=encoder_config,
                                 decoder_config=decoder_config, prefix_length=m.prefix_length, mapper=mapper,
                                 encoder_name=f"{m.encoder} (from scratch)", decoder_name=f"{m.decoder} (from scratch)",
                                 freeze_encoder=m.freeze_encoder, freeze_decoder=m.freeze_decoder)
        model = PrefixCaptioner(config)
    except ConfigValueError as e:
        raise _model_error(e, "model.encoder") from None
    except ValueError as e:  # transformers' own checks of an architecture (e.g. the encoder's heads vs width)
        keys = "model.encoder_config / model.decoder_config" if m.from_scratch else "model"
        raise TrainingError(f"{keys}: cannot build the model: {e}") from None
    image_size = vision_config_from_dict(encoder_type, encoder_config).image_size
    return model, tokenizer, make_image_processor(encoder_type, image_size)


# ----------------------------------------------------------------------------------------------------------
# Run state


@dataclass
class RunState:
    epoch: int = 0                 # epochs fully done
    batches_done: int = 0          # micro-batches done in the current (unfinished) epoch
    global_step: int = 0           # optimiser steps
    best_score: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    stage: str = "cross-entropy"   # or "scst" (trainer/scst.py)
    parent: dict[str, Any] | None = None  # model.init_from's entry and weights hash, taken at the start

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunState:
        return cls(**json.loads(path.read_text()))


def is_better(metric: str, value: float, best: float | None, *, val_loss: float | None = None,
              best_val_loss: float | None = None) -> bool:
    """Whether an epoch scoring `value` on `metric` beats the best so far (`best`; None: there is none yet).

    A tie on a caption metric (seen: object accuracy 0 in two epochs of a short run) goes to the lower
    validation loss, so the epoch that learned more is kept rather than the first."""
    if best is None:
        return True
    if metric in LOWER_IS_BETTER:
        return value < best
    if math.isclose(value, best, rel_tol=1e-12, abs_tol=1e-12):
        return val_loss is not None and best_val_loss is not None and val_loss < best_val_loss
    return value > best


def _lr_scheduler(cfg: ExperimentConfig, optimizer, total_steps: int, num_processes: int = 1):
    from transformers import get_scheduler

    t = cfg.training
    warmup = t.warmup_steps if t.warmup_ratio is None else int(t.warmup_ratio * total_steps)
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[t.scheduler]
    # Accelerate steps a prepared scheduler once per process at every optimiser step: count in those units.
    return get_scheduler(name, optimizer, num_warmup_steps=warmup * num_processes,
                         num_training_steps=total_steps * num_processes)


# ----------------------------------------------------------------------------------------------------------
# Training


def train(cfg: ExperimentConfig, *, resume: bool = False, stop_after_steps: int | None = None,
          quiet: bool = False) -> dict[str, Any]:
    """Run the experiment; returns a summary (run dir, zoo entry, best epoch, final metrics).

    stop_after_steps simulates an interruption (Ctrl-C) after that many optimiser steps: state is saved
    and KeyboardInterrupt raised, exactly as a real Ctrl-C would; tests use it to check `--resume`.
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm import tqdm

    t = cfg.training
    if t.num_threads:
        torch.set_num_threads(t.num_threads)
    run_dir = Path(cfg.experiment.output_dir) / cfg.experiment.name
    state_path = run_dir / STATE_DIR
    if resume and not (state_path / TRAINER_STATE).is_file():
        raise TrainingError(f"--resume: no saved state in {state_path}; start the run without --resume")
    if not resume and (state_path / TRAINER_STATE).is_file():
        raise TrainingError(f"{run_dir} already holds a run; pass --resume to continue it, or choose another "
                            f"experiment.name / delete the folder to start over")
    set_seed(cfg.experiment.seed)
    # The whole model is built and checked before anything is written or any data is read: a config mistake
    # (a missing folder, an offline hub name, heads vs width, frozen blocks) stops here with one line.
    model, tokenizer, image_processor = build_components(cfg)
    accelerator = Accelerator(mixed_precision=t.mixed_precision, gradient_accumulation_steps=t.gradient_accumulation_steps,
                              cpu=t.device == "cpu")
    log = accelerator.print if not quiet else (lambda *a, **k: None)
    rank_log = RankLog.from_env(accelerator)
    run_dir.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        save_config(cfg, run_dir / "config.yaml")

    counts = model.parameter_counts()
    log(f"model: {counts['total']:,} parameters, {counts['trainable']:,} trainable, {counts['frozen']:,} frozen")

    d = cfg.data
    count_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 1  # + EOS
    read = lambda split: drop_unreadable(load_dataset(
        d.path, format=d.format, split=split, image_root=d.image_root, max_caption_tokens=d.max_caption_tokens,
        count_tokens=count_tokens, missing_images=d.missing_images))
    train_split, val_split = read(d.train_split), read(d.val_split)
    for split in (train_split, val_split):
        r = split.report
        log(f"data[{split.name}]: {r.images} images, {r.captions} captions, {r.missing_images} missing images, "
            f"{r.skipped_lines} skipped lines, {r.dropped_captions} dropped captions")
    if not train_split.records:
        raise TrainingError(f"the {d.train_split!r} split of {d.path} has no usable captions; check data.path "
                            f"(try `python -m trainer.data inspect {d.path}`)")
    augmenter = make_augmenter(d.augment, image_processor, cfg.experiment.seed)
    if augmenter and (problem := flip_problem(d.augment, [r.caption for r in train_split.records])):
        raise TrainingError(problem)

    embeddings = None
    if model.config.freeze_encoder and d.cache_embeddings:
        from .cache import EmbeddingCache

        cache = EmbeddingCache.for_model(d.cache_dir, model, image_processor)
        wanted = {**train_split.image_paths, **val_split.image_paths}
        started = time.perf_counter()
        embeddings = shared_embeddings(accelerator, cache, wanted, model, image_processor, batch_size=t.batch_size,
                                       progress=not quiet and sys.stderr.isatty())
        rank_log.write("cache", computed=cache.last_computed, reused=cache.last_reused, folder=cache.folder)
        log(f"embedding cache: {len(wanted)} images ({cache.last_computed} computed, {cache.last_reused} reused) "
            f"in {time.perf_counter() - started:.1f}s")

    if augmenter and embeddings is not None:
        raise TrainingError(cache_problem(active_augmentations(d.augment)))
    dataset = CaptionDataset(train_split, image_processor, embeddings, augment=augmenter)
    groups = None
    if d.captions_per_image != "all":
        by_image: dict[str, list[int]] = {}
        for index, record in enumerate(train_split.records):
            by_image.setdefault(record.image_id, []).append(index)
        groups = list(by_image.values())
    sampler = SubsetSampler(len(dataset), d.subset_ratio, seed=cfg.experiment.seed, groups=groups,
                            per_group=None if groups is None else d.captions_per_image)
    # The loader gets its own generator: starting an epoch then draws nothing from the global RNG, so a
    # resumed run's dropout masks continue exactly where the interrupted run's stopped.
    loader = DataLoader(dataset, batch_size=t.batch_size, sampler=sampler, num_workers=d.num_workers,
                        collate_fn=make_collate(tokenizer, d.max_caption_tokens),
                        generator=torch.Generator().manual_seed(cfg.experiment.seed))
    val_loader = DataLoader(CaptionDataset(val_split, image_processor, embeddings), batch_size=t.batch_size,
                            collate_fn=make_collate(tokenizer, d.max_caption_tokens))
    param_groups = parameter_groups(model, t.learning_rate, t.lr, t.weight_decay)  # biases and norms not decayed
    # in the model's order, not the groups': the gradient-norm clip sums over them, and a different order
    # changes its rounding (runs would no longer reproduce the committed demo entries bit for bit)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups, lr=t.learning_rate)
    # Each process takes every N-th batch (Accelerate pads the last round), so an epoch has 1/N the steps.
    batches = math.ceil(math.ceil(len(sampler) / t.batch_size) / accelerator.num_processes)
    steps_per_epoch = math.ceil(batches / t.gradient_accumulation_steps)
    ce_epochs = cfg.scst.after_epoch if cfg.scst.enabled else t.epochs  # the epochs after it are SCST's
    total_steps = t.max_steps or steps_per_epoch * ce_epochs
    scheduler = _lr_scheduler(cfg, optimizer, total_steps, accelerator.num_processes)
    scst = None
    if cfg.scst.enabled:
        from .scst import ScstStage

        scst = ScstStage(cfg, model, params, train_split, dataset, tokenizer, log=log)
    model, optimizer, loader, val_loader, scheduler, *scst_optimizer = accelerator.prepare(
        model, optimizer, loader, val_loader, scheduler, *([scst.optimizer] if scst else []))
    if scst:
        scst.bind(accelerator, model, scst_optimizer[0])

    state = RunState()
    if resume:
        accelerator.load_state(str(state_path))
        state = RunState.load(state_path / TRAINER_STATE)
        rank_log.step(state.global_step, accelerator.unwrap_model(model), event="resumed")
        log(f"resumed from {state_path}: epoch {state.epoch}, step {state.global_step} ({state.stage})")
    elif cfg.model.init_from:
        from .init_from import parent_record

        state.parent = parent_record(cfg.model.init_from)

    writer = None
    if accelerator.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tensorboard"))

    def save_state() -> None:
        accelerator.wait_for_everyone()
        accelerator.save_state(str(state_path))
        if accelerator.is_main_process:
            state.save(state_path / TRAINER_STATE)

    settings = get_settings(cfg.evaluation.preset, max_new_tokens=cfg.evaluation.max_new_tokens)
    unwrapped = accelerator.unwrap_model(model)
    best_dir = run_dir / BEST_DIR
    interrupted = False
    try:
        for epoch in range(state.epoch, t.epochs):
            if t.max_steps and state.global_step >= t.max_steps:
                break
            model.train()
            dataset.set_epoch(epoch)  # the epoch's augmentations (a no-op without data.augment)
            epoch_loader = accelerator.skip_first_batches(loader, state.batches_done) if state.batches_done else loader
            # Accelerate's loaders pass their own iteration count to the sampler as the epoch; pin it to the
            # real epoch so a resumed run (whose loaders start counting at 0) sees the same subset and order.
            for dl in {id(loader): loader, id(epoch_loader): epoch_loader}.values():
                dl.set_epoch(epoch) if hasattr(dl, "set_epoch") else sampler.set_epoch(epoch)
            rank_log.epoch_shard(epoch, loader)
            losses: list[float] = []
            if scst and scst.is_scst_epoch(epoch):  # this epoch's steps are SCST's (trainer/scst.py)
                state.stage = "scst"
                losses = scst.run_epoch(epoch, state, writer=writer, stop_after_steps=stop_after_steps)
                epoch_loader = ()
            tick, tick_step = time.perf_counter(), state.global_step  # the log's ms/step: steps timed since tick
            bar = tqdm(epoch_loader, desc=f"epoch {epoch + 1}/{t.epochs}", disable=quiet or not accelerator.is_main_process or not sys.stderr.isatty(),
                       leave=False, initial=state.batches_done, total=len(loader))
            for batch in bar:
                with accelerator.accumulate(model):
                    out = model(batch["input_ids"], batch["attention_mask"], pixel_values=batch.get("pixel_values"),
                                image_embeds=batch.get("image_embeds"))
                    loss = out["loss"]
                    if not torch.isfinite(loss):
                        raise TrainingError(
                            f"loss became {loss.item()} at step {state.global_step} (epoch {epoch + 1}); the run "
                            f"stopped. Lower training.learning_rate (now {t.learning_rate}), keep gradient clipping "
                            f"on, or use bf16 instead of fp16; resume from the last saved state with --resume")
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and t.max_grad_norm:
                        accelerator.clip_grad_norm_(params, t.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                state.batches_done += 1
                losses.append(loss.item())
                if accelerator.sync_gradients:
                    state.global_step += 1
                    rank_log.step(state.global_step, unwrapped)
                    if state.global_step % t.log_every == 0:
                        ms = (time.perf_counter() - tick) * 1000 / max(state.global_step - tick_step, 1)
                        tick, tick_step = time.perf_counter(), state.global_step
                        lr, lrs = scheduler.get_last_lr()[0], part_lrs(optimizer)
                        recent = sum(losses[-t.log_every * t.gradient_accumulation_steps:]) / len(losses[-t.log_every * t.gradient_accumulation_steps:])
                        shown = " ".join(f"{part} {value:.1e}" for part, value in lrs.items()) if lrs else f"{lr:.1e}"
                        log(f"step {state.global_step}/{total_steps} | loss {recent:.3f} | lr {shown} | {ms:.0f} ms/step")
                        if writer:
                            writer.add_scalar("train/loss", recent, state.global_step)
                            writer.add_scalar("train/lr", lr, state.global_step)
                            for part, value in lrs.items():
                                writer.add_scalar(f"train/lr_{part}", value, state.global_step)
                    if stop_after_steps is not None and state.global_step >= stop_after_steps:
                        raise KeyboardInterrupt
                    if t.max_steps and state.global_step >= t.max_steps:
                        break
            bar.close()
            # ---- end of epoch: validation
            val_metrics = validate(cfg, unwrapped, model, val_loader, val_split, tokenizer, image_processor,
                                   embeddings, settings, accelerator, rank_log=rank_log, epoch=epoch + 1)
            train_loss = mean_over_processes(accelerator, sum(losses) / max(len(losses), 1))
            record = {"epoch": epoch + 1, "step": state.global_step, "train_loss": train_loss, **val_metrics,
                      **(scst.epoch_record() if state.stage == "scst" else {})}
            state.history.append(record)
            log(f"epoch {epoch + 1}/{t.epochs} | train loss {train_loss:.3f} | " + " | ".join(
                f"{k} {v:.3f}" for k, v in val_metrics.items() if isinstance(v, float))
                + (f" | caption metrics on {val_metrics['metric_images']} of {len(val_split.image_paths)} val images"
                   if "metric_images" in val_metrics else ""))
            if writer:
                for k, v in record.items():
                    if isinstance(v, float):
                        writer.add_scalar(f"epoch/{k}", v, epoch + 1)
            criterion = cfg.evaluation.best_metric
            if criterion not in val_metrics:
                raise TrainingError(f"evaluation.best_metric {criterion!r} was not computed; "
                                    f"computed: {sorted(val_metrics)}")
            best_record = next((r for r in state.history if r["epoch"] == state.best_epoch), {})
            if is_better(criterion, val_metrics[criterion], state.best_score, val_loss=val_metrics.get("val_loss"),
                         best_val_loss=best_record.get("val_loss")):  # every rank: the metrics agree
                state.best_score, state.best_epoch = val_metrics[criterion], epoch + 1
                if accelerator.is_main_process:
                    save_entry(unwrapped, tokenizer, image_processor, best_dir, overwrite=True,
                               metrics={"epoch": epoch + 1, **val_metrics})
            rank_log.write("epoch", epoch=epoch + 1, step=state.global_step, metrics=record,
                           best_epoch=state.best_epoch)
            state.epoch, state.batches_done = epoch + 1, 0
            if (epoch + 1) % t.save_every_epochs == 0 or epoch + 1 == t.epochs:
                save_state()
    except KeyboardInterrupt:
        interrupted = True
        log(f"interrupted at step {state.global_step}: saving state to {state_path} (continue with --resume)")
        save_state()
        raise
    finally:
        if writer:
            writer.close()
    if interrupted:
        return {}
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return {}
    return finish(cfg, run_dir, state, counts, train_split, val_split)


@torch.no_grad()
def validate(cfg, unwrapped, model, val_loader, val_split, tokenizer, image_processor, embeddings, settings,
             accelerator, *, rank_log: RankLog | None = None, epoch: int | None = None) -> dict[str, float]:
    """Validation loss (teacher-forced) and caption metrics from the engine's batched decoding; with several
    processes each captions its slice and the main one scores them all (`trainer.distributed`)."""
    model.eval()
    metrics: dict[str, float] = {"val_loss": validation_loss(model, val_loader, accelerator, cfg.training.batch_size)}
    wanted = [m for m in cfg.evaluation.metrics if m != "loss"]
    if wanted:
        e = cfg.evaluation
        zoo_model = ZooModel.from_model(cfg.experiment.name, unwrapped, tokenizer, image_processor)
        features = (lambda ids: torch.stack([embeddings[i] for i in ids])) if embeddings is not None else None

        def caption(split: Split) -> dict[str, str]:
            with accelerator.autocast():
                return caption_split(zoo_model, split, settings, batch_size=e.eval_batch_size, features=features)

        def score(captions: dict[str, str]) -> dict[str, float]:
            with accelerator.autocast():
                return score_captions(captions, val_split, metrics=wanted, bertscore_model=e.bertscore_model,
                                      bertscore_num_layers=e.bertscore_num_layers)

        scores = caption_metrics(accelerator, val_split, caption=caption, score=score, max_images=e.max_val_images,
                                 rank_log=rank_log, epoch=epoch)
        metrics.update({k: float(v) for k, v in scores.items() if k != "images"})
        if int(scores.get("images", 0)) != len(val_split.image_paths):
            # val_loss covers the whole split; the caption metrics only these (evaluation.max_val_images, or
            # images that could not be read): said in the epoch line and kept in the entry's metrics
            metrics["metric_images"] = int(scores.get("images", 0))
    model.train()
    return metrics


# ----------------------------------------------------------------------------------------------------------
# Writing the zoo entry


def finish(cfg: ExperimentConfig, run_dir: Path, state: RunState, counts: dict[str, int], train_split: Split,
           val_split: Split) -> dict[str, Any]:
    """Score the best epoch on the test split and write it into the zoo with metrics, curves and card."""
    from captioning.metrics import metrics_info
    from captioning.zoo import load_entry

    best_dir = run_dir / BEST_DIR
    if not best_dir.is_dir():
        raise TrainingError(f"no epoch finished, so there is no best checkpoint in {best_dir}")
    best = load_entry(best_dir)
    e, d = cfg.evaluation, cfg.data
    settings = get_settings(e.preset, max_new_tokens=e.max_new_tokens)
    best_record = next(r for r in state.history if r["epoch"] == state.best_epoch)
    metrics: dict[str, Any] = {"split": d.val_split, **{k: v for k, v in best_record.items()}}
    test_report = None
    if d.test_split:
        try:
            test_split = load_dataset(d.path, format=d.format, split=d.test_split, image_root=d.image_root,
                                      missing_images="skip")
        except DatasetError as err:
            print(f"note: no test split scored ({err})", file=sys.stderr)
        else:
            if test_split.image_paths:
                scores, _ = evaluate_split(best, test_split, settings=settings,
                                           metrics=[m for m in e.metrics if m != "loss"] or ["bleu"],
                                           bertscore_model=e.bertscore_model, bertscore_num_layers=e.bertscore_num_layers,
                                           batch_size=e.eval_batch_size)
                metrics = {"split": d.test_split, "epoch": state.best_epoch, **scores,
                           "val_loss": best_record["val_loss"], "validation": best_record}
                test_report = test_split.report.counts()
    metrics["decoding"] = settings.to_dict()
    metrics["data"] = str(d.path)  # the split above is of this dataset: the app labels the numbers with both
    metrics["info"] = metrics_info(bertscore_model=e.bertscore_model, bertscore_num_layers=e.bertscore_num_layers,
                                   use_bertscore="bertscore" in e.metrics, use_meteor="meteor" in e.metrics)
    metrics["history"] = state.history
    curves = run_dir / "curves.png"  # the run folder's copy; the entry's name for it is the zoo's business
    plot_curves(state.history, curves, title=cfg.experiment.name)
    training = {"data": d.path, "format": d.format, "splits": {"train": train_split.report.counts(),
                                                               "val": val_split.report.counts(), "test": test_report},
                "epochs": cfg.training.epochs, "best_epoch": state.best_epoch,
                "best_metric": e.best_metric, "parameters": counts, "config": config_to_dict(cfg)}
    if state.parent:
        training["init_from"] = state.parent
    if cfg.scst.enabled:
        from .scst import scst_record

        training["scst"] = scst_record(cfg)
    entry = Path(cfg.experiment.zoo_dir) / cfg.experiment.name
    save_entry(best.model, best.tokenizer, best.image_processor, entry, metrics=metrics, training=training,
               experiment=(run_dir / "config.yaml").read_text(), curves=curves, overwrite=True)
    return {"run_dir": str(run_dir), "entry": str(entry), "best_epoch": state.best_epoch, "metrics": metrics}


def plot_curves(history: list[dict[str, Any]], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    metric_keys = [k for k in ("bleu4", "cider", "bertscore_f1", "object_accuracy") if k in history[0]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ce = [r for r in history if r.get("stage") != "scst"]  # an SCST epoch's loss is a policy loss, not comparable
    scst = [r for r in history if r.get("stage") == "scst"]
    axes[0].plot([r["epoch"] for r in ce], [r["train_loss"] for r in ce], "o-", label="train loss")
    axes[0].plot(epochs, [r["val_loss"] for r in history], "o-", label="val loss")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    axes[0].set_title("loss")
    for k in metric_keys:
        axes[1].plot(epochs, [r[k] for r in history], "o-", label=k)
    if scst:
        axes[1].plot([r["epoch"] for r in scst], [r["train_reward"] for r in scst], "s--", label="SCST train reward")
    axes[1].set_xlabel("epoch")
    axes[1].set_title("validation metrics")
    if metric_keys:
        axes[1].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="experiment YAML, e.g. trainer/configs/coco_clip_gpt2.yaml")
    parser.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. training.epochs=3")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from its saved state")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        cfg = load_config(args.config, args.overrides)
        summary = train(cfg, resume=args.resume, quiet=args.quiet)
    except ConfigError as e:
        print(f"error: invalid config {args.config}:\n{e}", file=sys.stderr)
        return 2
    except (TrainingError, DatasetError, ConfigValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; state saved — continue with --resume", file=sys.stderr)
        return 130
    if summary:
        shown = {k: round(v, 4) for k, v in summary["metrics"].items() if isinstance(v, float)}
        print(f"wrote {summary['entry']} (best epoch {summary['best_epoch']}): {shown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
