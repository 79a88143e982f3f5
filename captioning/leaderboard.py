"""The zoo's leaderboard files and where each number shown for an entry comes from.

`python -m trainer.evaluate --zoo model_zoo --data D --split S` scores every entry on one split with one
decoding setting and writes ``leaderboard.json`` and ``leaderboard.md`` inside the zoo folder (the zoo listing
only looks at folders, so they are never taken for entries). Their numbers compare; an entry's own
metrics.json was measured on whatever split trained it, which `metrics_source` names so that the app never
shows numbers from different test sets as if they compared.

leaderboard.json::

    {"split": "test", "data": "...", "format": "coco", "images": 1000, "dataset_fingerprint": "...",
     "decoding": {...}, "metrics_info": {...}, "versions": {...}, "created": "...", "command": "...",
     "entries": [{"name", "family", "weights_hash", "dtype", "metrics": {...}, "seconds"}, ...]}   best first
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

LEADERBOARD_JSON = "leaderboard.json"
LEADERBOARD_MD = "leaderboard.md"
# Columns of the markdown table and the app, in this order, when present.
SHOWN_METRICS = ("cider", "bleu4", "meteor", "rouge_l", "bertscore_f1", "clipscore", "refclipscore", "object_accuracy")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def leaderboard_markdown(board: dict[str, Any]) -> str:
    """The leaderboard as a Markdown page: what it was measured on, then one row per entry, best first."""
    entries = board.get("entries") or []
    present = [m for m in SHOWN_METRICS if any(m in (e.get("metrics") or {}) for e in entries)]
    decoding = board.get("decoding") or {}
    lines = ["# Zoo leaderboard", "",
             f"Every entry scored on the **{board.get('split')}** split of `{board.get('data')}` "
             f"({board.get('images')} images, dataset fingerprint `{board.get('dataset_fingerprint')}`), decoding "
             f"`{decoding.get('preset', '')}` (`{json.dumps(decoding)}`). Only numbers with the same fingerprint "
             "and decoding compare.", "",
             "| rank | entry | family | dtype | " + " | ".join(present) + " |",
             "| --- | --- | --- | --- | " + " | ".join("---" for _ in present) + " |"]
    for rank, entry in enumerate(entries, start=1):
        metrics = entry.get("metrics") or {}
        cells = [f"{metrics[m]:.4f}" if _number(metrics.get(m)) else "" for m in present]
        lines.append(f"| {rank} | {entry['name']} | {entry.get('family', '')} | {entry.get('dtype', '')} | "
                     + " | ".join(cells) + " |")
    clip = board.get("clipscore")
    if clip:
        lines += ["", f"CLIPScore: {clip.get('model') or 'not computed'}"
                  + (f" ({clip['reason']})" if clip.get("reason") else "")]
    tokenizer = (board.get("metrics_info") or {}).get("tokenizer")
    if tokenizer:
        lines += ["", f"Tokenizer: {tokenizer}" + (" (the COCO caption evaluation's PTB tokenizer)" if tokenizer == "ptb"
                                                   else " (regex fallback without Java; not the COCO tokenization)")]
    versions = board.get("versions") or {}
    lines += ["", "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
              f"Made {board.get('created')} by `{board.get('command')}`."]
    return "\n".join(lines) + "\n"


def write_leaderboard(board: dict[str, Any], json_path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the leaderboard as JSON at `json_path` and as Markdown beside it (same stem, .md)."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    md_path = json_path.with_suffix(".md")
    for path, text in ((json_path, json.dumps(board, indent=2, default=str) + "\n"),
                       (md_path, leaderboard_markdown(board))):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return json_path, md_path


def read_leaderboard(zoo_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The zoo's leaderboard.json, or None when there is none or it cannot be read (then nothing is shown)."""
    path = Path(zoo_dir) / LEADERBOARD_JSON
    try:
        board = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return board if isinstance(board, dict) and isinstance(board.get("entries"), list) else None


def leaderboard_scope(board: dict[str, Any]) -> str:
    """Where the leaderboard's numbers come from, in a few words: "test split of D, 1000 images (abc123)"."""
    return (f"{board.get('split')} split of {board.get('data')}, {board.get('images')} images, "
            f"fingerprint {str(board.get('dataset_fingerprint'))[:8]}")


def metrics_source(metrics: dict[str, Any] | None, training_data: Any = None) -> str:
    """Where an entry's own metrics.json numbers come from: "test split of runs/demo/shapes-data", or what a
    converted entry's metrics say ("measured on PARENT (float32), before conversion"); "" without metrics."""
    if not metrics:
        return ""
    split = metrics.get("split")
    where = f"{split} split" if split else "unknown split"
    data = metrics.get("data") or training_data
    if isinstance(data, dict):
        data = data.get("path") or json.dumps(data)
    text = f"{where} of {data}" if data else where
    if metrics.get("measured_on"):
        text += f"; measured on {metrics['measured_on']}"
    return text
