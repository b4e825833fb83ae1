"""Nested configs as flat keys: the one rule, for resume's fixed settings, the run browser's
comparison and the trackers' parameters."""

from __future__ import annotations

from typing import Any


def flatten(tree: Any, prefix: str = "", separator: str = ".") -> dict[str, Any]:
    """``{"a": {"b": 1, "c": {}}}`` -> ``{"a.b": 1, "a.c": {}}``: every leaf under its path; an empty
    mapping is a leaf of its own (a setting given as ``{}``)."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    if not tree and prefix:
        return {prefix: {}}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}{separator}{key}" if prefix else str(key), separator))
    return flat
