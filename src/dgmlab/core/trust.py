"""What a config read from a file may build: dgmlab's own targets, and nothing else unless trusted.

A checkpoint's stored config, a run directory's stored overrides, an export's ``config.yaml`` and an
autoencoder checkpoint all reach ``hydra.utils.instantiate``, which imports and calls whatever each
``_target_`` names. ``torch.load(weights_only=True)`` protects the pickle, not the config, so every
config read from a file passes :func:`check_file_config` first: each ``_target_`` at any depth (in
mappings and in lists, after interpolations are resolved) must be one that dgmlab's shipped configs
name (:func:`allowed_targets`, read from ``dgmlab/conf``). Anything else is refused with one line
naming the file, the key and the target, before anything is built, whatever Hydra's own policy is.

Targets typed on the command line are the user's own and are not checked. A file the user vouches
for is built with ``trust_config=true`` (:func:`trusting`), which prints what it trusts.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

from .errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
OPT_IN = "trust_config=true"
_trusted = contextvars.ContextVar("dgmlab_trust_config", default=False)


@functools.cache
def allowed_targets() -> frozenset[str]:
    """Every ``_target_`` that a config shipped in ``dgmlab/conf`` names."""
    return frozenset(
        target for path in CONF_DIR.rglob("*.yaml") for _, target in targets(yaml.safe_load(path.read_text()))
    )


def targets(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``(key path, target)`` of every ``_target_`` in a tree of dicts and lists."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield where, value
            else:
                yield from targets(value, where)
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            yield from targets(value, f"{path}[{index}]")


def foreign_targets(config: Any) -> list[tuple[str, Any]]:
    """The ``(key path, target)`` pairs of ``config`` (resolved) that no shipped config names."""
    allowed = allowed_targets()
    return [
        (where, target) for where, target in targets(config) if not isinstance(target, str) or target not in allowed
    ]


def check_file_config(config: Any, source: str) -> Any:
    """``config`` read from ``source`` (e.g. ``ckpt='run/last.ckpt'``), resolved, if every target in it
    is dgmlab's own; otherwise a ConfigError naming the first foreign one, unless the user trusts
    the file (:func:`trusting`), which prints what it builds."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:  # as plain data with its interpolations resolved: what ``instantiate`` would see
        node = config if OmegaConf.is_config(config) else OmegaConf.create(config)
        plain = OmegaConf.to_container(node, resolve=True)
    except (OmegaConfBaseException, ValueError, TypeError) as e:
        raise ConfigError(f"{source} holds a config that cannot be read ({type(e).__name__}: {e}); nothing was built")
    foreign = foreign_targets(plain)
    if not foreign:
        return plain
    if _trusted.get():
        listing = ", ".join(f"{where}={target}" for where, target in foreign)
        print(f"{OPT_IN}: building what {source} names beyond dgmlab's own targets: {listing}", file=sys.stderr)
        return plain
    where, target = foreign[0]
    more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
    raise ConfigError(
        f"{source} names {where}={target!r}{more}, which is not one of dgmlab's own targets; nothing was built. "
        f"If you trust this file, pass {OPT_IN}"
    )


@contextlib.contextmanager
def trusting(trust: bool) -> Iterator[None]:
    """Within the block, configs read from files are built whatever they name (``trust_config=true``)."""
    token = _trusted.set(bool(trust))
    try:
        yield
    finally:
        _trusted.reset(token)
