"""The caption metrics, re-exported for the trainer's callers: they live in ``captioning/metrics.py``.

``from trainer.metrics import compute_metrics`` keeps working; new code imports ``captioning.metrics``
(the rating side may not import the trainer). Nothing is defined here.
"""
from captioning.metrics import (
    BLEU_SMOOTHING,
    BLEU_WEIGHTS,
    DEFAULT_BERTSCORE_MODEL,
    DEFAULT_BERTSCORE_NUM_LAYERS,
    bertscore,
    bertscore_info,
    bleu,
    caption_scores,
    cider,
    compute_metrics,
    default_bertscore_model_path,
    meteor,
    metrics_info,
    resolve_bertscore_model,
    scoring_text,
    tokenize,
)

__all__ = [
    "BLEU_SMOOTHING", "BLEU_WEIGHTS", "DEFAULT_BERTSCORE_MODEL", "DEFAULT_BERTSCORE_NUM_LAYERS", "bertscore",
    "bertscore_info", "bleu", "caption_scores", "cider", "compute_metrics", "default_bertscore_model_path",
    "meteor", "metrics_info", "resolve_bertscore_model", "scoring_text", "tokenize",
]
