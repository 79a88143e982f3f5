"""Loading pretrained parts (encoder, decoder, tokenizer) by hub name or local folder, with errors that say
what to do.

transformers answers a missing folder, a hub name this machine cannot reach, or a folder without
config.json with OSError or ValueError messages about repo ids and internet connections. `load_pretrained`
runs the load and turns those into one `PretrainedLoadError` line: which folder does not exist, or that the
machine is offline (HF_HUB_OFFLINE) and how to point at a local folder instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .config import ConfigValueError

T = TypeVar("T")


class PretrainedLoadError(ConfigValueError):
    """A pretrained part could not be loaded; ``what`` names the part ("vision encoder", "decoder", "tokenizer",
    "image processor") and ``offline`` is True when a hub name needed the network."""

    def __init__(self, message: str, *, what: str = "", offline: bool = False):
        super().__init__(message)
        self.what = what
        self.offline = offline


def hub_offline() -> bool:
    """True when the Hugging Face hub is switched off for this process (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags)


def looks_like_path(name: str) -> bool:
    """A name that can only be a folder, never a hub id ("name" or "owner/name")."""
    return (os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") >= 2 or "\\" in name
            or name.endswith("/"))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_pretrained(load: Callable[[], T], name: str, what: str) -> T:
    """``load()`` (a from_pretrained call on ``name``), its transformers errors turned into PretrainedLoadError.

    what: the part, for the message ("vision encoder", "decoder", "tokenizer").
    """
    path = Path(name).expanduser()
    files = "the tokenizer files" if what == "tokenizer" else "config.json + weights"
    if not path.exists() and looks_like_path(name):
        raise PretrainedLoadError(f"folder {name!r} does not exist (looked from {Path.cwd()}); give the {what}'s "
                                  f"folder ({files}, as save_pretrained writes them) or a hub id", what=what)
    try:
        return load()
    except ConfigValueError:
        raise
    except (OSError, ValueError) as error:  # EnvironmentError is OSError; the hub's validation errors are ValueErrors
        if path.is_file():
            raise PretrainedLoadError(f"{name!r} is a file; give the {what}'s folder ({files})", what=what) from None
        if path.is_dir():
            raise PretrainedLoadError(f"cannot load the {what} from folder {name!r} ({_first_line(error)}); the folder "
                                      "needs the files save_pretrained writes (config.json + weights, or the "
                                      "tokenizer files)", what=what) from None
        unreachable = "couldn't connect" in str(error).lower() or "offline" in str(error).lower()
        if hub_offline() or unreachable:
            why = "HF_HUB_OFFLINE is set" if hub_offline() else "the Hugging Face hub cannot be reached"
            raise PretrainedLoadError(
                f"{name!r} is not a local folder, and this machine is offline ({why}) and has no cached copy of the "
                f"hub model; download it on a connected machine (or unset HF_HUB_OFFLINE), or point at a local "
                f"folder with {files}", what=what, offline=True) from None
        raise PretrainedLoadError(f"{name!r} is neither a local folder nor a {what} on the Hugging Face hub "
                                  f"({_first_line(error)})", what=what) from None
