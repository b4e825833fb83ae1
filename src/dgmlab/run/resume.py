"""``python train.py resume=RUN_DIR`` (or ``resume=last``): continue a run in its own directory.

Two steps, each in one place. Before Hydra starts, :func:`resume_argv` turns ``resume=...`` into the
run's own command-line overrides (``RUN_DIR/.hydra/overrides.yaml``) followed by the new ones, plus
``hydra.run.dir=RUN_DIR`` and ``ckpt_path=`` its ``last.ckpt``; so ``python train.py resume=RUN_DIR
trainer.max_steps=4000`` is the old run's config with a longer budget. Inside the job,
:func:`checkpoint_to_resume` decides the one checkpoint to continue from (``ckpt_path=``, or in a SLURM
job that was requeued the ``last.ckpt`` of its own run directory), reads it once, and refuses every
setting that cannot change on resume (the model, its schedule, the data set) and differs from the run's own.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from ..core.errors import ConfigError
from ..core.paths import shown_path
from ..core.trees import flatten
from ..core.trust import check_file_config, trusting
from . import slurm
from .layout import CONFIG_FILE, LAST_CHECKPOINT, OVERRIDES_FILE, RunDir

log = logging.getLogger(__name__)

# Top-level config blocks that a resumed run must share with the checkpoint it continues (a diffusion
# model's schedule is its model.schedule) ...
FIXED_BLOCKS = ("model", "dataset")
# ... and the world size: an exact resume continues the data order of each rank's shard.
FIXED_KEYS = ("trainer.devices", "trainer.num_nodes")
# ... except these keys (and any key named like a path): they change nothing the weights depend on.
MAY_CHANGE = ("model.sampling", "dataset.num_workers", "dataset.source.download")
PATH_KEYS = ("root", "dir", "data_dir", "path")
# Overrides of the earlier run that are not carried into the resumed one.
# trust_config: trusting a file is said anew each time, never stored in the file itself.
NOT_CARRIED = ("hydra.", "resume", "ckpt_path", "trust_config")


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``; ``~a`` -> ``a``."""
    return override.split("=", 1)[0].lstrip("+~")


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" else value


def resume_argv(argv: list[str], config_dir: str | Path, config_name: str = "train") -> list[str]:
    """train.py's ``sys.argv`` with ``resume=...`` resolved (unchanged without it); see the module doc."""
    args = argv[1:]
    value = typed(args, "resume")
    if value in (None, "null", ""):
        return argv
    if any(a in ("-m", "--multirun") for a in args):
        raise ConfigError("resume=... continues one run; it cannot be combined with -m/--multirun")
    others = [a for a in args if override_key(a) != "resume"]
    explicit_dirs = {unquote(a.split("=", 1)[1]) for a in others if override_key(a) == "hydra.run.dir"}
    run_dir = find_run(value, [a for a in others if override_key(a) != "hydra.run.dir"], config_dir, config_name)
    if any(Path(d).resolve() != run_dir for d in explicit_dirs):
        raise ConfigError(
            f"resume={value} continues the run in {run_dir}; drop hydra.run.dir={sorted(explicit_dirs)[0]}"
        )
    run = RunDir.at(run_dir)
    stored = [o for o in run.stored_overrides() if carried(override_key(o))]
    with trusting((typed(others, "trust_config") or "").strip().lower() in ("true", "1", "yes")):
        check_stored_overrides(run, stored, config_dir, config_name)
    both = [*stored, *(a for a in others if not a.startswith("-"))]  # the flags go first
    last = {override_key(o): i for i, o in enumerate(both)}  # a key's last override wins, in its place
    merged = [o for i, o in enumerate(both) if last[override_key(o)] == i and carried(override_key(o))]
    return [
        argv[0],
        *(a for a in others if a.startswith("-")),
        *merged,
        f"resume={run_dir}",
        f"ckpt_path={run.last_checkpoint}",
        f"hydra.run.dir={run_dir}",
    ]


def typed(args: list[str], key: str) -> str | None:
    """The value the command line gives ``key`` last (unquoted), or None."""
    values = [unquote(a.split("=", 1)[1]) for a in args if "=" in a and override_key(a) == key]
    return values[-1] if values else None


def carried(key: str) -> bool:
    """Whether an override of the earlier run (its key) carries into the resumed one."""
    return not key.startswith(NOT_CARRIED) and key not in NOT_CARRIED


def check_stored_overrides(run: RunDir, stored: list[str], config_dir: str | Path, config_name: str) -> None:
    """The run's own overrides come from a file: the config they compose to may build only dgmlab's
    own targets (``core/trust.py``); the ones typed now are the user's."""
    if not stored:
        return
    source = f"resume={run.root} (its {OVERRIDES_FILE})"
    try:
        cfg = composed(stored, config_dir, config_name)
    except Exception as e:  # Hydra's composition errors have no common base
        raise ConfigError(f"{source} does not compose with today's configs: {str(e).splitlines()[0]}") from None
    with open_dict(cfg):
        del cfg["hydra"]
    check_file_config(cfg, source)


