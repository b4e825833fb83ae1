"""Sample from a checkpoint: python sample.py ckpt=PATH n=N seed=S out=DIR"""

import hydra
from omegaconf import DictConfig

from dgmlab.sampling import sample_program


@hydra.main(version_base="1.3", config_path="conf", config_name="sample")
def main(cfg: DictConfig) -> None:
    sample_program(cfg)


if __name__ == "__main__":
    main()
