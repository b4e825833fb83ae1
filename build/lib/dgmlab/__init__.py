"""dgmlab: a Lightning + Hydra framework for VAEs and DDPMs."""

__version__ = "0.1.0"
