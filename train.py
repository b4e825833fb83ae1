"""Train a generative model: python train.py [model=ddpm|vae] [schedule=...] [dataset=...] ...

Continue a run: python train.py resume=RUN_DIR (or resume=last) [key=value ...]."""

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from dgmlab.core.errors import reports_user_errors
from dgmlab.run.lock import hold_named_run, release
from dgmlab.run.resume import resume_argv
from dgmlab.run.training import train_program


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train_program(cfg)


if __name__ == "__main__":
    # resume=...: the run's own overrides and hydra.run.dir=RUN_DIR, before Hydra composes
    sys.argv = reports_user_errors(resume_argv)(sys.argv, Path(__file__).resolve().parent / "conf")
    held = reports_user_errors(hold_named_run)(sys.argv)  # one writer per run directory, before Hydra writes there
    try:
        main()
    finally:
        if held is not None:
            release(held)
