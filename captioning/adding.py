"""Adding another maker's model to the zoo: `python -m captioning add HUB_ID_OR_FOLDER --zoo DIR`.

A folder (what `save_pretrained` wrote) is copied; a hub id is fetched with huggingface_hub, safetensors and
the processor's files only (never a pickle, never code). Either way the copy is made beside the zoo's other
entries under a hidden name, loaded as an entry (`captioning.zoo.load_entry`), made to caption one test image,
given a model card (`captioning.card.foreign_card`: family, parameters, size, licence from the hub's card, the
prompt, the caption it gave) and the sidecar when a prompt or display name was chosen, and only then moved
into place: a model that cannot caption never becomes an entry.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .card import foreign_card
from .generation import get_settings
from .zoo import (
    CARD_FILE,
    CONFIG_FILE,
    SIDECAR_FILE,
    ZooError,
    count_parameters,
    entry_kind,
    is_entry,
    list_zoo,
    load_entry,
)

# What a hub fetch takes: configs, safetensors weights (and their index), tokenizer and processor files, the
# chat template and the model card. Pickled weights (*.bin, *.pt) and code (*.py) are never fetched.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja", "README.md"]
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
TEST_TOKENS = 20


@dataclass
class Added:
    """What `add_model` made: the entry's folder, its family and the caption it gave the test image."""

    path: Path
    family: str
    caption: str
    parameters: int
    size_mb: float


def hub_licence(card_text: str) -> str | None:
    """The `license:` of a hub model card's YAML front matter, or None."""
    match = re.match(r"^---\s*\n(.*?)\n---", card_text, re.S)
    if not match:
        return None
    import yaml

    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return None
    licence = meta.get("license") if isinstance(meta, dict) else None
    return str(licence) if licence else None


def fetch_from_hub(repo_id: str, dest: Path) -> None:
    """Download `repo_id`'s safetensors and processor files into `dest` (from the local cache when offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    try:
        snapshot_download(repo_id, local_dir=dest, allow_patterns=HUB_PATTERNS)
    except LocalEntryNotFoundError:
        how = (f"on a machine with internet: `hf download {repo_id} --include "
               f"{' '.join(repr(p) for p in HUB_PATTERNS)} --local-dir FOLDER`, copy FOLDER here and run "
               "`python -m captioning add FOLDER --zoo ...`")
        where = "this machine is offline (HF_HUB_OFFLINE=1)" if offline else "the hub could not be reached"
        raise ZooError(f"{repo_id} is not in the local Hugging Face cache and {where}; fetch it {how}") from None
    except (RepositoryNotFoundError, HFValidationError) as e:
        raise ZooError(f"{repo_id!r} is neither a folder here nor a model on the hub ({type(e).__name__})") from None
    if not any(dest.glob("*.safetensors")):
        raise ZooError(f"{repo_id} has no safetensors weights on the hub (only pickled ones, which the zoo never "
                       "loads); convert it where you trust the files, then add the folder")


def test_image() -> Image.Image:
    """A small picture to caption before an entry is kept (drawn here: no file needed)."""
    from PIL import ImageDraw

    image = Image.new("RGB", (224, 224), (235, 235, 225))
    draw = ImageDraw.Draw(image)
    draw.ellipse((30, 40, 110, 120), fill=(200, 30, 30))
    draw.rectangle((120, 110, 200, 190), fill=(30, 60, 200))
    return image


def add_model(source: str, zoo: str | os.PathLike, *, name: str | None = None, prompt: str | None = None,
              display_name: str | None = None) -> Added:
    """Put the model at `source` (a folder, or a hub id) into `zoo` as entry `name`; see the module doc.
    ZooError with what to do for every problem; nothing is left behind in the zoo when it fails."""
    zoo = Path(zoo)
    folder = Path(source)
    from_hub = not folder.exists()
    name = name or (source.rstrip("/").split("/")[-1] if from_hub else folder.resolve().name)
    if not NAME_PATTERN.match(name):
        raise ZooError(f"{name!r} cannot name an entry: use letters, digits, '.', '_' and '-' (pass --name)")
    target = zoo / name
    if target.exists():
        raise ZooError(f"{target} already exists; choose another --name or remove that entry first")
    if not from_hub and not (folder / CONFIG_FILE).is_file():
        raise ZooError(f"{folder} has no {CONFIG_FILE}; pass the folder that save_pretrained wrote, or a hub id")
    zoo.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.adding.", dir=zoo))
    try:
        if from_hub:
            fetch_from_hub(source, staging)
        else:
            shutil.copytree(folder, staging, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt", "*.py", ".*"))
        entry_kind(json.loads((staging / CONFIG_FILE).read_text()), source)  # refuses before anything loads
        sidecar = {k: v for k, v in {"prompt": prompt, "display_name": display_name}.items() if v}
        if sidecar:
            (staging / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n")
        entry = load_entry(staging)
        from .pipeline import caption_images

        try:
            result = caption_images([entry], [test_image()], settings=get_settings("greedy", max_new_tokens=TEST_TOKENS))
        except Exception as e:  # any failure here means the model cannot be used as an entry
            raise ZooError(f"{source} loaded but could not caption a test image ({type(e).__name__}: {e}); "
                           "it was not added") from None
        caption = result[0].caption
        original = (staging / CARD_FILE).read_text() if (staging / CARD_FILE).is_file() else ""
        size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
        parameters = count_parameters(staging)
        card = foreign_card(name, family=entry.family, source=source, parameters=parameters, size_mb=size / 1e6,
                            licence=hub_licence(original), prompt=entry.extra.get("prompt"),
                            ignored_defaults=entry.extra.get("ignored_generation_defaults") or {},
                            test_caption=caption, original_card=original)
        (staging / CARD_FILE).write_text(card)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not is_entry(target) or "error" in next(r for r in list_zoo(zoo) if r["name"] == name):
        raise ZooError(f"{target} was added but does not list as an entry; remove it and report this")
    return Added(path=target, family=entry.family, caption=caption, parameters=parameters, size_mb=size / 1e6)
