"""The Zoo view, and the one line per model that the model picker shows.

Every number the page shows about an entry comes from one rule (`ranked_score`): the zoo's leaderboard,
where every entry is scored on the same split, when the entry is on it; otherwise the entry's own metrics,
labelled with the split they were measured on. The picker and the Zoo table show the same number.
"""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from captioning.card import limitations
from captioning.leaderboard import leaderboard_scope, metrics_source, read_leaderboard
from captioning.zoo import KIND_TRANSFORMERS, ZooError, list_zoo
from page.context import AppContext
from page.session import esc

# The order in which metrics are preferred as "the score it is ranked by" and listed.
PREFERRED_METRICS = ["bleu4", "cider", "meteor", "rouge_l", "bertscore_f1", "object_accuracy", "val_loss"]
METRIC_NAMES = {"bleu4": "BLEU-4", "cider": "CIDEr-D", "meteor": "METEOR", "rouge_l": "ROUGE-L",
                "bertscore_f1": "BERTScore F1", "object_accuracy": "object accuracy", "val_loss": "val loss"}
ZOO_COLUMNS = ["model", "encoder → decoder", "K", "mapper", "parameters (M)", "size (MB)", "ranked by",
               "measured on", "other metrics", "status"]
# Shares of the page's width, so the table fits it and long cells wrap inside their column.
ZOO_WIDTHS = ["14%", "17%", "4%", "6%", "8%", "6%", "10%", "15%", "14%", "6%"]


def zoo_entries(ctx: AppContext) -> tuple[list[dict[str, Any]], str]:
    """The zoo listing and a message for the page when the zoo is missing, empty or has broken entries."""
    try:
        rows = list_zoo(ctx.zoo_dir)
    except ZooError as e:
        return [], f"⚠️ {e}. Captions made elsewhere can still be imported and rated (Import tab)."
    if not rows:
        return [], f"The zoo folder `{ctx.zoo_dir}` has no entries yet; add models with the trainer or import captions."
    broken = [r for r in rows if "error" in r]
    note = "".join(f"\n- ⚠️ `{r['name']}` cannot be used: {esc(r['error'])}" for r in broken)
    board = read_leaderboard(ctx.zoo_dir)
    if board:  # say what the comparable numbers were measured on, and that the others are not comparable
        note += (f"\n\n**Leaderboard**: every entry scored on the {esc(leaderboard_scope(board))}, decoding "
                 f"`{(board.get('decoding') or {}).get('preset', '')}` ({board.get('created')}); these numbers "
                 "compare. An entry not on it shows its own metrics from its training run's split (column "
                 "*measured on*), which compare only where that is the same.")
    else:
        note += ("\n\nEach entry's metrics come from its training run's split (column *measured on*); "
                 "`python -m trainer.evaluate --zoo DIR --data D --split S` scores all of them on one split.")
    return rows, (f"{len(rows) - len(broken)} usable model(s) in `{ctx.zoo_dir}`." + note)


def metrics_text(metrics: dict[str, Any] | None, limit: int = 5, skip: tuple[str, ...] = ()) -> str:
    """'bleu4 0.312, cider 1.020, ...': the numeric metrics, preferred ones first."""
    if not metrics:
        return ""
    keys = [k for k in PREFERRED_METRICS if k in metrics] + [k for k in metrics if k not in PREFERRED_METRICS]
    shown = [f"{k} {metrics[k]:.3f}" for k in keys if k not in skip and isinstance(metrics[k], (int, float))
             and not isinstance(metrics[k], bool)]
    return ", ".join(shown[:limit])


def ranked_score(row: dict[str, Any], board: dict[str, Any] | None) -> tuple[str, str, dict[str, Any]]:
    """(score, where it was measured, the metrics it comes from) for one zoo entry: its leaderboard row when
    the zoo has a leaderboard with it, else its own metrics; ("", "", {}) when it has neither."""
    on_board = {e["name"]: e.get("metrics") or {} for e in (board or {}).get("entries", []) if "metrics" in e}
    if row["name"] in on_board:
        metrics, where = on_board[row["name"]], "leaderboard: " + (board.get("split") or "?") + " split of " + str(
            board.get("data"))
    else:
        metrics = row.get("metrics") or {}
        where = "own: " + metrics_source(metrics, row.get("training_data")) if metrics else ""
    key = next((k for k in PREFERRED_METRICS if isinstance(metrics.get(k), (int, float))), None)
    if key is None:
        return "", where, metrics
    return f"{METRIC_NAMES[key]} {metrics[key]:.3f}", where, metrics


def _family(row: dict[str, Any]) -> str:
    """Our own entries by their parts ("clip → gpt2"); another maker's model by its family first ("BLIP")."""
    parts = f"{row.get('encoder') or '?'} → {row.get('decoder') or '?'}"
    return f"{row['family']} ({parts})" if row.get("kind") == KIND_TRANSFORMERS else parts


def _label(row: dict[str, Any]) -> str:
    """The entry's name, with the display name its sidecar gives, if any."""
    shown = row.get("display_name")
    return f"{shown} [{row['name']}]" if shown and shown != row["name"] else row["name"]


def _parameters(row: dict[str, Any]) -> str:
    return f"{row['parameters'] / 1e6:.1f}M params" if row.get("parameters") else ""


