"""``python train.py resume=RUN_DIR`` (or ``resume=last``): continue a run in its own directory.

Before Hydra starts, :func:`resume_argv` turns ``resume=...`` into the run's own command-line
overrides (from ``RUN_DIR/.hydra/overrides.yaml``), followed by the new ones, plus
``hydra.run.dir=RUN_DIR``; so ``python train.py resume=RUN_DIR trainer.max_steps=4000`` is the old
run's config with a longer budget. Inside the job, :func:`resume_checkpoint` picks
``RUN_DIR/checkpoints/last.ckpt`` (or ``ckpt_path=``; or, in a SLURM job that was requeued, the
``last.ckpt`` of its own run directory, which the job's command names again), checks that it can be read and that no
setting that cannot change on resume (model, schedule, data set) differs from the run's own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

from . import slurm
from .config import ConfigError

log = logging.getLogger(__name__)

# Top-level config blocks that a resumed run must share with the checkpoint it continues ...
FIXED_BLOCKS = ("model", "schedule", "dataset")
# ... except these keys (and any key named like a path): they change nothing the weights depend on.
MAY_CHANGE = ("model.sampling", "dataset.num_workers", "dataset.source.download")
PATH_KEYS = ("root", "dir", "data_dir", "path")
# Overrides of the earlier run that are not carried into the resumed one.
NOT_CARRIED = ("hydra.", "resume", "ckpt_path")


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``; ``~a`` -> ``a``."""
    return override.split("=", 1)[0].lstrip("+~")


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value


def resume_argv(argv: list[str], config_dir: str | Path, config_name: str = "train") -> list[str]:
    """train.py's ``sys.argv`` with ``resume=...`` resolved (unchanged without it); see the module doc."""
    args = argv[1:]
    values = [a.split("=", 1)[1] for a in args if override_key(a) == "resume"]
    if not values or values[-1] in ("null", ""):
        return argv
    if any(a in ("-m", "--multirun") for a in args):
        raise ConfigError("resume=... continues one run; it cannot be combined with -m/--multirun")
    others = [a for a in args if override_key(a) != "resume"]
    explicit_dirs = {unquote(a.split("=", 1)[1]) for a in others if override_key(a) == "hydra.run.dir"}
    run_dir = find_run(values[-1], [a for a in others if override_key(a) != "hydra.run.dir"], config_dir, config_name)
    if any(Path(d).resolve() != run_dir for d in explicit_dirs):
        raise ConfigError(
            f"resume={values[-1]} continues the run in {run_dir}; drop hydra.run.dir={sorted(explicit_dirs)[0]}"
        )
    merged: dict[str, str] = {}
    for override in [*stored_overrides(run_dir), *others]:
        key = override_key(override)
        if not key.startswith(NOT_CARRIED) and key not in NOT_CARRIED:
            merged.pop(key, None)
            merged[key] = override
    flags = [a for a in others if a.startswith("-")]
    return [
        argv[0],
        *flags,
        *(v for v in merged.values() if not v.startswith("-")),
        f"resume={run_dir}",
        f"hydra.run.dir={run_dir}",
    ]


def stored_overrides(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    return [str(o) for o in (yaml.safe_load(path.read_text()) or [])]


def find_run(value: str, overrides: list[str], config_dir: str | Path, config_name: str) -> Path:
    """The run directory ``resume=value`` names: a directory, or ``last``."""
    if value != "last":
        run_dir = Path(value).expanduser().resolve()
        if run_dir.is_file() and run_dir.parent.name == "checkpoints":
            raise ConfigError(
                f"resume={value} is a checkpoint file: pass its run directory, resume={run_dir.parent.parent} "
                f"(or ckpt_path={run_dir} hydra.run.dir={run_dir.parent.parent})"
            )
        if not (run_dir / "checkpoints" / "last.ckpt").is_file():
            raise ConfigError(
                f"resume={value}: {run_dir / 'checkpoints' / 'last.ckpt'} does not exist; pass the directory "
                "of a run written by train.py (it holds config.yaml and checkpoints/), or resume=last"
            )
        return run_dir
    folder = output_folder(overrides, config_dir, config_name)
    runs = sorted(p for p in folder.glob("*") if (p / "checkpoints" / "last.ckpt").is_file()) if folder.is_dir() else []
    if not runs:
        raise ConfigError(
            f"resume=last: no run with checkpoints/last.ckpt under {folder} (this config's output folder); "
            "pass the same model=/experiment= as the run, or resume=RUN_DIR"
        )
    return runs[-1].resolve()


def output_folder(overrides: list[str], config_dir: str | Path, config_name: str) -> Path:
    """The folder that holds this config's run directories: the parent of the run directory Hydra
    would create now (``${paths.log_dir}/${task_name}/${model.name}`` by default)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    cfg.hydra.runtime.cwd = os.getcwd()
    HydraConfig.instance().set_config(cfg)
    return Path(OmegaConf.select(cfg, "hydra.run.dir")).resolve().parent


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """The checkpoint this run continues (``resume=``: ``<run dir>/checkpoints/last.ckpt``;
    ``ckpt_path=``: that file), after checking it; None for a new run."""
    from .checkpoint import CONFIG_KEY, read_checkpoint

    output_dir = Path(cfg.paths.output_dir).resolve()
    if cfg.get("resume"):
        if Path(cfg.resume).resolve() != output_dir:
            raise ConfigError(
                f"resume={cfg.resume} must be run through train.py (which sets hydra.run.dir to it); "
                f"this run's directory is {output_dir}"
            )
        path = output_dir / "checkpoints" / "last.ckpt"
        setting = "resume"
    elif cfg.get("ckpt_path"):
        path, setting = Path(cfg.ckpt_path), "ckpt_path"
    elif slurm.restart_count() > 0 and (output_dir / "checkpoints" / "last.ckpt").is_file():
        path, setting = output_dir / "checkpoints" / "last.ckpt", "resume"
        log.warning(
            "SLURM job %s was requeued (restart %d): resuming from %s", slurm.job_id(), slurm.restart_count(), path
        )
    else:
        return None
    checkpoint = read_checkpoint(path, setting=setting)
    if CONFIG_KEY in checkpoint:
        check_fixed_settings(checkpoint[CONFIG_KEY], OmegaConf.to_container(cfg, resolve=True), path)
    return path


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def may_change(key: str) -> bool:
    return key.startswith(MAY_CHANGE) or key.rsplit(".", 1)[-1] in PATH_KEYS


def check_fixed_settings(run_config: dict, new_config: dict, path: Path) -> None:
    """Refuse, by name, every model/schedule/dataset setting that differs from the checkpoint's run."""
    old = {k: v for b in FIXED_BLOCKS for k, v in flatten(run_config.get(b, {}), f"{b}.").items()}
    new = {k: v for b in FIXED_BLOCKS for k, v in flatten(new_config.get(b, {}), f"{b}.").items()}
    changed = [
        k
        for k in sorted(old.keys() | new.keys())
        if not may_change(k) and old.get(k, "<unset>") != new.get(k, "<unset>")
    ]
    if changed:
        listing = ", ".join(
            f"{k} (run: {old.get(k, '<unset>')!r}, now: {new.get(k, '<unset>')!r})" for k in changed[:8]
        )
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        raise ConfigError(
            f"cannot resume {path}: settings of the model, schedule and data set cannot change on resume, and these "
            f"differ from the run's own config: {listing}{more}. Drop them from the command line, or start a new run."
        )
