"""The model card: the one writer of a zoo entry's README.md text, for entries saved by hand and by the trainer.

`model_card` takes the entry's config, its metrics and (optionally) the training record the trainer keeps in
config.json, and writes: what the model is (grid or mapping network), its parts and parameters, the data it
was trained on, where its training started (a parent zoo entry) and whether it was SCST-trained, the metrics table, its limitations (a shapes-only model says so), the decoding settings with notes on how the metrics are computed, the
command that reproduces it and the training curves. It knows no file names: `captioning.zoo` passes the
curves image's name and the reproduce command.
"""

from __future__ import annotations

import json
from typing import Any

from .config import CaptionerConfig, grid_side


def describe(config: CaptionerConfig) -> str:
    """One sentence: how the image reaches GPT-2 (grid of regions, or a mapping network)."""
    k = config.prefix_length
    if config.mapper.type == "grid":
        g = grid_side(k)
        how = (f"the encoder's patch tokens are pooled to a {g} x {g} grid of regions, each mapped to one of "
               f"K={k} prefix embeddings")
    else:
        how = f"the image embedding goes through a {config.mapper.type} mapping network into K={k} prefix embeddings"
    return how + " that GPT-2 reads before the caption."


def limitations(metrics: dict[str, Any] | None) -> str | None:
    """What a person choosing this model must know before trying it on their photos, or None.

    Object accuracy is computed only on the synthetic shapes dataset (images that carry their objects), so an
    entry scored with it was trained and tested on coloured shapes only.
    """
    if metrics and "object_accuracy" in metrics:
        return ("Trained only on synthetic images of coloured circles, squares and triangles on a plain background: "
                "it describes such shapes and nothing else. On a photograph it still answers with shapes, so use it "
                "to try the tool, not to caption real pictures.")
    return None


CPU_BEHAVIOUR = {
    "float16": ("On CPU its float16 weights are upcast to float32 (exactly) and it runs in float32: float16 "
                "arithmetic on CPU is slow and rounds every intermediate result."),
    "bfloat16": ("On CPU it runs in bfloat16 when the machine computes bfloat16 correctly (checked once at load "
                 "time against float32), otherwise in float32."),
}


