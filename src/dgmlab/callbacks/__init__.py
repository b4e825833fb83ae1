"""Lightning callbacks: sample grids (and, later, evaluation metrics)."""
from .sample_grid import SampleGrid

__all__ = ["SampleGrid"]
