"""What the trainer does differently when it runs as several processes (torchrun / `accelerate launch`).

    accelerate launch --multi_gpu --num_processes N -m trainer.train CONFIG     (N GPUs)
    torchrun --nproc_per_node N -m trainer.train CONFIG                         (N CPU processes, gloo)

Accelerate shards each epoch's training batches over the processes and DDP keeps the weights identical;
this module holds the rest (in one process each takes the one-process path):

- `shared_embeddings`: the embedding cache is filled by the main process alone; the others wait, then read it.
- `validation_loss`: the teacher-forced loss from per-caption sums gathered in dataset order, regrouped into
  the one-process batches, so every process count gives the one-process number.
- `caption_metrics`: validation captioning split into contiguous slices of the sorted image ids, the
  (image id, caption) pairs gathered, scored on the main process and the metrics broadcast, so every rank
  agrees on the best epoch.
- `RankLog`: with `CAPTION_ZOO_RANK_LOG=DIR` each rank appends JSON lines to `DIR/rank-<R>.jsonl`: its
  shard of every epoch (dataset indices), a hash of its weights after every optimiser step (and after
  `--resume` loads them), what it computed in the embedding cache, the validation captions it made and
  the metrics it ended each epoch with. Off by default; on, it costs one pass over the weights per step
  (meant for tests and debugging).

Only the main process writes: the resolved config, TensorBoard logs, log lines, the best-epoch checkpoint,
the training state's model/optimizer/scheduler files (each rank adds its own RNG state file), the test-split
scoring and the zoo entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RANK_LOG_ENV = "CAPTION_ZOO_RANK_LOG"


class RankLog:
    """Per-rank debug record (see the module docstring); every method does nothing when it is off."""

    def __init__(self, folder: str | os.PathLike | None, rank: int = 0, world_size: int = 1):
        self.path = Path(folder) / f"rank-{rank}.jsonl" if folder else None
        self.rank, self.world_size = rank, world_size
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls, accelerator) -> RankLog:
        return cls(os.environ.get(RANK_LOG_ENV) or None, accelerator.process_index, accelerator.num_processes)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def write(self, event: str, **fields: Any) -> None:
        if self.path:
            record = {"event": event, "rank": self.rank, "world_size": self.world_size, **fields}
            with self.path.open("a") as f:
                f.write(json.dumps(record, default=str) + "\n")

    def epoch_shard(self, epoch: int, loader) -> None:
        """The dataset indices this rank's (prepared) loader draws in `epoch`, batch by batch."""
        if self.path:
            self.write("shard", epoch=epoch, batches=[[int(i) for i in batch] for batch in loader.batch_sampler])

    def step(self, step: int, model: torch.nn.Module, event: str = "step") -> None:
        """The weights' hash after optimiser step `step` (event "resumed": just after --resume loaded them)."""
        if self.path:
            self.write(event, step=step, weights=weights_hash(model))


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer, by name: equal hashes mean equal weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def shared_embeddings(accelerator, cache, images: dict[str, Path], model, image_processor, *, batch_size: int,
                      progress: bool) -> dict[str, torch.Tensor]:
    """`cache.get_or_compute` run by the main process first; the others wait for it and then only read
    (they never write a shard, so no two processes write the cache)."""
    with accelerator.main_process_first():
        return cache.get_or_compute(images, model, image_processor, device=accelerator.device, batch_size=batch_size,
                                    progress=progress and accelerator.is_main_process,
                                    write=accelerator.is_main_process)