def precision_lines(config: CaptionerConfig, training: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    """The card's Precision section of a half-precision entry (none for float32): stored dtype, parent, and
    what it runs in on GPU and CPU."""
    if config.dtype == "float32":
        return []
    lines = ["", "## Precision", "", f"Weights stored in {config.dtype} (about half the size of float32)."]
    parent = training.get("converted_from") or {}
    if parent:
        lines.append(f"Converted from `{parent.get('entry')}` ({parent.get('dtype')}) with "
                     f"`{parent.get('command')}`.")
    lines += [f"On a GPU it runs in {config.dtype}. {CPU_BEHAVIOUR[config.dtype]}"]
    if metrics.get("measured_on"):
        lines.append(f"The metrics above were measured on {metrics['measured_on']}; "
                     "`python -m trainer.evaluate --model` measures this entry.")
    return lines


def lineage(training: dict[str, Any]) -> list[str]:
    """The card's "Training" lines: the zoo entry the run started from and the SCST stage, when there were."""
    parent, scst = training.get("init_from"), training.get("scst")
    if not parent and not scst:
        return []
    lines = ["", "## Training", ""]
    if parent:
        lines.append(f"- Started from zoo entry `{parent['entry']}` (weights sha256 `{parent['weights_sha256'][:16]}`), "
                     "its weights and architecture")
    if scst:
        after = f"after {scst['after_epoch']} cross-entropy epochs" if scst["after_epoch"] else "with no cross-entropy epoch"
        lines.append(f"- SCST-trained (self-critical sequence training): {scst['epochs']} SCST epochs {after}; reward "
                     f"{scst['reward']}; baseline {scst['baseline']}; {scst['samples_per_image']} samples per image at "
                     f"temperature {scst['temperature']}; learning rate {scst['learning_rate']:g}")
    return lines


def _value(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def model_card(name: str, config: CaptionerConfig, metrics: dict[str, Any] | None = None,
               training: dict[str, Any] | None = None, *, parameters: dict[str, int] | None = None,
               reproduce: str | None = None, curves_file: str | None = None) -> str:
    """The card's Markdown.

    metrics: what metrics.json holds (numbers go in the table; `decoding` and `info` describe them).
    training: the trainer's record (`data`, `format`, `splits`, `best_epoch`, `best_metric`, `parameters`).
    parameters: counts (`total`, `trainable`, `frozen`) when training does not carry them.
    reproduce: the command that retrains the entry; curves_file: the curves image beside the card.
    """
    training = training or {}
    metrics = metrics or {}
    counts = training.get("parameters") or parameters
    made = "trained with" if training.get("best_epoch") is not None else "from"
    lines = [f"# {name}", "", f"A prefix image captioner (ClipCap-style) {made} Caption Zoo: {describe(config)}", "",
             "## Model", "",
             f"- Vision encoder: `{config.encoder_name}` ({config.encoder_type}), "
             f"{'frozen' if config.freeze_encoder else 'trained'}",
             f"- Decoder: `{config.decoder_name}`, frozen: {config.freeze_decoder}",
             f"- Mapper: {config.mapper.type}; prefix length K = {config.prefix_length}"]
    if counts:
        lines.append(f"- Parameters: {counts['total']:,} ({counts['trainable']:,} trainable, {counts['frozen']:,} frozen)")
    if training.get("data") is not None:
        fmt = f" (format {training['format']})" if training.get("format") else ""
        lines += ["", "## Data", "", f"- Dataset: `{training['data']}`{fmt}"]
        for split, report in (training.get("splits") or {}).items():
            if report:
                lines.append(f"- {split}: {report['images']} images, {report['captions']} captions")
    lines += lineage(training)
    shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if shown:
        title = "## Metrics"
        if training.get("best_epoch") is not None:
            title += (f" ({metrics.get('split')} split, best epoch {training['best_epoch']} by "
                      f"{training.get('best_metric')})")
        lines += ["", title, "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {_value(v)} |" for k, v in shown.items()]
    if "decoding" in metrics:
        info = metrics.get("info") or {}
        bertscore = json.dumps(info.get("bertscore", info.get("bertscore_model", "n/a")), default=str)
        lines += ["", "## Decoding", "", f"`{json.dumps(metrics['decoding'])}`", "",
                  "BLEU is nltk's corpus BLEU (smoothing method 1) over all references; CIDEr-D is pycocoevalcap's; "
                  f"BERTScore uses {bertscore} without baseline rescaling."]
    lines += precision_lines(config, training, metrics)
    limits = limitations(metrics)
    if limits:
        lines += ["", "## Limitations", "", limits]
    if reproduce:
        lines += ["", "## Reproduce", "", "From the repository root:", "", f"```\n{reproduce}\n```"]
    if curves_file:
        lines += ["", f"![training curves]({curves_file})"]
    return "\n".join(lines) + "\n"


def foreign_card(name: str, *, family: str, source: str, parameters: int, size_mb: float, licence: str | None,
                 prompt: str | None, ignored_defaults: dict[str, Any], test_caption: str,
                 original_card: str = "") -> str:
    """The card of another maker's model added to the zoo (`captioning.adding.add_model`): where it came from,
    its family, size and licence, how it is asked for a caption, and the maker's own card below."""
    lines = [f"# {name}", "",
             f"A {family} image-to-text model from `{source}`, added to the zoo as transformers saved it "
             "(it loads with plain transformers too). Caption Zoo decodes it with transformers' own `generate`.", "",
             "| | |", "|---|---|",
             f"| Family | {family} |",
             f"| Parameters | {parameters:,} |",
             f"| Size on disk | {size_mb:,.1f} MB |",
             f"| Licence | {licence or 'not stated in the source card: check it before use'} |",
             f"| Asked with | {json.dumps(prompt) if prompt else 'the image alone'} |",
             f"| Test caption when added | {json.dumps(test_caption)} (greedy, a drawn test image) |", ""]
    if ignored_defaults:
        shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(ignored_defaults.items()))
        lines += [f"Its checkpoint's own generation defaults ({shown}) are not used: the preset chosen in Caption "
                  "Zoo decides how it decodes, as for every other entry.", ""]
    lines += ["The prompt and a display name can be changed in `caption_zoo.json` next to this card.", ""]
    if original_card.strip():
        body = original_card.split("\n---", 1)[1].split("\n", 1)[-1] if original_card.startswith("---") else original_card
        lines += ["## The maker's model card", "", body.strip(), ""]
    return "\n".join(lines)
