"""What every browser session of the page shares: the rating store, the loaded models and the folders.

One `AppContext` per app; everything that belongs to one browser session lives in a `gr.State` dict
(`page.session`), never in module globals.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from captioning.zoo import ModelCache
from rating.images import DEFAULT_DISPLAY_DIR
from rating.store import RatingStore

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ZOO = "model_zoo"
DEFAULT_DB = "ratings.sqlite"
DEFAULT_SAMPLES = ROOT / "sample_images"
DEFAULT_IMAGE_CACHE = DEFAULT_DISPLAY_DIR  # shared with `python -m rating import`
# How many zoo entries the app keeps loaded (least recently used goes first), from measured memory (issue 22,
# bench/generation.py's peak-RSS rows for 1 and 3 loaded models: real-size GPT-2 124M + MLP mapper decoding 16
# photos with beam 5): each model adds 712 MiB, its weights (603 MiB, once: the decoder runs on them without a
# packed copy) and its decoding's working memory; the shared CLIP encoder, torch and the app take about 1.2 GB.
# With 4.5 GiB for models, an 8 GB machine keeps room for image batches and the OS. Smaller entries (the demo
# zoo's) take far less, so the limit errs on the safe side for them.
MIB_PER_MODEL = 712
MODEL_MEMORY_BUDGET_MIB = 4608
MAX_MODELS_IN_MEMORY = max(1, MODEL_MEMORY_BUDGET_MIB // MIB_PER_MODEL)  # 6


@dataclass
class AppContext:
    """What every session shares: the rating store, the loaded models and the folders the app uses."""

    zoo_dir: Path
    store: RatingStore
    cache: ModelCache
    samples_dir: Path
    image_dir: Path  # display copies, one PNG per image content hash
    work_dir: Path  # scratch space for exports and imports (inside the system temp dir; removed at exit)
    admins: tuple[str, ...] = ()  # --admin users: they may see every blind set's names and results
    # --login: who is asking is the signed-in account of the rating database (`gr.Request.username`): it is the
    # rater, whatever a rater box or an API call names; admins are the accounts with role admin; only owners
    # and admins create sets (rating.access). Without it, raters type their names (honour-based).
    login: bool = False
    metrics: Any = None  # server.metrics.ServerMetrics when served with the REST API (`page.server.build_server`)

    def count_rating(self, source: str) -> None:
        """One more rating saved, in the server's metrics (page, api or pairwise)."""
        if self.metrics is not None:
            self.metrics.rating_saved(source)


def make_context(zoo_dir: str | os.PathLike, db_path: str | os.PathLike, *,
                 samples_dir: str | os.PathLike | None = None, image_dir: str | os.PathLike | None = None,
                 max_models: int = MAX_MODELS_IN_MEMORY, admins: tuple[str, ...] | list[str] = (),
                 login: bool = False) -> AppContext:
    """Open the store and prepare the folders; a missing zoo folder is allowed (the page explains it).
    `db_path`: a file or a postgresql:// URL (rating.database); an unusable one raises DatabaseError or
    ValueError, with a message that never shows a password."""
    image_dir = Path(image_dir) if image_dir is not None else DEFAULT_IMAGE_CACHE
    image_dir.mkdir(parents=True, exist_ok=True)
    store = RatingStore(db_path)
    work_dir = Path(tempfile.mkdtemp(prefix="caption-zoo-app-"))
    atexit.register(shutil.rmtree, work_dir, ignore_errors=True)  # Gradio serves its own copies of the files
    return AppContext(zoo_dir=Path(zoo_dir), store=store, cache=ModelCache(max_models=max_models),
                      samples_dir=Path(samples_dir) if samples_dir is not None else DEFAULT_SAMPLES,
                      image_dir=image_dir, work_dir=work_dir, admins=tuple(admins), login=login)
