"""The errors a user causes and can fix, the small checks that raise them, and the one-line report
the programs give of them.

Every message names the setting (as it is written on the command line) and says how to fix it.
Pure Python: the math layers (diffusion/, vae/, nn/) raise ConfigError without importing Hydra.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Callable, Iterable, TypeVar


class UserError(Exception):
    """Something the user can fix (a setting, a file, the disk): the programs print the message alone,
    as one line, and exit with ``exit_code``."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A setting is wrong; the message names it and says how to fix it."""

    exit_code = 2  # a bad setting, as command-line programs report a usage error


class DivergedError(UserError, RuntimeError):
    """The training loss became non-finite."""


class DiskFullError(UserError, OSError):
    """A file could not be written for want of space; the message says what is intact."""


Program = TypeVar("Program", bound=Callable)


def reports_user_errors(program: Program) -> Program:
    """Run ``program``; a UserError prints ``Error: <message>`` on stderr and exits with its code, no
    traceback. ``HYDRA_FULL_ERROR=1`` lets it through with its traceback."""

    @functools.wraps(program)
    def run(*args, **kwargs):
        try:
            return program(*args, **kwargs)
        except UserError as e:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"Error: {e}", file=sys.stderr, flush=True)
            raise SystemExit(e.exit_code) from None

    return run


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
