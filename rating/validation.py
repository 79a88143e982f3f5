"""The rating store's checks of what comes in (names, scores, pairwise outcomes, hashes, JSON settings) and its
clock: each raises ValueError saying what was received and what is allowed. Used by `rating.store` and by the
front ends that check a name before they touch the store."""

from __future__ import annotations

import json
import numbers
import re
from datetime import UTC, datetime
from typing import Any

MAX_NAME_LENGTH = 100
ALLOWED_SCORES = (0, 1, 2)
DEFAULT_SCALE = (0, 2)  # a set's score scale unless it declares another (rating.schema)
PAIRWISE_OUTCOMES = ("a", "b", "both_good", "both_bad")


def utc_now() -> str:
    """The current time as ISO-8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.123+00:00``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def validate_name(value: Any, what: str) -> str:
    """Return ``value`` stripped, or raise ValueError unless it is a 1..100 character string.

    ``what`` names the field in the message ("rater name", "evaluation set name", ...).
    """
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__} {value!r}")
    name = value.strip()
    if not name:
        raise ValueError(f"{what} must not be empty; type a name of 1 to {MAX_NAME_LENGTH} characters")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{what} is {len(name)} characters long; use at most {MAX_NAME_LENGTH} (got {name[:40]!r}...)"
        )
    if any(ord(ch) < 32 for ch in name):
        raise ValueError(f"{what} must not contain line breaks or control characters, got {name!r}")
    return name


def parse_scale(text: Any) -> tuple[int, int]:
    """A score scale written "1-4" (or a (low, high) pair) -> (1, 4); ValueError unless two integers low < high."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        low, high = text
    else:
        match = re.fullmatch(r"\s*(-?\d+)\s*-\s*(-?\d+)\s*", str(text))
        if not match:
            raise ValueError(f"a score scale is written LOW-HIGH with integers, e.g. 0-2 or 1-4; got {text!r}")
        low, high = int(match[1]), int(match[2])
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (low, high)) or not low < high:
        raise ValueError(f"a score scale needs two integers with LOW < HIGH, e.g. 0-2 or 1-4; got {text!r}")
    return low, high


def scale_text(scale: tuple[int, int]) -> str:
    """(1, 4) -> "1-4"; what a message calls the scale."""
    return f"{scale[0]}-{scale[1]}"


def validate_score(score: Any, scale: tuple[int, int] = DEFAULT_SCALE) -> int:
    """Return ``score`` as an int on ``scale`` (default 0-2: {0, 1, 2}), or raise ValueError("score must be 0, 1
    or 2, got 3"; "score must be an integer from 1 to 4, got 5" on another scale).

    Integers (Python or numpy), integral floats (``2.0``, as a number widget returns) and integer strings
    ("2", as a radio widget returns) are accepted; booleans are not, since True would silently count as 1.
    """
    low, high = scale
    value: Any = score
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        value = int(value.strip())
    elif isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        allowed = "0, 1 or 2" if (low, high) == DEFAULT_SCALE else f"an integer from {low} to {high}"
        raise ValueError(f"score must be {allowed}, got {score!r}")
    return value


def require_hash(value: Any, what: str = "image hash") -> str:
    """Return ``value`` stripped, or raise ValueError unless it is a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value.strip()


def to_json(value: dict | None, what: str) -> str:
    """A dict as the JSON text a row stores (None -> "{}"); ValueError naming `what` for anything else."""
    if value is None:
        return "{}"
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a dict, got {type(value).__name__}")
    try:
        # sort_keys: the same settings always give the same text, so rows compare equal
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except TypeError as error:
        raise ValueError(f"{what} must hold only JSON values (str, int, float, bool, None, lists, dicts): {error}") from None


def from_json(text: str | None) -> dict:
    """A stored JSON column back as a dict (NULL or empty -> {})."""
    return json.loads(text) if text else {}


def validate_outcome(outcome: Any) -> str:
    """Return ``outcome`` if it is one of PAIRWISE_OUTCOMES, else raise ValueError naming them."""
    if not isinstance(outcome, str) or outcome.strip() not in PAIRWISE_OUTCOMES:
        raise ValueError(f"pairwise outcome must be one of {list(PAIRWISE_OUTCOMES)}, got {outcome!r}")
    return outcome.strip()
