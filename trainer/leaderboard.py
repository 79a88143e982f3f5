"""Score every entry of a zoo on one split with one decoding setting and write the leaderboard
(`python -m trainer.evaluate --zoo model_zoo --data D --split S`; the file format is `captioning.leaderboard`).

Every number on it comes from the same images, references, decoding and metric versions, which the file
records (split, dataset path and fingerprint, decoding settings, metric settings, package versions), so its
rows compare; an entry that cannot be loaded is listed with its error instead of stopping the run.
"""

from __future__ import annotations

import platform
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from captioning.generation import GenerationSettings
from captioning.leaderboard import LEADERBOARD_JSON, SHOWN_METRICS, write_leaderboard
from captioning.zoo import ZooError, list_zoo, load_entry

from .captions_file import split_fingerprint
from .data import Split
from .scoring import add_clipscore, evaluate_split


def versions() -> dict[str, str | None]:
    """Python and the packages whose versions change the numbers."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in ("torch", "transformers", "tokenizers", "nltk", "pycocoevalcap", "bert-score"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def rank_key(metrics: dict[str, Any]) -> tuple:
    """Best first: by the first of SHOWN_METRICS (CIDEr-D before BLEU-4 ...) that the entry has."""
    return tuple(-float(metrics[m]) if isinstance(metrics.get(m), (int, float)) else float("inf")
                 for m in SHOWN_METRICS)


def score_zoo(zoo: str | Path, split: Split, *, data: str, settings: GenerationSettings, metrics: list[str],
              info: dict[str, Any], bertscore_model: str | None = None, batch_size: int = 32,
              max_images: int | None = None, clip_scorer: Any = None, clip: dict[str, Any] | None = None,
              out: str | Path | None = None, argv: list[str] | None = None, tokenizer: str = "auto") -> dict[str, Any]:
    """Evaluate each loadable entry of `zoo` on `split`, write the leaderboard (default ZOO/leaderboard.json
    and .md) and return it (with `written`: the two paths)."""
    zoo = Path(zoo)
    try:
        rows = list_zoo(zoo)
    except ZooError as e:
        raise ValueError(str(e)) from None
    if not rows:
        raise ValueError(f"zoo {zoo} has no entries to score")
    entries, images = [], 0
    for row in rows:
        if "error" in row:
            entries.append({"name": row["name"], "error": row["error"]})
            print(f"note: {row['name']} is not scored: {row['error']}", file=sys.stderr)
            continue
        started = time.perf_counter()
        try:
            model = load_entry(row["path"])
        except ZooError as e:
            entries.append({"name": row["name"], "error": str(e)})
            continue
        scores, captions = evaluate_split(model, split, settings=settings, metrics=metrics,
                                          bertscore_model=bertscore_model, batch_size=batch_size,
                                          max_images=max_images, tokenizer=tokenizer)
        if clip_scorer is not None:
            add_clipscore(scores, clip_scorer, split, captions)
        images = max(images, int(scores.get("images", 0)))
        entries.append({"name": model.name, "family": model.family, "weights_hash": model.weights_hash[:12],
                        "dtype": model.config.get("dtype", "float32"), "metrics": scores,
                        "seconds": round(time.perf_counter() - started, 1)})
        print(f"scored {model.name}", file=sys.stderr)
    scored = sorted((e for e in entries if "metrics" in e), key=lambda e: rank_key(e["metrics"]))
    board = {"split": split.name, "data": str(data), "images": images, "dataset_fingerprint": split_fingerprint(split),
             "max_images": max_images, "decoding": settings.to_dict(), "metrics_info": info,
             "clipscore": clip, "versions": versions(),
             "created": datetime.now(UTC).isoformat(timespec="seconds"),
             "command": "python -m trainer.evaluate " + " ".join(argv or []),
             "entries": scored + [e for e in entries if "error" in e]}
    written = write_leaderboard(board, Path(out) if out else zoo / LEADERBOARD_JSON)
    board["written"] = [str(p) for p in written]
    return board
