"""Helpers every layer shares: the canonical form of settings, their hash, and
finding a file a config names.

Like :mod:`popdl.errors`, this module imports nothing of popdl.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "canonicalize", "canonical_json", "config_hash", "text_hash", "find_file"]

#: The repository holding the package (``scripts/popdl`` is two levels below it).
ROOT = Path(__file__).resolve().parents[2]

#: Integral floats up to this magnitude are written as integers (exact in float64).
_EXACT_INT = 2**53


def canonicalize(obj: Any) -> Any:
    """A copy of ``obj`` with every mapping's keys in sorted order and every
    integral float (``1e5``, ``100000.0``) as the integer it equals.

    Every stage reads its settings in this form, so the order in which keys
    are written in a config file, and how numbers are spelt, never change what
    is computed: scenarios, parameters (drawn in sorted order, derived ones
    after what they refer to) and populations are all taken in sorted order.
    """
    if isinstance(obj, dict):
        return {k: canonicalize(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [canonicalize(v) for v in obj]
    if isinstance(obj, float) and obj.is_integer() and abs(obj) < _EXACT_INT:
        return int(obj)
    return obj


def canonical_json(obj: Any) -> str:
    """Compact JSON of :func:`canonicalize`'s form: equal meaning, equal text."""
    return json.dumps(canonicalize(obj), sort_keys=True, separators=(",", ":"), default=str)


def text_hash(text: str) -> str:
    """The first 16 hexadecimal digits of the SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_hash(obj: Any) -> str:
    """A short, stable hash of (part of) a configuration, for provenance:
    :func:`text_hash` of :func:`canonical_json`."""
    return text_hash(canonical_json(obj))


def find_file(name: str | Path, base_dirs=()) -> Path | None:
    """The first existing file among ``name`` (relative to the working
    directory, or absolute) and ``name`` inside each of ``base_dirs``; None
    when there is none."""
    candidates = [Path(name)] + [Path(d) / name for d in base_dirs]
    return next((c for c in candidates if c.is_file()), None)