def caption_token_losses(logits: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per caption: (sum of token cross-entropies, token count), over the caption tokens only, as
    `PrefixCaptioner.forward` scores them (logits (B, K + T, V) of the prefix and caption positions)."""
    k = logits.shape[1] - input_ids.shape[1]
    predicted = logits[:, k - 1:-1].float()  # position K - 1 + t predicts caption token t
    losses = torch.nn.functional.cross_entropy(predicted.transpose(1, 2), input_ids, reduction="none")
    mask = attention_mask.to(losses.dtype)
    return (losses * mask).sum(1), mask.sum(1)


@torch.no_grad()
def validation_loss(model, loader, accelerator, batch_size: int) -> float:
    """The one-process validation loss (each batch's token-mean loss, weighted by its captions) from any
    number of processes: per-caption sums are gathered in dataset order (gather_for_metrics drops the
    padding of the last batches) and regrouped into the one-process batches of `batch_size`."""
    sums, counts = [], []
    for batch in loader:
        out = model(batch["input_ids"], batch["attention_mask"], pixel_values=batch.get("pixel_values"),
                    image_embeds=batch.get("image_embeds"))
        s, c = caption_token_losses(out["logits"], batch["input_ids"], batch["attention_mask"])
        s, c = accelerator.gather_for_metrics((s, c))
        sums.append(s.cpu())
        counts.append(c.cpu())
    if not sums:
        return float("nan")
    s, c = torch.cat(sums).double(), torch.cat(counts).double()
    total = sum((s[i:i + batch_size].sum() / c[i:i + batch_size].sum()).item() * len(s[i:i + batch_size])
                for i in range(0, len(s), batch_size))
    return total / len(s)


def process_slice(items: list, accelerator) -> list:
    """This process's contiguous part of `items` (sizes differ by at most one; later ranks may get none)."""
    n, parts, rank = len(items), accelerator.num_processes, accelerator.process_index
    start = rank * (n // parts) + min(rank, n % parts)
    return items[start:start + n // parts + (rank < n % parts)]


def caption_metrics(accelerator, split, *, caption: Callable[[Any], dict[str, str]],
                    score: Callable[[dict[str, str]], dict[str, float]], max_images: int | None,
                    rank_log: RankLog | None = None, epoch: int | None = None) -> dict[str, float]:
    """Caption this process's slice of the split's first `max_images` sorted image ids with `caption(sub_split)`,
    gather every (image id, caption) pair, `score` them on the main process and broadcast the result."""
    from accelerate.utils import broadcast_object_list, gather_object

    ids = sorted(split.image_paths)[: max_images or None]
    mine = process_slice(ids, accelerator)
    sub = dataclasses.replace(split, image_paths={i: split.image_paths[i] for i in mine})
    if accelerator.num_processes == 1:
        captions = caption(sub)
        if rank_log is not None:
            rank_log.write("val", epoch=epoch, image_ids=mine, captions=captions)
        return score(captions)
    # A failure travels with the results (as text: any exception can be sent), so no rank waits in a
    # collective for one that stopped; the failing rank raises its own exception, the others a RuntimeError.
    failure: BaseException | None = None
    try:
        captions = caption(sub)
    except Exception as error:
        captions, failure = {}, error
    if rank_log is not None:
        rank_log.write("val", epoch=epoch, image_ids=mine, captions=captions)
    gathered = gather_object([(accelerator.process_index, _describe(failure), sorted(captions.items()))])
    result: list[Any] = [None, next((f"rank {rank}: {text}" for rank, text, _ in gathered if text), None)]
    if accelerator.is_main_process and result[1] is None:
        try:
            result[0] = score(dict(pair for _, _, pairs in gathered for pair in pairs))
        except Exception as error:
            failure, result[1] = error, f"rank 0: {_describe(error)}"
    broadcast_object_list(result)
    if failure is not None:
        raise failure
    if result[1] is not None:
        raise RuntimeError(f"validation captioning failed on another process ({result[1]})")
    return result[0]


def _describe(error: BaseException | None) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"


def mean_over_processes(accelerator, value: float) -> float:
    """The mean of a per-process number (e.g. each rank's train loss) over the processes."""
    if accelerator.num_processes == 1:
        return value
    return accelerator.reduce(torch.tensor([value], device=accelerator.device, dtype=torch.float64), "mean").item()
