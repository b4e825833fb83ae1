"""The one error type for wrong settings, and the small checks that raise it.

Every message names the setting (as it is written on the command line) and says how to fix it.
Pure Python: the math layers (diffusion/, vae/, nn/) raise it without importing Hydra.
"""

from __future__ import annotations

from typing import Any, Iterable


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says how to fix it."""


def positive_int(value: Any, setting: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (1 by default), else a ConfigError naming ``setting``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{setting} must be {what}, got {value!r}")
    return value


def choice(value: Any, setting: str, allowed: Iterable) -> Any:
    """``value`` if it is one of ``allowed``, else a ConfigError listing them."""
    allowed = list(allowed)
    if value not in allowed:
        raise ConfigError(f"{setting}={value!r} is unknown; choose one of {allowed}")
    return value
