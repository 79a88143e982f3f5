"""Protects multi-process training, run for real: two gloo ranks on CPU launched by `torchrun` (two
launches: a one-epoch run, then `--resume` for a second epoch). The ranks' debug records
(`CAPTION_ZOO_RANK_LOG`, trainer/distributed.py) show that each rank trains on its own half of every epoch,
that their weights are identical after every step, that only rank 0 computes and writes the embedding
cache, that validation captioning is split and gives the one-process metrics of the same checkpoint, and
that one zoo entry, one set of logs and a resumable state are written. The helpers are also checked in one
process (validation loss, slices, a read-only cache)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from captioning.generation import get_settings
from captioning.tokenization import train_bpe_tokenizer
from captioning.zoo import list_zoo, load_entry
from helpers import free_port, tiny_captioner, tiny_run_overrides, tiny_shapes_data, write_images
from trainer.cache import EmbeddingCache
from trainer.data import CaptionDataset, load_dataset, make_collate
from trainer.distributed import RANK_LOG_ENV, process_slice, validation_loss
from trainer.scoring import evaluate_split

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "trainer" / "configs" / "demo_shapes_base.yaml"
MAX_TOKENS = 32  # long enough that no caption is dropped: dataset indices map to the COCO records one to one
BATCH = 8  # 32 training captions (one per image) = 4 batches = 2 per rank; 20 val captions: the last round is padded
VAL_IMAGES = 3  # captioned as 2 + 1: an uneven split


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    # a vocabulary of whole words: every caption is at most 28 tokens, so none is dropped
    return tiny_shapes_data(tmp_path_factory.mktemp("shapes"), n=40, vocab_size=600)


def overrides(shapes: Path, work: Path, **extra) -> list[str]:
    return tiny_run_overrides(shapes, work, "ddp", **{
        "data.max_caption_tokens": MAX_TOKENS, "model.freeze_encoder": "true", "training.epochs": 1,
        "training.batch_size": BATCH, "training.log_every": 1, "training.scheduler": "constant",
        "evaluation.metrics": "[loss, bleu, cider, object_accuracy]", "evaluation.max_new_tokens": 12,
        "evaluation.max_val_images": VAL_IMAGES, **extra})


def torchrun(args: list[str], ranklog: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", RANK_LOG_ENV: str(ranklog),
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(free_port()), "-m", "trainer.train", str(CONFIG), *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def events(ranklog: Path, event: str) -> dict[int, list[dict]]:
    """rank -> that rank's records of `event`, in order."""
    out = {}
    for rank in (0, 1):
        lines = (ranklog / f"rank-{rank}.jsonl").read_text().splitlines()
        out[rank] = [r for r in map(json.loads, lines) if r["event"] == event]
        assert all(r["rank"] == rank and r["world_size"] == 2 for r in out[rank])
    return out


def check_shard(ranklog: Path, epoch: int, train_ids: list[str]) -> list[int]:
    """Each rank's indices of `epoch`: disjoint, half each, together one caption of every training image."""
    shards = {rank: [r for r in records if r["epoch"] == epoch][-1]["batches"]
              for rank, records in events(ranklog, "shard").items()}
    flat = {rank: [i for batch in batches for i in batch] for rank, batches in shards.items()}
    assert all(len(batch) == BATCH for batches in shards.values() for batch in batches)
    assert len(flat[0]) == len(flat[1]) == len(set(train_ids)) // 2
    assert not set(flat[0]) & set(flat[1])  # not the whole data twice
    assert sorted(train_ids[i] for i in flat[0] + flat[1]) == sorted(set(train_ids))
    return flat[0] + flat[1]


