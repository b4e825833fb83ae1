"""Train a generative model: python train.py [model=ddpm|vae] [schedule=...] [dataset=...] ..."""
import hydra
from omegaconf import DictConfig

from dgmlab.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


if __name__ == "__main__":
    main()
