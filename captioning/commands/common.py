"""What the batch engines share: the columns they write, the user-mistake error and the model selection.

`cli.py` (the local engine and the command line) and `ray_engine.py` (the Ray engine it starts) both import
this module, so neither imports the other's internals.
"""

from __future__ import annotations

from pathlib import Path

# One row per (image, model, caption): the layout other CLIP-GPT2 batch scripts write, plus what made the caption.
CSV_COLUMNS = ["image_id", "model_name", "caption", "caption_index", "score", "preset", "strategy", "num_beams",
               "length_penalty", "temperature", "top_k", "top_p", "no_repeat_ngram_size", "max_new_tokens",
               "seed", "weights_hash", "quantize"]


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


def select_models(zoo: Path, wanted: str | None) -> list[Path]:
    """The zoo entries named in `wanted` (comma-separated; None: every loadable entry); UserError otherwise."""
    from ..zoo import ZooError, select_entries  # on first use: `python -m captioning --help` stays light

    try:
        return select_entries(zoo, wanted)
    except ZooError as e:
        raise UserError(str(e)) from None
