"""Train the offline demo zoo: three small captioners on the synthetic shapes dataset and the SCST fine-tune of
one of them, then score them on a freshly drawn test set.

    python -m trainer.demo_zoo --zoo model_zoo          (what `make demo-zoo` runs)

Nothing is downloaded: the vision tower (CLIP architecture) and GPT-2 are small and trained from scratch,
and the tokenizer is a byte-level BPE trained on the training captions. The entries differ in one design
choice each, so the app's side-by-side comparison has something to reveal:

    shapes-clip-grid-k9       trainable encoder, grid mapper: patch tokens pooled to 3 x 3 regions, K=9
                              (expected best: each region of the image reaches GPT-2 in its own prefix
                              embedding, so which colour goes with which shape survives)
    shapes-clip-mlp-k4        trainable encoder, ClipCap's MLP mapper on the one pooled embedding, K=4
                              (single shapes right; with two or three shapes the pooled vector blends
                              them, and colours get paired with the wrong shapes)
    shapes-frozen-clip-k4     encoder frozen at random init, MLP mapper, K=4        (expected worst:
                              the image features are never taught what matters)

and a fourth, the self-critical (SCST) fine-tune of one of them, started from its committed weights
(`model.init_from`) once the parent is trained:

    shapes-clip-mlp-k4-scst   shapes-clip-mlp-k4 + a short SCST stage (reward CIDEr-D, trainer/scst.py),
                              encoder frozen so its embeddings are cached (expected: higher CIDEr-D than
                              its parent on the fresh test set, object accuracy not lower)

All three train at once, one process and one thread each (`--jobs 3`; on 2 cores the OS shares them, so
neither core idles while the slowest entry finishes); the SCST child starts as soon as its parent is done,
in the worker its parent freed, while the slowest entry still trains; on 2 cores the whole run takes about
16 minutes (16:22 measured for all four, within the 20-minute budget).
Training is seeded and single-threaded, so a rerun on the same machine reproduces the entries exactly;
another CPU's floating-point kernels round differently, and the object accuracies move by a point or two.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

BASE_CONFIG = Path(__file__).parent / "configs" / "demo_shapes_base.yaml"
ENTRIES = {  # in order of expected training time: with --jobs, the longest starts first
    "shapes-clip-grid-k9": ["model.mapper.type=grid", "model.prefix_length=9", "model.freeze_encoder=false"],
    "shapes-clip-mlp-k4": ["model.mapper.type=mlp", "model.prefix_length=4", "model.freeze_encoder=false"],
    "shapes-frozen-clip-k4": ["model.mapper.type=mlp", "model.prefix_length=4", "model.freeze_encoder=true"],
}
# SCST children: name -> (parent in ENTRIES, overrides on top of the parent's). They train after the parent.
SCST_ENTRIES = {
    "shapes-clip-mlp-k4-scst": ("shapes-clip-mlp-k4", [
        "model.freeze_encoder=true", "training.epochs=2", "training.log_every=20", "evaluation.best_metric=cider",
        "scst.enabled=true", "scst.after_epoch=0", "scst.steps_per_epoch=80", "scst.batch_size=32",
        "scst.samples_per_image=5", "scst.baseline=mean", "scst.learning_rate=5.0e-5"]),
}
TRAIN_SEED, FRESH_TEST_SEED = 0, 12345


def build_data(root: Path, n: int, image_size: int, vocab_size: int) -> Path:
    """The shapes dataset and a BPE tokenizer trained on its training captions."""
    from captioning.tokenization import train_bpe_tokenizer

    from .data import write_shapes_dataset

    write_shapes_dataset(root, n=n, seed=TRAIN_SEED, image_size=image_size)
    captions = [a["caption"] for a in json.loads((root / "annotations" / "captions_train.json").read_text())["annotations"]]
    train_bpe_tokenizer(captions, vocab_size=vocab_size).save_pretrained(root / "tokenizer")
    return root


def fresh_test(zoo: Path, names: list[str], root: Path, n: int, image_size: int) -> dict[str, dict[str, float]]:
    """Score each entry on a shapes test set drawn with another seed (never seen in training)."""
    from captioning.generation import get_settings
    from captioning.zoo import load_entry

    from .data import load_dataset, write_shapes_dataset
    from .scoring import evaluate_split

    write_shapes_dataset(root, n=n, seed=FRESH_TEST_SEED, image_size=image_size, splits=(0.0, 0.0, 1.0))
    split = load_dataset(root, format="coco", split="test")
    results = {}
    for name in names:
        scores, _ = evaluate_split(load_entry(zoo / name), split, settings=get_settings("consistent", max_new_tokens=32),
                                   metrics=["bleu", "cider", "bertscore", "object_accuracy"])
        results[name] = scores
    return results


def entry_overrides(name: str, work: Path, zoo: str | Path, image_size: int, extra: list[str] = ()) -> list[str]:
    """The overrides of BASE_CONFIG that make entry `name` (its data, tokenizer and cache under `work`)."""
    data = work / "shapes-data"
    if name in SCST_ENTRIES:
        parent, scst = SCST_ENTRIES[name]
        own = [*ENTRIES[parent], f"model.init_from={Path(zoo) / parent}", *scst]
    else:
        own = ENTRIES[name]
    return [f"experiment.name={name}", f"experiment.output_dir={work / 'runs'}", f"experiment.zoo_dir={zoo}",
            f"data.path={data}", f"model.tokenizer={data / 'tokenizer'}", f"data.cache_dir={work / 'cache'}",
            f"model.image_size={image_size}", *own, *extra]


def train_entry(name: str, overrides: list[str], log_path: str | None) -> tuple[str, float]:
    """Train one entry (in a worker process when jobs > 1, its log written to log_path)."""
    import contextlib

    from .config import load_config
    from .train import train

    started = time.perf_counter()
    cfg = load_config(BASE_CONFIG, overrides)
    run_dir = Path(cfg.experiment.output_dir) / name
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    if log_path is None:
        train(cfg)
    else:
        with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            train(cfg)
    return name, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.demo_zoo", description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default="model_zoo")
    parser.add_argument("--work", default="runs/demo", help="dataset, tokenizer and run folders")
    parser.add_argument("--n", type=int, default=20000, help="shapes images to generate (80/10/10 split)")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--vocab-size", type=int, default=400)
    parser.add_argument("--fresh-test", type=int, default=1000, help="images in the freshly drawn test set")
    parser.add_argument("--only", help="comma-separated entry names to train (default: all)")
    parser.add_argument("--jobs", type=int, default=len(ENTRIES),
                        help="entries trained at once, one process and one thread each (default: all of them; on "
                             "2 cores the OS shares the cores among them, so no core idles while the last one trains)")
    parser.add_argument("overrides", nargs="*", help="extra key=value config overrides for every entry")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1; got {args.jobs}")
    work = Path(args.work)
    started = time.perf_counter()
    build_data(work / "shapes-data", args.n, args.image_size, args.vocab_size)
    every = [*ENTRIES, *SCST_ENTRIES]
    names = [n for n in every if not args.only or n in args.only.split(",")]
    unknown = sorted(set(args.only.split(",")) - set(every)) if args.only else []
    if unknown:
        parser.error(f"--only: unknown entries {unknown}; choose from {sorted(every)}")
    for name in names:  # a child trained without its parent starts from the parent already in the zoo
        parent = SCST_ENTRIES.get(name, (None,))[0]
        if parent and parent not in names and not (Path(args.zoo) / parent).is_dir():
            parser.error(f"--only: {name} starts from {Path(args.zoo) / parent}, which does not exist; "
                         f"add {parent} to --only")
    overrides = {name: entry_overrides(name, work, args.zoo, args.image_size, args.overrides) for name in names}
    # children wait for their parent (when it is trained in this run too)
    waiting = {name: SCST_ENTRIES[name][0] for name in names if name in SCST_ENTRIES and SCST_ENTRIES[name][0] in names}
    if args.jobs == 1:
        for name in names:
            print(f"trained {name} in {train_entry(name, overrides[name], None)[1]:.0f}s", file=sys.stderr)
    else:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        (work / "runs").mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            def submit(name: str):
                log_path = work / "runs" / f"{name}.log"
                print(f"training {name} (log: {log_path})", file=sys.stderr)
                return pool.submit(train_entry, name, overrides[name], str(log_path))

            # submitted in order: the longest runs start first
            running = {submit(name) for name in names if name not in waiting}
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    name, seconds = future.result()
                    print(f"trained {name} in {seconds:.0f}s", file=sys.stderr)
                    for child in [c for c, parent in waiting.items() if parent == name]:
                        del waiting[child]
                        running.add(submit(child))
    results = fresh_test(Path(args.zoo), names, work / "fresh-test", args.fresh_test, args.image_size)
    summary = {"fresh_test_seed": FRESH_TEST_SEED, "fresh_test_images": args.fresh_test, "results": results,
               "minutes": round((time.perf_counter() - started) / 60, 1)}
    Path(args.zoo).mkdir(parents=True, exist_ok=True)
    (Path(args.zoo) / "demo_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n{'entry':<26} {'object_acc':>10} {'bleu4':>7} {'cider':>7} {'bertscore_f1':>12}")
    for name, s in sorted(results.items(), key=lambda kv: -kv[1]["object_accuracy"]):
        print(f"{name:<26} {s['object_accuracy']:>10.3f} {s['bleu4']:>7.3f} {s['cider']:>7.3f} {s['bertscore_f1']:>12.3f}")
    print(f"\ntotal {summary['minutes']} min; results in {Path(args.zoo) / 'demo_results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