def zoo_table(rows: list[dict[str, Any]], leaderboard: dict[str, Any] | None = None) -> pd.DataFrame:
    """One line per zoo entry: family, size, the score it is ranked by and where, its other metrics."""
    records = []
    for r in rows:
        score, where, metrics = ranked_score(r, leaderboard)
        first = score.split(" ")[0] if score else ""
        skip = tuple(k for k, name in METRIC_NAMES.items() if name.split(" ")[0] == first)
        records.append({
            "model": _label(r), "encoder → decoder": _family(r),
            "K": "" if r.get("prefix_length") is None else r["prefix_length"], "mapper": r.get("mapper") or "",
            "parameters (M)": round(r["parameters"] / 1e6, 2) if r.get("parameters") else "",
            "size (MB)": r.get("size_mb", ""), "ranked by": score or ("not on the leaderboard" if leaderboard else ""),
            "measured on": where, "other metrics": metrics_text(metrics, limit=4, skip=skip),
            "status": "broken: " + r["error"] if "error" in r else "ok"})
    return pd.DataFrame.from_records(records, columns=ZOO_COLUMNS)


def model_choices(rows: list[dict[str, Any]], leaderboard: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Checkbox choices for the usable entries, one line each: name · family · size · the score it is ranked
    by and on which split. The value is the entry's name."""
    choices = []
    for r in rows:
        if "error" in r:
            continue
        score, where, _ = ranked_score(r, leaderboard)
        k = f", K={r['prefix_length']}" if r.get("prefix_length") is not None else ""
        parts = [_label(r), _family(r) + k, _parameters(r), f"{score} ({where})" if score else "no metrics"]
        choices.append((" · ".join(p for p in parts if p), r["name"]))
    return choices


def caveats(ctx: AppContext, names: list[str] | None) -> str:
    """What a person must know about the chosen models, each caveat said once (e.g. shapes-only demo models)."""
    rows = {r["name"]: r for r in zoo_entries(ctx)[0] if "error" not in r}
    said: dict[str, list[str]] = {}
    for name in names or []:
        text = limitations((rows.get(name) or {}).get("metrics"))
        if text:
            said.setdefault(text, []).append(name)
    return "\n\n".join(f"⚠️ **{esc(', '.join(who))}**: {esc(text)}" for text, who in said.items())


def model_cards(ctx: AppContext, names: list[str] | None) -> str:
    """Card summaries of the chosen models (base models, K, training data, metrics); loads them (cached)."""
    if not names:
        return "Choose one or more models; their cards appear here."
    usable = {r["name"]: r for r in zoo_entries(ctx)[0] if "error" not in r}
    lines = []
    for name in names:
        if name not in usable:
            lines.append(f"- ⚠️ **{esc(name)}** is not a usable entry of `{ctx.zoo_dir}`")
            continue
        try:
            entry = ctx.cache.get(ctx.zoo_dir / name)
            s = entry.summary()
        except ZooError as e:
            lines.append(f"- ⚠️ **{esc(name)}** cannot be loaded: {esc(str(e))}")
            continue
        k = f", K = {s['prefix_length']}" if s.get("prefix_length") is not None else ""
        training = s.get("training_data")
        training = training if isinstance(training, str) else (
            ", ".join(f"{a}: {b}" for a, b in training.items()) if isinstance(training, dict) else training)
        if s["kind"] == KIND_TRANSFORMERS:
            asked = entry.extra.get("prompt")
            lines.append(f"- **{esc(s['name'])}**: {esc(s['family'])} (`{s['encoder']}` → `{s['decoder']}`), "
                         f"another maker's model decoded by transformers' generate · asked with "
                         f"{esc(repr(asked)) if asked else 'the image alone'} · metrics: "
                         f"{metrics_text(s['metrics'], limit=6) or 'none recorded'} · weights `{s['weights_hash']}`")
            continue
        lines.append(
            f"- **{esc(s['name'])}**: encoder `{s['encoder']}` → decoder `{s['decoder']}` ({s['kind']}, mapper "
            f"{s['mapper']}{k}) · training data: {esc(str(training or 'not recorded'))} · metrics"
            f"{' (' + esc(metrics_source(s['metrics'], s.get('training_data'))) + ')' if s['metrics'] else ''}: "
            f"{metrics_text(s['metrics'], limit=6) or 'none recorded'} · weights `{s['weights_hash']}`")
    return "\n".join(lines)


def rescan_zoo(ctx: AppContext) -> tuple[Any, str, pd.DataFrame]:
    """The Rescan button: entries added (or fixed) since the app started become choosable."""
    rows, note = zoo_entries(ctx)
    board = read_leaderboard(ctx.zoo_dir)
    return gr.CheckboxGroup(choices=model_choices(rows, board)), note, zoo_table(rows, board)


def build_zoo_view(ctx: AppContext) -> dict[str, Any]:
    """The Zoo tab's components (inside an open gr.Tab)."""
    rows, note = zoo_entries(ctx)
    zoo_md = gr.Markdown(note, elem_id="zoo-note")
    zoo_df = gr.Dataframe(zoo_table(rows, read_leaderboard(ctx.zoo_dir)), interactive=False, wrap=True,
                          column_widths=ZOO_WIDTHS, elem_id="zoo-table", elem_classes="fit-table", label="Zoo entries")
    rescan = gr.Button("Rescan zoo folder", size="sm", elem_id="rescan")
    return {"zoo_md": zoo_md, "zoo_df": zoo_df, "rescan": rescan}