@pytest.mark.slow
def test_two_process_run_shards_agrees_and_resumes(shapes, tmp_path):
    ranklog = tmp_path / "ranklog"
    first = torchrun(overrides(shapes, tmp_path), ranklog)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    run = tmp_path / "runs" / "ddp"
    assert "data[train]: 32 images, 160 captions" in first.stdout and "0 dropped captions" in first.stdout
    assert first.stdout.count("wrote ") == 1  # log lines come from the main process only

    train = load_dataset(shapes / "data", format="coco", split="train")
    train_ids = [r.image_id for r in train.records]
    epoch0 = check_shard(ranklog, 0, train_ids)

    # DDP: identical weights on both ranks after every step, and each step changes them
    steps = events(ranklog, "step")
    assert [r["step"] for r in steps[0]] == [r["step"] for r in steps[1]] == [1, 2]
    assert [r["weights"] for r in steps[0]] == [r["weights"] for r in steps[1]]
    assert steps[0][0]["weights"] != steps[0][1]["weights"]

    # the embedding cache: computed and written by rank 0 alone, read by rank 1 after it
    cache = events(ranklog, "cache")
    assert (cache[0][0]["computed"], cache[0][0]["reused"]) == (36, 0)  # 32 train + 4 val images
    assert (cache[1][0]["computed"], cache[1][0]["reused"]) == (0, 36)
    assert len(list((tmp_path / "cache").rglob("shard-*.safetensors"))) == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))

    # validation captioning: split over the ranks, every rank ends the epoch with the same metrics
    val = load_dataset(shapes / "data", format="coco", split="val")
    captioned = events(ranklog, "val")
    assert captioned[0][0]["image_ids"] + captioned[1][0]["image_ids"] == sorted(val.image_paths)[:VAL_IMAGES]
    assert len(captioned[0][0]["image_ids"]) == 2 and len(captioned[1][0]["image_ids"]) == 1
    ends = events(ranklog, "epoch")
    assert ends[0][0]["metrics"] == ends[1][0]["metrics"] and ends[0][0]["best_epoch"] == ends[1][0]["best_epoch"] == 1
    history = json.loads((run / "state" / "trainer_state.json").read_text())["history"]
    assert history == [ends[0][0]["metrics"]]

    # ... and they are the one-process metrics of the same checkpoint (greedy decoding is deterministic)
    best = load_entry(run / "best")
    reader = EmbeddingCache.for_model(tmp_path / "cache", best.model, best.image_processor)
    embeddings = reader.get_or_compute({**train.image_paths, **val.image_paths}, best.model, best.image_processor,
                                       write=False)
    scores, captions = evaluate_split(best, val, settings=get_settings("consistent", max_new_tokens=12),
                               metrics=["bleu", "cider", "object_accuracy"], max_images=VAL_IMAGES,
                               features=lambda ids: torch.stack([embeddings[i] for i in ids]))
    assert {**captioned[0][0]["captions"], **captioned[1][0]["captions"]} == captions
    for key in ("bleu1", "bleu4", "cider", "object_accuracy"):
        assert history[0][key] == pytest.approx(scores[key], abs=1e-9), key
    total = 0.0  # the one-process validation loss: each batch's mean loss weighted by its captions
    model = best.model.eval()
    with torch.no_grad():
        for batch in DataLoader(CaptionDataset(val, best.image_processor, embeddings), batch_size=BATCH,
                                collate_fn=make_collate(best.tokenizer, MAX_TOKENS)):
            out = model(batch["input_ids"], batch["attention_mask"], image_embeds=batch["image_embeds"])
            total += out["loss"].item() * len(batch["input_ids"])
    assert len(val.records) % BATCH  # rank 1's last batch is padding, which must not count
    assert history[0]["val_loss"] == pytest.approx(total / len(val.records), rel=1e-5)

    # one zoo entry and one set of logs, from the main process
    assert [r["name"] for r in list_zoo(tmp_path / "zoo")] == ["ddp"]
    assert len(list((run / "tensorboard").glob("events.*"))) == 1

    # --resume in two processes: both ranks load the saved weights and go on from step 2 to epoch 2
    second = torchrun(overrides(shapes, tmp_path, **{"training.epochs": 2}) + ["--resume"], ranklog)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-5000:]
    assert "resumed from" in second.stdout and "epoch 1, step 2" in second.stdout
    resumed = events(ranklog, "resumed")
    assert resumed[0] == [{**resumed[0][0], "step": 2, "weights": steps[0][1]["weights"]}]
    assert resumed[1][0]["weights"] == steps[0][1]["weights"]
    steps = events(ranklog, "step")
    assert [r["step"] for r in steps[0]] == [r["step"] for r in steps[1]] == [1, 2, 3, 4]
    assert [r["weights"] for r in steps[0]] == [r["weights"] for r in steps[1]]
    assert len({r["weights"] for r in steps[0]}) == 4
    assert check_shard(ranklog, 1, train_ids) != epoch0  # a fresh draw and order for the new epoch
    assert events(ranklog, "cache")[0][-1]["computed"] == 0
    state = json.loads((run / "state" / "trainer_state.json").read_text())
    assert (state["epoch"], state["global_step"]) == (2, 4)
    assert state["history"][0] == history[0] and state["history"][1]["step"] == 4
    assert [r["name"] for r in list_zoo(tmp_path / "zoo")] == ["ddp"]
    metrics = json.loads((tmp_path / "zoo" / "ddp" / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]


def test_process_slice_splits_in_order():
    class Acc:
        def __init__(self, rank, n):
            self.process_index, self.num_processes = rank, n

    for n, parts in ((3, 2), (7, 3), (1, 2), (0, 2), (5, 1)):
        items = list(range(n))
        slices = [process_slice(items, Acc(rank, parts)) for rank in range(parts)]
        assert [i for s in slices for i in s] == items
        assert max(map(len, slices)) - min(map(len, slices)) <= 1


def test_validation_loss_in_one_process_is_the_batch_weighted_mean(tmp_path):
    from accelerate import Accelerator

    tok = train_bpe_tokenizer(["a red circle", "a blue square and two green triangles"] * 10, vocab_size=280)
    model = tiny_captioner(vocab_size=len(tok))
    captions = ["a red circle", "a blue square", "two green triangles and a red circle", "a square"] * 3  # 12
    with torch.no_grad():
        embeds = model.encode_images(torch.randn(len(captions), 3, 32, 32))
    items = [{"caption": c, "image_embeds": e} for c, e in zip(captions, embeds)]
    loader = DataLoader(items, batch_size=5, collate_fn=make_collate(tok, 16))  # 5 + 5 + 2: uneven batches
    expected = sum(model(b["input_ids"], b["attention_mask"], image_embeds=b["image_embeds"])["loss"].item()
                   * len(b["input_ids"]) for b in loader) / len(captions)
    accelerator = Accelerator(cpu=True)
    assert validation_loss(model, accelerator.prepare(loader), accelerator, 5) == pytest.approx(expected, rel=1e-5)


def test_a_read_only_cache_refuses_to_compute(tmp_path):
    from captioning.preprocessing import make_image_processor

    model, processor = tiny_captioner(), make_image_processor("clip", 32)
    images = {p.stem: p for p in write_images(tmp_path / "img", 3)}
    cache = EmbeddingCache.for_model(tmp_path / "cache", model, processor)
    with pytest.raises(RuntimeError, match="lacks 3 of 3 images"):
        cache.get_or_compute(images, model, processor, write=False)
    assert not list((tmp_path / "cache").rglob("shard-*"))
    written = cache.get_or_compute(images, model, processor)
    read = cache.get_or_compute(images, model, processor, write=False)
    assert cache.last_computed == 0 and all(torch.equal(written[k], read[k]) for k in images)