def find_run(value: str, overrides: list[str], config_dir: str | Path, config_name: str) -> Path:
    """The run directory ``resume=value`` names: a directory, or ``last``."""
    if value != "last":
        run_dir = Path(value).expanduser().resolve()
        if run_dir.is_file():
            owner = RunDir.of_checkpoint(run_dir).root
            raise ConfigError(
                f"resume={value} is a checkpoint file: pass its run directory, resume={owner} "
                f"(or ckpt_path={run_dir} hydra.run.dir={owner})"
            )
        last = RunDir.at(run_dir).last_checkpoint
        if not last.is_file():
            raise ConfigError(
                f"resume={value}: {last} does not exist; pass the directory "
                f"of a run written by train.py (it holds {CONFIG_FILE} and its checkpoints), or resume=last"
            )
        return run_dir
    folder = output_folder(overrides, config_dir, config_name)
    runs = sorted(p for p in folder.glob("*") if RunDir.at(p).last_checkpoint.is_file()) if folder.is_dir() else []
    if not runs:
        raise ConfigError(
            f"resume=last: no run with a {LAST_CHECKPOINT} under {folder} (this config's output folder); "
            "pass the same model=/experiment= as the run, or resume=RUN_DIR"
        )
    return runs[-1].resolve()


def output_folder(overrides: list[str], config_dir: str | Path, config_name: str) -> Path:
    """The folder that holds this config's run directories: the parent of the run directory Hydra
    would create now (``${paths.log_dir}/${task_name}/${model.name}`` by default)."""
    return Path(OmegaConf.select(composed(overrides, config_dir, config_name), "hydra.run.dir")).resolve().parent


def composed(overrides: list[str], config_dir: str | Path, config_name: str) -> DictConfig:
    """The config Hydra composes for ``overrides``, its ``hydra`` node included and resolvable."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    cfg.hydra.runtime.cwd = os.getcwd()
    HydraConfig.instance().set_config(cfg)
    return cfg


def checkpoint_to_resume(cfg: DictConfig, run: RunDir) -> Path | None:
    """The checkpoint this run continues, checked; None for a new run. ``ckpt_path=`` (which
    ``resume=`` became before Hydra started), or, in a SLURM job that was requeued, ``run``'s last.ckpt."""
    from ..lit.checkpoint import CONFIG_KEY, read_checkpoint

    if cfg.get("ckpt_path"):
        path, setting = Path(cfg.ckpt_path), "resume" if cfg.get("resume") else "ckpt_path"
    elif cfg.get("resume"):
        raise ConfigError(
            f"resume={cfg.resume} must be run through train.py (which turns it into the run's overrides, "
            f"its hydra.run.dir and ckpt_path=); this run's directory is {run.root}"
        )
    elif slurm.restart_count() > 0 and run.last_checkpoint.is_file():
        path, setting = run.last_checkpoint, "resume"
        log.warning(f"SLURM job {slurm.job_id()} was requeued (restart {slurm.restart_count()}): resuming from {path}")
    else:
        return None
    checkpoint = read_checkpoint(path, setting=setting, mmap=True)  # the config and the step; tensors stay on disk
    if CONFIG_KEY in checkpoint:
        check_fixed_settings(checkpoint[CONFIG_KEY], OmegaConf.to_container(cfg, resolve=True), path)
    return path


def fixed_settings(config: dict) -> dict[str, Any]:
    """The settings of ``config`` that a resumed run must keep (not MAY_CHANGE), flattened (``model.schedule.timesteps``)."""
    settings = {k: v for b in FIXED_BLOCKS for k, v in flatten(config.get(b, {}), b).items()}
    flat_trainer = flatten(config.get("trainer", {}), "trainer")
    settings.update({k: flat_trainer[k] for k in FIXED_KEYS if k in flat_trainer})
    return {k: v for k, v in settings.items() if not k.startswith(MAY_CHANGE) and k.split(".")[-1] not in PATH_KEYS}


def check_fixed_settings(run_config: dict, new_config: dict, path: Path) -> None:
    """Refuse, by name, every fixed setting that differs from the checkpoint's run."""
    old, new = fixed_settings(run_config), fixed_settings(new_config)
    pairs = {k: (old.get(k, "<unset>"), new.get(k, "<unset>")) for k in sorted(old.keys() | new.keys())}
    changed = [f"{k} (run: {was!r}, now: {now!r})" for k, (was, now) in pairs.items() if was != now]
    if changed:
        more = f" and {len(changed) - 8} more" if len(changed) > 8 else ""
        raise ConfigError(
            f"cannot resume {shown_path(path)}: settings of the model, schedule and data set, and the number of devices and nodes "
            f"(the data order is sharded by them), cannot change on resume, and these differ from the run's own "
            f"config: {', '.join(changed[:8])}{more}. Drop them from the command line, or start a new run."
        )
