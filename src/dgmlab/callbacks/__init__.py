"""Lightning callbacks: sample grids, the VAE's figures, FID, the step bar, the run's curves."""

from .curves import Curves
from .fid import FIDCallback
from .loss_trend import LossTrend
from .progress import StepProgressBar
from .sample_grid import SampleGrid
from .vae_figures import VAEFigures
